package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store"
)

// GroupMessage is a text message from sender to group.
func GroupMessage(sender, group int64, text string) model.NewMessage {
	to := model.Address{Kind: model.AddrGroup, ID: group}
	return model.NewMessage{Key: to.Key(sender), Sender: sender, To: to.String(), Kind: model.KindText,
		Text: text, TS: time.Now().UnixMilli()}
}

// MustCreateGroup creates a group and fails the test if it cannot.
func MustCreateGroup(tb testing.TB, db Engine, g model.NewGroup) model.Group {
	tb.Helper()
	change, err := db.CreateGroup(context.Background(), g, 0, nil)
	if err != nil {
		tb.Fatalf("CreateGroup(%+v): %v", g, err)
	}
	return change.Group
}

// storedGroup returns what Groups holds for id, and whether it is there.
func storedGroup(tb testing.TB, db Engine, id int64) (model.GroupMembers, bool) {
	tb.Helper()
	groups, err := db.Groups(context.Background())
	if err != nil {
		tb.Fatalf("Groups: %v", err)
	}
	for _, g := range groups {
		if g.ID == id {
			return g, true
		}
	}
	return model.GroupMembers{}, false
}

func testGroupCreate(t *testing.T, db Engine) {
	ctx := context.Background()
	ann, bob, cat := MustCreateUser(t, db, "Ann"), MustCreateUser(t, db, "Bob"), MustCreateUser(t, db, "Cat")
	var got []model.GroupChange
	change, err := db.CreateGroup(ctx, model.NewGroup{Name: "ops", Owner: bob.ID, Private: true,
		Members: []int64{cat.ID, ann.ID, cat.ID, bob.ID}}, 3, func(c model.GroupChange) { got = append(got, c) })
	if err != nil {
		t.Fatal(err)
	}
	want := model.Group{ID: change.Group.ID, Name: "ops", Owner: bob.ID, Private: true, Members: 3}
	order := []int64{bob.ID, ann.ID, cat.ID} // the owner, then the others by lowest id
	if change.Group != want || !slices.Equal(change.Members, order) || !change.Changed || change.Dissolved {
		t.Fatalf("CreateGroup = %+v, want %+v with members %v", change, want, order)
	}
	if len(got) != 1 || got[0].Group != want {
		t.Fatalf("committed saw %+v, want the change once before CreateGroup returned", got)
	}
	if stored, ok := storedGroup(t, db, want.ID); !ok || stored.Group != want || !slices.Equal(stored.MemberIDs, order) {
		t.Fatalf("Groups has %+v, %v; want %+v with %v", stored, ok, want, order)
	}

	// Refusals write nothing and publish nothing.
	before, _ := db.Groups(ctx)
	if _, err := db.CreateGroup(ctx, model.NewGroup{Name: "x", Owner: ann.ID, Members: []int64{4242}}, 0,
		func(model.GroupChange) { t.Error("published a refused creation") }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateGroup(unknown member) = %v, want ErrNotFound", err)
	}
	if _, err := db.CreateGroup(ctx, model.NewGroup{Name: "x", Owner: 4242}, 0, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateGroup(unknown owner) = %v, want ErrNotFound", err)
	}
	if _, err := db.CreateGroup(ctx, model.NewGroup{Name: "x", Owner: ann.ID, Members: []int64{bob.ID, cat.ID}}, 2,
		func(model.GroupChange) { t.Error("published a refused creation") }); !errors.Is(err, store.ErrFull) {
		t.Errorf("CreateGroup(3 members, cap 2) = %v, want ErrFull", err)
	}
	if after, _ := db.Groups(ctx); len(after) != len(before) {
		t.Errorf("refused creations stored groups: %d before, %d after", len(before), len(after))
	}
	if other := MustCreateGroup(t, db, model.NewGroup{Name: "ops", Owner: ann.ID}); other.ID == want.ID || other.Members != 1 {
		t.Errorf("a second group of the same name: %+v", other) // names need not be unique
	}
}

func testGroupMembership(t *testing.T, db Engine) {
	ctx := context.Background()
	ann, bob, cat, dan := MustCreateUser(t, db, "Ann"), MustCreateUser(t, db, "Bob"), MustCreateUser(t, db, "Cat"), MustCreateUser(t, db, "Dan")
	g := MustCreateGroup(t, db, model.NewGroup{Name: "ops", Owner: ann.ID})
	var published []model.GroupChange
	record := func(c model.GroupChange) { published = append(published, c) }

	for _, user := range []int64{cat.ID, bob.ID} {
		change, err := db.AddGroupMember(ctx, g.ID, user, user, 3, record)
		if err != nil || !change.Changed || change.User != user {
			t.Fatalf("AddGroupMember(%d) = %+v, %v", user, change, err)
		}
	}
	if change, err := db.AddGroupMember(ctx, g.ID, cat.ID, cat.ID, 3, record); err != nil || change.Changed || change.Group.Members != 3 {
		t.Errorf("AddGroupMember(a member) = %+v, %v; want no change", change, err)
	}
	if _, err := db.AddGroupMember(ctx, g.ID, dan.ID, dan.ID, 3, record); !errors.Is(err, store.ErrFull) {
		t.Errorf("AddGroupMember(over the cap) = %v, want ErrFull", err)
	}
	if _, err := db.AddGroupMember(ctx, 4242, dan.ID, dan.ID, 0, record); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddGroupMember(no such group) = %v, want ErrNotFound", err)
	}
	if _, err := db.AddGroupMember(ctx, g.ID, 4242, 4242, 0, record); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddGroupMember(no such user) = %v, want ErrNotFound", err)
	}
	if len(published) != 2 {
		t.Fatalf("published %d changes, want 2 (the two adds)", len(published))
	}
	if stored, _ := storedGroup(t, db, g.ID); !slices.Equal(stored.MemberIDs, []int64{ann.ID, cat.ID, bob.ID}) || stored.Members != 3 {
		t.Fatalf("members %v (%d), want join order ann, cat, bob", stored.MemberIDs, stored.Members)
	}

	// The owner leaves: the earliest joined (cat, though bob's id is lower) owns it.
	change, err := db.RemoveGroupMember(ctx, g.ID, ann.ID, ann.ID, record)
	if err != nil || !change.Changed || change.Group.Owner != cat.ID || change.Group.Members != 2 || change.Dissolved {
		t.Fatalf("owner leaves: %+v, %v; want cat (%d) the owner", change, err, cat.ID)
	}
	if change, err := db.RemoveGroupMember(ctx, g.ID, ann.ID, ann.ID, record); err != nil || change.Changed {
		t.Errorf("RemoveGroupMember(not a member) = %+v, %v; want no change", change, err)
	}
	renamed, err := db.RenameGroup(ctx, g.ID, "ops team", cat.ID, record)
	if err != nil || renamed.Group.Name != "ops team" || renamed.Group.Owner != cat.ID {
		t.Errorf("RenameGroup = %+v, %v", renamed, err)
	}
	if _, err := db.RenameGroup(ctx, 4242, "x", cat.ID, record); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RenameGroup(no such group) = %v, want ErrNotFound", err)
	}
	if stored, _ := storedGroup(t, db, g.ID); stored.Group != renamed.Group {
		t.Errorf("stored %+v, want %+v", stored.Group, renamed.Group)
	}

	// The last member leaving dissolves the group; its messages stay.
	msg := MustAppend(t, db, GroupMessage(bob.ID, g.ID, "still here"))
	db.RemoveGroupMember(ctx, g.ID, cat.ID, cat.ID, record)
	change, err = db.RemoveGroupMember(ctx, g.ID, bob.ID, bob.ID, record)
	if err != nil || !change.Dissolved || change.Group.Members != 0 {
		t.Fatalf("last leaves: %+v, %v; want dissolved", change, err)
	}
	if _, ok := storedGroup(t, db, g.ID); ok {
		t.Error("a dissolved group is still stored")
	}
	if _, err := db.AddGroupMember(ctx, g.ID, bob.ID, bob.ID, 0, record); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddGroupMember(dissolved) = %v, want ErrNotFound", err)
	}
	if msgs, _, err := db.Load(ctx, g.Key(), 0, 0, 0); err != nil || !slices.Equal(ids(msgs), []int64{msg.ID}) {
		t.Errorf("the dissolved group's messages: %v, %v", ids(msgs), err)
	}
	if len(published) != 6 { // 2 adds, the owner leaves, the rename, cat leaves, bob dissolves it
		t.Errorf("published %d changes, want 6", len(published))
	}
}

func testGroupReading(t *testing.T, db Engine) {
	ctx := context.Background()
	ann, bob, cat := MustCreateUser(t, db, "Ann"), MustCreateUser(t, db, "Bob"), MustCreateUser(t, db, "Cat")
	g := MustCreateGroup(t, db, model.NewGroup{Name: "ops", Owner: ann.ID, Members: []int64{bob.ID}})
	first := MustAppend(t, db, GroupMessage(ann.ID, g.ID, "one"))
	MustAppend(t, db, LobbyMessage(cat.ID, "lobby", ""))
	second := MustAppend(t, db, GroupMessage(ann.ID, g.ID, "two"))

	syncKeys := func(user int64) []int64 {
		msgs, _, _, err := db.Sync(ctx, user, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var list []int64
		for _, m := range msgs {
			if m.Key == g.Key() {
				list = append(list, m.ID)
			}
		}
		return list
	}
	if got := syncKeys(bob.ID); !slices.Equal(got, []int64{first.ID, second.ID}) {
		t.Errorf("a member's Sync has group messages %v, want %v", got, []int64{first.ID, second.ID})
	}
	if got := syncKeys(cat.ID); len(got) != 0 {
		t.Errorf("a non-member's Sync has group messages %v", got)
	}
	convs, err := db.Conversations(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(convs, func(c model.Conversation) bool { return c.Conv == string(g.Key()) })
	if i < 0 || convs[i].Last.ID != second.ID || convs[i].Unread != 2 || convs[0].Conv != string(g.Key()) {
		t.Fatalf("bob's conversations %+v, want the group first, last %d, 2 unread", convs, second.ID)
	}
	if err := db.MarkRead(ctx, bob.ID, g.Key(), first.ID); err != nil {
		t.Fatal(err)
	}
	convs, _ = db.Conversations(ctx, bob.ID)
	if convs[0].Conv != string(g.Key()) || convs[0].Unread != 1 {
		t.Errorf("after reading the first: %+v", convs[0])
	}
	if convs, _ := db.Conversations(ctx, cat.ID); slices.ContainsFunc(convs, func(c model.Conversation) bool { return c.Conv == string(g.Key()) }) {
		t.Errorf("a non-member's conversations list the group: %+v", convs)
	}
	empty := MustCreateGroup(t, db, model.NewGroup{Name: "quiet", Owner: cat.ID})
	if convs, _ := db.Conversations(ctx, cat.ID); slices.ContainsFunc(convs, func(c model.Conversation) bool { return c.Conv == string(empty.Key()) }) {
		t.Errorf("a group without messages is listed: %+v", convs)
	}

	// Gone from the group, gone from Sync and the list: their own
	// messages there too.
	MustAppend(t, db, GroupMessage(bob.ID, g.ID, "bob's own"))
	if _, err := db.RemoveGroupMember(ctx, g.ID, bob.ID, bob.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := syncKeys(bob.ID); len(got) != 0 {
		t.Errorf("a removed member's Sync has group messages %v", got)
	}
	if convs, _ := db.Conversations(ctx, bob.ID); slices.ContainsFunc(convs, func(c model.Conversation) bool { return c.Conv == string(g.Key()) }) {
		t.Errorf("a removed member's conversations list the group")
	}
}

// testGroupCommittedInOrder: group changes' after-commit actions run with
// the messages' published, one at a time, in commit order: a change made
// between two messages from one goroutine is seen between them, and under
// concurrent writers no two actions overlap (the race detector watches
// the unsynchronised log).
func testGroupCommittedInOrder(t *testing.T, db Engine) {
	ctx := context.Background()
	ann, bob := MustCreateUser(t, db, "Ann"), MustCreateUser(t, db, "Bob")
	g := MustCreateGroup(t, db, model.NewGroup{Name: "ops", Owner: ann.ID})
	var log []string // appended only by after-commit actions
	published := func(model.Message) { log = append(log, "message") }
	joined := func(model.GroupChange) { log = append(log, "change") }

	wait := db.AppendLater(ctx, GroupMessage(ann.ID, g.ID, "before"), published)
	if _, err := db.AddGroupMember(ctx, g.ID, bob.ID, bob.ID, 0, joined); err != nil {
		t.Fatal(err)
	}
	if _, _, err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.AppendLater(ctx, GroupMessage(ann.ID, g.ID, "after"), published)(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(log, []string{"message", "change", "message"}) {
		t.Fatalf("after-commit actions ran as %v, want message, change, message", log)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 50 {
			db.AppendLater(ctx, GroupMessage(ann.ID, g.ID, "x"), published)()
		}
	}()
	go func() {
		defer wg.Done()
		for range 25 {
			db.RemoveGroupMember(ctx, g.ID, bob.ID, bob.ID, joined)
			db.AddGroupMember(ctx, g.ID, bob.ID, bob.ID, 0, joined)
		}
	}()
	wg.Wait()
	if len(log) != 3+50+50 {
		t.Errorf("%d after-commit actions, want %d", len(log), 3+50+50)
	}
}

// testGroupIDNotReused: dissolving the newest group and creating another
// gives the new one a new id, so its members read nothing of the
// dissolved group's history (Load by its key aside, which is the
// service's to guard: no one can name a dissolved group).
func testGroupIDNotReused(t *testing.T, db Engine) {
	dissolved, old := dissolveNewestGroup(t, db)
	checkDissolvedStaysUnread(t, db, dissolved, old)
}

// GroupIDNotReusedAfterReopen is testGroupIDNotReused across a reopen,
// for the engines whose data outlives the process: db is a fresh store,
// and reopen closes it and returns the same data opened again.
func GroupIDNotReusedAfterReopen(t *testing.T, db Engine, reopen func(Engine) Engine) {
	dissolved, old := dissolveNewestGroup(t, db)
	db = reopen(db)
	if _, ok := storedGroup(t, db, dissolved.ID); ok {
		t.Errorf("after reopening, Groups has the dissolved group %d", dissolved.ID)
	}
	checkDissolvedStaysUnread(t, db, dissolved, old)
}

// dissolveNewestGroup makes a group, the newest, with a message from each
// of its two members, and dissolves it: both leave.
func dissolveNewestGroup(t *testing.T, db Engine) (model.Group, []model.Message) {
	ctx := context.Background()
	ann, bob := MustCreateUser(t, db, "Ann"), MustCreateUser(t, db, "Bob")
	MustCreateGroup(t, db, model.NewGroup{Name: "older", Owner: bob.ID})
	g := MustCreateGroup(t, db, model.NewGroup{Name: "old", Owner: ann.ID, Members: []int64{bob.ID}})
	old := []model.Message{
		MustAppend(t, db, GroupMessage(ann.ID, g.ID, "canary from the old group")),
		MustAppend(t, db, GroupMessage(bob.ID, g.ID, "canary two")),
	}
	for _, user := range []int64{ann.ID, bob.ID} {
		if _, err := db.RemoveGroupMember(ctx, g.ID, user, user, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := storedGroup(t, db, g.ID); ok {
		t.Fatalf("Groups still has the dissolved group %d", g.ID)
	}
	return g, old
}

// checkDissolvedStaysUnread creates a group after dissolved and checks that
// it has a new id and that its members read none of old.
func checkDissolvedStaysUnread(t *testing.T, db Engine, dissolved model.Group, old []model.Message) {
	ctx := context.Background()
	cat, dan := MustCreateUser(t, db, "Cat"), MustCreateUser(t, db, "Dan")
	g := MustCreateGroup(t, db, model.NewGroup{Name: "new", Owner: cat.ID, Members: []int64{dan.ID}})
	if g.ID <= dissolved.ID {
		t.Fatalf("the group created after group %d dissolved has id %d, want a new one", dissolved.ID, g.ID)
	}
	author := old[0].From.ID
	if _, err := db.AddGroupMember(ctx, dissolved.ID, author, author, 0, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddGroupMember(dissolved group) = %v, want ErrNotFound", err)
	}
	for _, user := range []int64{cat.ID, dan.ID, author} {
		msgs, _, _, err := db.Sync(ctx, user, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 0 {
			t.Errorf("user %d syncs %v, want none of the dissolved group's", user, ids(msgs))
		}
		if got, _ := searchIDs(t, db, user, "canary", "", 0, 0); len(got) != 0 {
			t.Errorf("user %d finds %v, want none of the dissolved group's", user, got)
		}
		if convs, err := db.Conversations(ctx, user); err != nil || len(convs) != 0 {
			t.Errorf("user %d's conversations: %+v, %v; want none", user, convs, err)
		}
		for _, msg := range old {
			if _, err := db.MessageFor(ctx, user, msg.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("MessageFor(user %d, old message %d) = %v, want ErrNotFound", user, msg.ID, err)
			}
		}
	}
}

// testGroupCreateMany: a creation naming hundreds of users, in any order
// and with duplicates, keeps the join order (the owner, then by lowest
// id), and is refused whole for one unknown user among them or one member
// over the cap.
func testGroupCreateMany(t *testing.T, db Engine) {
	ctx := context.Background()
	users := make([]int64, 300)
	for i := range users {
		users[i] = MustCreateUser(t, db, fmt.Sprint("user", i)).ID
	}
	owner := users[150]
	named := slices.Clone(users[:257])
	slices.Reverse(named)
	named = append(named, users[3], owner, users[3])
	order := append([]int64{owner}, slices.DeleteFunc(slices.Clone(users[:257]), func(id int64) bool { return id == owner })...)
	if _, err := db.CreateGroup(ctx, model.NewGroup{Name: "big", Owner: owner, Members: append(slices.Clone(named), 4242)}, 0,
		func(model.GroupChange) { t.Error("published a refused creation") }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateGroup(256 users and one unknown) = %v, want ErrNotFound", err)
	}
	if _, err := db.CreateGroup(ctx, model.NewGroup{Name: "big", Owner: owner, Members: named}, len(order)-1, nil); !errors.Is(err, store.ErrFull) {
		t.Errorf("CreateGroup(one over the cap) = %v, want ErrFull", err)
	}
	change, err := db.CreateGroup(ctx, model.NewGroup{Name: "big", Owner: owner, Members: named}, len(order), nil)
	if err != nil || !slices.Equal(change.Members, order) || change.Group.Members != len(order) {
		t.Fatalf("CreateGroup(%d members) = %v members (%d), %v; want %v", len(order), change.Members, change.Group.Members, err, order)
	}
	if stored, ok := storedGroup(t, db, change.Group.ID); !ok || !slices.Equal(stored.MemberIDs, order) {
		t.Fatalf("Groups has %v, want %v", stored.MemberIDs, order)
	}
	// The join order goes on after them.
	if _, err := db.AddGroupMember(ctx, change.Group.ID, users[299], users[299], 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RemoveGroupMember(ctx, change.Group.ID, owner, owner, nil); err != nil {
		t.Fatal(err)
	}
	if stored, _ := storedGroup(t, db, change.Group.ID); stored.Owner != users[0] ||
		!slices.Equal(stored.MemberIDs, append(slices.Clone(order[1:]), users[299])) {
		t.Errorf("after an add and the owner leaving: owner %d, members %v", stored.Owner, stored.MemberIDs)
	}
}

// testGroupWritesCheckWhoAsks: a group write checks who asks in its own
// transaction, as of the commits before it: an invite by a member removed
// in an earlier commit (just before, or earlier in the same batch), a
// rename or removal by a former owner, a removal by a non-owner and a join
// of a private group are refused with store.ErrForbidden, writing and
// publishing nothing.
func testGroupWritesCheckWhoAsks(t *testing.T, db Engine) {
	ctx := context.Background()
	ann, bob, cat, dan := MustCreateUser(t, db, "Ann"), MustCreateUser(t, db, "Bob"), MustCreateUser(t, db, "Cat"), MustCreateUser(t, db, "Dan")
	g := MustCreateGroup(t, db, model.NewGroup{Name: "ops", Owner: ann.ID, Private: true, Members: []int64{bob.ID, cat.ID}})
	refused := func(model.GroupChange) { t.Error("published a refused change") }
	wantForbidden := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", what, err)
		}
	}

	if _, err := db.RemoveGroupMember(ctx, g.ID, bob.ID, ann.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err := db.AddGroupMember(ctx, g.ID, dan.ID, bob.ID, 0, refused)
	wantForbidden("an invite by a member removed just before", err)
	_, err = db.AddGroupMember(ctx, g.ID, dan.ID, dan.ID, 0, refused)
	wantForbidden("a join of a private group", err)
	_, err = db.RemoveGroupMember(ctx, g.ID, ann.ID, cat.ID, refused)
	wantForbidden("the owner's removal by a member", err)
	_, err = db.RenameGroup(ctx, g.ID, "mine", cat.ID, refused)
	wantForbidden("a rename by a member", err)

	// Ann leaves: Cat owns the group now, and Ann may do nothing to it.
	if change, err := db.RemoveGroupMember(ctx, g.ID, ann.ID, ann.ID, nil); err != nil || change.Group.Owner != cat.ID {
		t.Fatalf("the owner leaves: %+v, %v; want cat the owner", change, err)
	}
	_, err = db.RenameGroup(ctx, g.ID, "still mine", ann.ID, refused)
	wantForbidden("a rename by a former owner", err)
	_, err = db.RemoveGroupMember(ctx, g.ID, cat.ID, ann.ID, refused)
	wantForbidden("a removal by a former owner", err)
	if _, err := db.AddGroupMember(ctx, g.ID, dan.ID, cat.ID, 0, nil); err != nil {
		t.Fatalf("an invite by the new owner: %v", err)
	}
	_, err = db.RemoveGroupMember(ctx, g.ID, cat.ID, dan.ID, refused)
	wantForbidden("the owner's removal by a member", err)
	if renamed, err := db.RenameGroup(ctx, g.ID, "cat's", cat.ID, nil); err != nil || renamed.Group.Name != "cat's" {
		t.Errorf("a rename by the new owner: %+v, %v", renamed, err)
	}
	if stored, _ := storedGroup(t, db, g.ID); !slices.Equal(stored.MemberIDs, []int64{cat.ID, dan.ID}) || stored.Name != "cat's" {
		t.Errorf("stored %+v, want cat and dan in \"cat's\"", stored)
	}

	// A removal and an invite by the removed, queued at once: whichever
	// commits first, an invite committed after the removal is refused.
	for round := range 20 {
		owner, member, guest := MustCreateUser(t, db, fmt.Sprint("owner", round)), MustCreateUser(t, db, fmt.Sprint("member", round)),
			MustCreateUser(t, db, fmt.Sprint("guest", round))
		g := MustCreateGroup(t, db, model.NewGroup{Name: "race", Owner: owner.ID, Private: true, Members: []int64{member.ID}})
		var log []string // appended only by after-commit actions, on the publisher
		var wg sync.WaitGroup
		start := make(chan struct{})
		var inviteErr, removeErr error
		wg.Go(func() {
			<-start
			_, removeErr = db.RemoveGroupMember(ctx, g.ID, member.ID, owner.ID, func(model.GroupChange) { log = append(log, "removed") })
		})
		wg.Go(func() {
			<-start
			_, inviteErr = db.AddGroupMember(ctx, g.ID, guest.ID, member.ID, 0, func(model.GroupChange) { log = append(log, "invited") })
		})
		close(start)
		wg.Wait()
		if removeErr != nil || (inviteErr != nil && !errors.Is(inviteErr, store.ErrForbidden)) {
			t.Fatalf("round %d: remove %v, invite %v", round, removeErr, inviteErr)
		}
		want := []string{"removed"}
		if inviteErr == nil {
			want = []string{"invited", "removed"}
		}
		if !slices.Equal(log, want) {
			t.Fatalf("round %d: committed %v (invite: %v), want %v", round, log, inviteErr, want)
		}
	}
}
