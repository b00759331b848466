package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"dce/common/model"
	"dce/common/store"
)

func testLoadPaging(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	var lobby []int64 // ids of the 10 lobby messages, oldest first
	for i := range 10 {
		lobby = append(lobby, MustAppend(t, db, LobbyMessage(ann.ID, fmt.Sprint("lobby ", i), "")).ID)
		MustAppend(t, db, DirectMessage(ann.ID, bob.ID, "private", "")) // interleaved, never in the lobby
	}
	for _, c := range []struct {
		name          string
		before, after int64
		limit         int
		want          []int64
		more          bool
	}{
		{"all", 0, 0, 0, lobby, false},
		{"exactly all", 0, 0, 10, lobby, false},
		{"newest 3", 0, 0, 3, lobby[7:], true},
		{"3 before the 5th", lobby[4], 0, 3, lobby[1:4], true},
		{"3 before the 4th", lobby[3], 0, 3, lobby[0:3], false},
		{"before the first", lobby[0], 0, 3, nil, false},
		{"3 after the 6th", 0, lobby[5], 3, lobby[6:9], true},
		{"3 after the 7th", 0, lobby[6], 3, lobby[7:10], false},
		{"after the last", 0, lobby[9], 3, nil, false},
		{"between, oldest first", lobby[8], lobby[1], 3, lobby[2:5], true},
		{"between, all", lobby[5], lobby[1], 10, lobby[2:5], false},
		{"negative limit is 1", 0, 0, -5, lobby[9:], true},
		{"before a huge id", 1 << 62, 0, 2, lobby[8:], true},
	} {
		msgs, more, err := db.Load(ctx, model.LobbyKey, c.before, c.after, c.limit)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(ids(msgs), c.want) || more != c.more {
			t.Errorf("%s: Load(before %d, after %d, limit %d) = %v, more %v; want %v, more %v",
				c.name, c.before, c.after, c.limit, ids(msgs), more, c.want, c.more)
		}
		for _, msg := range msgs {
			if msg.Key != model.LobbyKey || msg.From != ann.User {
				t.Errorf("%s: loaded %+v", c.name, msg)
			}
		}
	}
	direct := model.DirectKey(ann.ID, bob.ID)
	if msgs, _, err := db.Load(ctx, direct, 0, 0, 0); err != nil || len(msgs) != 10 || msgs[0].ToUser != bob.ID {
		t.Errorf("Load(%s) = %d messages, %v; want 10", direct, len(msgs), err)
	}
	if msgs, more, err := db.Load(ctx, "group:404", 0, 0, 0); err != nil || len(msgs) != 0 || more {
		t.Errorf("Load(empty conversation) = %v, %v, %v", msgs, more, err)
	}
}

func testLoadLimits(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	for i := range 105 {
		MustAppend(t, db, LobbyMessage(ann.ID, fmt.Sprint(i), ""))
	}
	for limit, want := range map[int]int{0: 50, 100: 100, 101: 100, 1000: 100} {
		msgs, more, err := db.Load(ctx, model.LobbyKey, 0, 0, limit)
		if err != nil || len(msgs) != want || !more {
			t.Errorf("Load(limit %d) = %d messages, more %v, %v; want %d, more", limit, len(msgs), more, err, want)
		}
		if len(msgs) > 0 && msgs[len(msgs)-1].Text != "104" {
			t.Errorf("Load(limit %d) ends with %q, want the newest", limit, msgs[len(msgs)-1].Text)
		}
	}
}

// testSyncVisibility is the canary: a private message between B and C is
// never returned to A, by Sync or by Conversations.
func testSyncVisibility(t *testing.T, db Engine) {
	ctx := context.Background()
	a := MustCreateUser(t, db, "A")
	b := MustCreateUser(t, db, "B")
	c := MustCreateUser(t, db, "C")
	MustAppend(t, db, LobbyMessage(a.ID, "lobby from A", ""))
	MustAppend(t, db, DirectMessage(b.ID, c.ID, "canary B to C", ""))
	MustAppend(t, db, DirectMessage(c.ID, b.ID, "canary C to B", ""))
	MustAppend(t, db, DirectMessage(a.ID, b.ID, "A to B", ""))
	MustAppend(t, db, DirectMessage(b.ID, a.ID, "B to A", ""))
	MustAppend(t, db, LobbyMessage(c.ID, "lobby from C", ""))

	texts := func(user model.Account) []string {
		t.Helper()
		msgs, _, more, err := db.Sync(ctx, user.ID, 0, 0)
		if err != nil || more {
			t.Fatalf("Sync(%s): more %v, %v", user.Nickname, more, err)
		}
		var list []string
		for _, msg := range msgs {
			list = append(list, msg.Text)
		}
		return list
	}
	for _, c := range []struct {
		user model.Account
		want []string
	}{
		{a, []string{"lobby from A", "A to B", "B to A", "lobby from C"}},
		{b, []string{"lobby from A", "canary B to C", "canary C to B", "A to B", "B to A", "lobby from C"}},
		{c, []string{"lobby from A", "canary B to C", "canary C to B", "lobby from C"}},
	} {
		if got := texts(c.user); !slices.Equal(got, c.want) {
			t.Errorf("Sync(%s) = %q, want %q", c.user.Nickname, got, c.want)
		}
	}
	conversations, err := db.Conversations(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, conversation := range conversations {
		if conversation.Conv == string(model.DirectKey(b.ID, c.ID)) || strings.Contains(conversation.Last.Text, "canary") {
			t.Errorf("A sees %+v", conversation)
		}
	}
}

func testSyncPaging(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	cat := MustCreateUser(t, db, "Cat")
	var want []int64
	for i := range 7 {
		want = append(want, MustAppend(t, db, LobbyMessage(bob.ID, fmt.Sprint(i), "")).ID)
		MustAppend(t, db, DirectMessage(bob.ID, cat.ID, "not for Ann", ""))
	}
	lastSeq, _ := db.LastSeq(ctx)
	var got []int64
	since := int64(0)
	for page := 0; ; page++ {
		msgs, latest, more, err := db.Sync(ctx, ann.ID, since, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(msgs)...)
		if more {
			if len(msgs) != 3 || latest != msgs[2].Seq {
				t.Fatalf("page %d: %d messages, latest %d; want 3, the last one's seq", page, len(msgs), latest)
			}
		} else {
			if latest != lastSeq {
				t.Errorf("last page: latest %d, want the store's last seq %d", latest, lastSeq)
			}
			break
		}
		since = latest
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged Sync = %v, want %v", got, want)
	}
	// Nothing new: an empty answer that keeps the place.
	msgs, latest, more, err := db.Sync(ctx, ann.ID, lastSeq, 0)
	if err != nil || len(msgs) != 0 || latest != lastSeq || more {
		t.Errorf("Sync(since last) = %v, %d, %v, %v", ids(msgs), latest, more, err)
	}
}

// testSyncNeverSkips: a reader that syncs from the latest seq it was given,
// while writers append, ends up with every message exactly once.
func testSyncNeverSkips(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	var (
		wait     sync.WaitGroup
		mutex    sync.Mutex
		appended = map[int64]bool{}
		done     = make(chan struct{})
	)
	for w := range 8 {
		wait.Go(func() {
			for i := range 40 {
				m := LobbyMessage(bob.ID, fmt.Sprint(w, "/", i), "")
				if i%3 == 0 {
					m = DirectMessage(bob.ID, ann.ID, fmt.Sprint(w, "/", i), "")
				}
				msg, _, err := db.Append(ctx, m)
				if err != nil {
					t.Error(err)
					return
				}
				mutex.Lock()
				appended[msg.ID] = true
				mutex.Unlock()
			}
		})
	}
	go func() { wait.Wait(); close(done) }()

	seen := map[int64]bool{}
	since := int64(0)
	for finished := false; ; {
		select {
		case <-done:
			finished = true // one more pass after the last write
		default:
		}
		msgs, latest, _, err := db.Sync(ctx, ann.ID, since, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range msgs {
			if seen[msg.ID] {
				t.Fatalf("message %d returned twice", msg.ID)
			}
			seen[msg.ID] = true
		}
		since = latest
		if finished && len(msgs) == 0 {
			break
		}
	}
	if len(seen) != len(appended) {
		t.Errorf("synced %d messages, %d were appended", len(seen), len(appended))
	}
	for id := range appended {
		if !seen[id] {
			t.Errorf("message %d was never synced", id)
		}
	}
}

func testConversations(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	cat := MustCreateUser(t, db, "Cat")
	if conversations, err := db.Conversations(ctx, ann.ID); err != nil || len(conversations) != 0 {
		t.Errorf("Conversations with no messages = %+v, %v", conversations, err)
	}
	MustAppend(t, db, LobbyMessage(ann.ID, "lobby 1", ""))
	MustAppend(t, db, DirectMessage(bob.ID, ann.ID, "bob 1", ""))
	lobbyLast := MustAppend(t, db, LobbyMessage(bob.ID, "lobby 2", ""))
	MustAppend(t, db, DirectMessage(bob.ID, ann.ID, "bob 2", ""))
	MustAppend(t, db, DirectMessage(ann.ID, bob.ID, "ann answers", ""))
	catLast := MustAppend(t, db, DirectMessage(ann.ID, cat.ID, "hi cat", ""))

	type row struct {
		conv   string
		last   string
		unread int
	}
	check := func(user model.Account, want []row) {
		t.Helper()
		conversations, err := db.Conversations(ctx, user.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []row
		for _, conversation := range conversations {
			got = append(got, row{conversation.Conv, conversation.Last.Text, conversation.Unread})
			if conversation.Conv != conversation.Last.Conv || conversation.Last.From.Nickname == "" {
				t.Errorf("%s: %+v", user.Nickname, conversation)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Conversations(%s) = %+v, want %+v", user.Nickname, got, want)
		}
	}
	annBob, annCat := string(model.DirectKey(ann.ID, bob.ID)), string(model.DirectKey(ann.ID, cat.ID))
	check(ann, []row{{annCat, "hi cat", 0}, {annBob, "ann answers", 2}, {model.Lobby, "lobby 2", 1}})
	check(bob, []row{{annBob, "ann answers", 1}, {model.Lobby, "lobby 2", 1}})
	check(cat, []row{{annCat, "hi cat", 1}, {model.Lobby, "lobby 2", 2}})

	if err := db.MarkRead(ctx, ann.ID, model.LobbyKey, lobbyLast.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkRead(ctx, cat.ID, model.DirectKey(ann.ID, cat.ID), catLast.ID); err != nil {
		t.Fatal(err)
	}
	check(ann, []row{{annCat, "hi cat", 0}, {annBob, "ann answers", 2}, {model.Lobby, "lobby 2", 0}})
	check(cat, []row{{annCat, "hi cat", 0}, {model.Lobby, "lobby 2", 2}})
	// A new message moves its conversation to the top and counts as unread.
	MustAppend(t, db, LobbyMessage(cat.ID, "lobby 3", ""))
	check(ann, []row{{model.Lobby, "lobby 3", 1}, {annCat, "hi cat", 0}, {annBob, "ann answers", 2}})
}

func testMarkReadMonotonic(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	var sent []model.Message
	for i := range 5 {
		sent = append(sent, MustAppend(t, db, LobbyMessage(bob.ID, fmt.Sprint(i), "")))
	}
	unread := func() int {
		t.Helper()
		conversations, err := db.Conversations(ctx, ann.ID)
		if err != nil || len(conversations) != 1 {
			t.Fatalf("Conversations = %+v, %v", conversations, err)
		}
		return conversations[0].Unread
	}
	for _, step := range []struct {
		markAt int64
		want   int
	}{
		{sent[2].ID, 2},
		{sent[0].ID, 2}, // never moves back
		{sent[3].ID, 1},
		{sent[1].ID, 1},
		{sent[4].ID + 1000, 0}, // past the end: everything is read
	} {
		if err := db.MarkRead(ctx, ann.ID, model.LobbyKey, step.markAt); err != nil {
			t.Fatal(err)
		}
		if got := unread(); got != step.want {
			t.Errorf("after MarkRead(%d): unread %d, want %d", step.markAt, got, step.want)
		}
	}
	// A mark past the end does not hide messages sent afterwards.
	MustAppend(t, db, LobbyMessage(bob.ID, "later", ""))
	if got := unread(); got != 1 {
		t.Errorf("after a new message: unread %d, want 1", got)
	}
	if err := db.MarkRead(ctx, bob.ID+1000, model.LobbyKey, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkRead(missing user) error = %v, want ErrNotFound", err)
	}
}
