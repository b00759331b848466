package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"dce/common/model"
	"dce/common/store"
)

func testAppendReturnsTheMessage(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	m := DirectMessage(ann.ID, bob.ID, "hi Bob", "c-1")
	msg := MustAppend(t, db, m)
	want := model.Message{ID: msg.ID, Seq: msg.Seq, Conv: string(m.Key), From: model.User{ID: ann.ID},
		To: m.To, Kind: model.KindText, Text: "hi Bob", CID: "c-1", TS: m.TS, Key: m.Key, ToUser: bob.ID}
	if msg.ID <= 0 || msg.Seq <= 0 || msg.From.ID != ann.ID {
		t.Fatalf("Append = %+v", msg)
	}
	msg.From = model.User{ID: msg.From.ID} // Append needs to fill only the id
	if msg != want {
		t.Errorf("Append = %+v, want %+v", msg, want)
	}
	loaded, _, err := db.Load(ctx, m.Key, 0, 0, 0)
	if err != nil || len(loaded) != 1 {
		t.Fatalf("Load = %+v, %v", loaded, err)
	}
	want.From = ann.User
	if loaded[0] != want {
		t.Errorf("Load = %+v, want %+v (the sender joined in)", loaded[0], want)
	}
	// Kinds other than text, a caption, a file id, no cid.
	image := model.NewMessage{Key: model.LobbyKey, Sender: bob.ID, To: model.Lobby, Kind: model.KindImage,
		Text: "a caption", FileID: "f_123", TS: 1763800000123}
	stored := MustAppend(t, db, image)
	if stored.Kind != model.KindImage || stored.Text != "a caption" || stored.CID != "" || stored.TS != 1763800000123 ||
		stored.Key != model.LobbyKey || stored.Conv != model.Lobby || stored.ToUser != 0 || stored.To != model.Lobby {
		t.Errorf("Append(image) = %+v", stored)
	}
}

func testAppendOrdering(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	var previous model.Message
	for i := range 20 {
		msg := MustAppend(t, db, LobbyMessage(ann.ID, fmt.Sprint("message ", i), ""))
		if i > 0 && (msg.ID <= previous.ID || msg.Seq <= previous.Seq) {
			t.Fatalf("message %d: id %d seq %d after id %d seq %d", i, msg.ID, msg.Seq, previous.ID, previous.Seq)
		}
		previous = msg
	}
	if seq, err := db.LastSeq(ctx); err != nil || seq != previous.Seq {
		t.Errorf("LastSeq = %d, %v; want %d", seq, err, previous.Seq)
	}
	if count, err := db.CountMessages(ctx); err != nil || count != 20 {
		t.Errorf("CountMessages = %d, %v; want 20", count, err)
	}
}

// testAppendLaterKeepsOrder: messages queued in turn without waiting (a
// connection pipelining its sends) are stored in the order queued, while
// another sender's messages go in between, and a duplicate cid among them
// still answers with the first message.
func testAppendLaterKeepsOrder(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // Bob sends meanwhile
		defer wg.Done()
		for i := range 50 {
			if _, _, err := db.Append(ctx, LobbyMessage(bob.ID, fmt.Sprint("bob ", i), "")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var waits []func() (model.Message, bool, error)
	for i := range 200 {
		waits = append(waits, db.AppendLater(ctx, LobbyMessage(ann.ID, fmt.Sprint("ann ", i), fmt.Sprint("c-", i)), nil))
	}
	waits = append(waits, db.AppendLater(ctx, LobbyMessage(ann.ID, "ann again", "c-7"), nil))
	var previous model.Message
	for i, wait := range waits[:200] {
		msg, duplicate, err := wait()
		if err != nil || duplicate || msg.Text != fmt.Sprint("ann ", i) {
			t.Fatalf("message %d: %+v duplicate=%v err=%v", i, msg, duplicate, err)
		}
		if i > 0 && (msg.ID <= previous.ID || msg.Seq <= previous.Seq) {
			t.Fatalf("message %d: id %d seq %d after id %d seq %d", i, msg.ID, msg.Seq, previous.ID, previous.Seq)
		}
		previous = msg
	}
	again, duplicate, err := waits[200]()
	if err != nil || !duplicate || again.Text != "ann 7" {
		t.Errorf("the repeated cid gave %+v duplicate=%v err=%v; want message 7", again, duplicate, err)
	}
	wg.Wait()
}

// testAppendConcurrentOrdering: concurrent appends get distinct ids and
// seqs, and seq order is id order (both are commit order).
func testAppendConcurrentOrdering(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	const writers, each = 16, 25
	results := make([][]model.Message, writers)
	var wait sync.WaitGroup
	for w := range writers {
		wait.Go(func() {
			for i := range each {
				m := LobbyMessage(ann.ID, fmt.Sprint(w, "/", i), fmt.Sprint("w", w, "-", i))
				if w%2 == 1 {
					m = DirectMessage(bob.ID, ann.ID, fmt.Sprint(w, "/", i), fmt.Sprint("w", w, "-", i))
				}
				msg, duplicate, err := db.Append(ctx, m)
				if err != nil || duplicate {
					t.Errorf("Append: %v, duplicate %v", err, duplicate)
					return
				}
				if i > 0 && msg.ID <= results[w][i-1].ID {
					t.Errorf("writer %d: id %d after %d", w, msg.ID, results[w][i-1].ID)
				}
				results[w] = append(results[w], msg)
			}
		})
	}
	wait.Wait()
	all := slices.Concat(results...)
	slices.SortFunc(all, func(a, b model.Message) int { return cmp.Compare(a.ID, b.ID) })
	for i := 1; i < len(all); i++ {
		if all[i].ID == all[i-1].ID || all[i].Seq <= all[i-1].Seq {
			t.Fatalf("id %d has seq %d, after id %d with seq %d", all[i].ID, all[i].Seq, all[i-1].ID, all[i-1].Seq)
		}
	}
	if count, err := db.CountMessages(ctx); err != nil || count != writers*each {
		t.Errorf("CountMessages = %d, %v; want %d", count, err, writers*each)
	}
}

func testAppendIdempotent(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	first := MustAppend(t, db, LobbyMessage(ann.ID, "once", "c-81"))
	lastSeq, _ := db.LastSeq(ctx)

	// A retry, even with other content, returns the stored message.
	retry := LobbyMessage(ann.ID, "changed on retry", "c-81")
	msg, duplicate, err := db.Append(ctx, retry)
	if err != nil || !duplicate || msg != first {
		t.Errorf("retry = %+v, %v, %v; want %+v, duplicate", msg, duplicate, err, first)
	}
	if seq, _ := db.LastSeq(ctx); seq != lastSeq {
		t.Errorf("LastSeq moved from %d to %d on a duplicate", lastSeq, seq)
	}
	// The same cid from another sender, and empty cids, are new messages.
	MustAppend(t, db, LobbyMessage(bob.ID, "bob's", "c-81"))
	MustAppend(t, db, LobbyMessage(ann.ID, "no cid", ""))
	MustAppend(t, db, LobbyMessage(ann.ID, "no cid", ""))
	if count, err := db.CountMessages(ctx); err != nil || count != 4 {
		t.Errorf("CountMessages = %d, %v; want 4", count, err)
	}
	loaded, _, err := db.Load(ctx, model.LobbyKey, 0, 0, 0)
	if err != nil || len(loaded) != 4 || loaded[0].Text != "once" {
		t.Errorf("Load = %+v, %v", loaded, err)
	}
}

// testAppendSameCIDRace: 50 concurrent appends of one (sender, cid) store
// one message and all get it; exactly one is not a duplicate.
func testAppendSameCIDRace(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	const racers = 50
	type result struct {
		msg       model.Message
		duplicate bool
		err       error
	}
	results := make([]result, racers)
	start := make(chan struct{})
	var wait sync.WaitGroup
	for i := range racers {
		wait.Go(func() {
			<-start
			m := DirectMessage(ann.ID, bob.ID, "only once", "same-cid")
			m.TS = 1763800000000
			results[i].msg, results[i].duplicate, results[i].err = db.Append(ctx, m)
		})
	}
	close(start)
	wait.Wait()
	originals := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("racer %d: %v", i, r.err)
		}
		if r.msg != results[0].msg {
			t.Errorf("racer %d got %+v, racer 0 got %+v", i, r.msg, results[0].msg)
		}
		if !r.duplicate {
			originals++
		}
	}
	if originals != 1 {
		t.Errorf("%d results with duplicate=false, want 1", originals)
	}
	if count, err := db.CountMessages(ctx); err != nil || count != 1 {
		t.Errorf("CountMessages = %d, %v; want 1", count, err)
	}
}

func testAppendMissingSender(t *testing.T, db Engine) {
	ctx := context.Background()
	missing := MustCreateUser(t, db, "Ann").ID + 1000
	if _, _, err := db.Append(ctx, LobbyMessage(missing, "ghost", "")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Append from a missing user: error = %v, want ErrNotFound", err)
	}
	if count, err := db.CountMessages(ctx); err != nil || count != 0 {
		t.Errorf("CountMessages = %d, %v; want 0", count, err)
	}
}

func testCloseRefusesWrites(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	MustAppend(t, db, LobbyMessage(ann.ID, "before close", ""))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := db.Append(ctx, LobbyMessage(ann.ID, "after close", "")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Append after Close: error = %v, want ErrClosed", err)
	}
	if _, err := db.CreateUser(ctx, "Bob", "h", ""); !errors.Is(err, store.ErrClosed) {
		t.Errorf("CreateUser after Close: error = %v, want ErrClosed", err)
	}
	if err := db.MarkRead(ctx, ann.ID, model.LobbyKey, 1); !errors.Is(err, store.ErrClosed) {
		t.Errorf("MarkRead after Close: error = %v, want ErrClosed", err)
	}
}

// testCloseWithWritesInFlight: Close during a stream of appends; each
// append either succeeds or gets ErrClosed, and Close waits for the ones it
// accepted. (Engines with a file check what survives a reopen themselves.)
func testCloseWithWritesInFlight(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	var (
		wait             sync.WaitGroup
		mutex            sync.Mutex
		stored, refused  int
		firstStoredReady = make(chan struct{})
		once             sync.Once
	)
	for w := range 32 {
		wait.Go(func() {
			for i := 0; ; i++ {
				_, _, err := db.Append(ctx, LobbyMessage(ann.ID, "in flight", fmt.Sprint(w, "-", i)))
				mutex.Lock()
				switch {
				case err == nil:
					stored++
					once.Do(func() { close(firstStoredReady) })
				case errors.Is(err, store.ErrClosed):
					refused++
				default:
					t.Errorf("Append: %v", err)
				}
				mutex.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	<-firstStoredReady
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wait.Wait()
	if stored == 0 || refused != 32 {
		t.Errorf("%d stored and %d refused; want some stored and every writer refused once", stored, refused)
	}
}

func testIntegrityCheck(t *testing.T, db Engine) {
	ann := MustCreateUser(t, db, "Ann")
	MustAppend(t, db, LobbyMessage(ann.ID, "hello", ""))
	if result, err := db.IntegrityCheck(context.Background()); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v; want ok", result, err)
	}
}

// testAppendPublishedInSeqOrder: the after-commit action of AppendLater
// (the push) is called once for each message stored anew, after its
// commit (a reader sees it), before its wait returns, one at a time and in
// increasing seq order across concurrent writers, private and lobby
// messages alike; never for a duplicate cid, an unknown sender or a
// request whose ctx ended before it was queued.
func testAppendPublishedInSeqOrder(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	log := newPublishLog(t, db)
	publish := log.publish
	isPublished := func(id int64) bool { return log.has(func(m model.Message) bool { return m.ID == id }) }

	const writers, each = 16, 25
	var wait sync.WaitGroup
	for w := range writers {
		wait.Go(func() {
			var waits []func() (model.Message, bool, error)
			for i := range each { // pipelined, as a connection sends
				m := LobbyMessage(ann.ID, fmt.Sprint(w, "/", i), fmt.Sprint("w", w, "-", i))
				if w%2 == 1 {
					m = DirectMessage(bob.ID, ann.ID, fmt.Sprint(w, "/", i), fmt.Sprint("w", w, "-", i))
				}
				waits = append(waits, db.AppendLater(ctx, m, publish))
			}
			for _, wait := range waits {
				msg, duplicate, err := wait()
				if err != nil || duplicate {
					t.Errorf("AppendLater: %v, duplicate %v", err, duplicate)
					return
				}
				if !isPublished(msg.ID) {
					t.Errorf("the wait for message %d returned before its published call", msg.ID)
				}
			}
		})
	}
	wait.Wait()
	published := log.messages()
	if len(published) != writers*each {
		t.Fatalf("published called %d times for %d messages", len(published), writers*each)
	}
	for i := 1; i < len(published); i++ {
		if published[i].Seq <= published[i-1].Seq {
			t.Fatalf("published call %d has seq %d after seq %d", i, published[i].Seq, published[i-1].Seq)
		}
	}
	first := published[0]
	if first.ID <= 0 || first.From.ID == 0 || first.Text == "" || first.Key == "" {
		t.Errorf("published got %+v, want the stored message", first)
	}

	// Nothing is published for what stores nothing new.
	count := len(published)
	again, duplicate, err := db.AppendLater(ctx, LobbyMessage(ann.ID, "again", "w0-3"), publish)()
	if err != nil || !duplicate {
		t.Errorf("a repeated cid: %+v duplicate %v err %v", again, duplicate, err)
	}
	if _, _, err := db.AppendLater(ctx, LobbyMessage(ann.ID+bob.ID+1000, "ghost", ""), publish)(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown sender: %v, want ErrNotFound", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := db.AppendLater(gone, LobbyMessage(ann.ID, "gone", ""), publish)(); !errors.Is(err, context.Canceled) {
		t.Errorf("an ended ctx: %v, want context.Canceled", err)
	}
	MustAppend(t, db, LobbyMessage(ann.ID, "after", "")) // one more commit: anything owed is published by now
	if published = log.messages(); len(published) != count {
		t.Errorf("published called %d more times for a duplicate, a ghost and a cancelled send: %+v", len(published)-count, published[count:])
	}
}
