package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dce/common/model"
	"dce/common/store"
	"dce/common/store/storetest"
)

// stream is what one instance hands on, in call order: the seq of every
// remote change and local message change, and 0 for a local group change
// (its committed action is not told its seq).
type stream struct {
	mu      sync.Mutex
	seqs    []int64
	remote  int
	running int
	t       *testing.T
}

func (s *stream) add(seq int64, remote bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seqs = append(s.seqs, seq)
	if remote {
		s.remote++
	}
}

func (s *stream) change(c store.Change) { s.add(c.Seq, true) }

func (s *stream) message(m model.Message) { s.add(m.Seq, false) }

func (s *stream) group(model.GroupChange) { s.add(0, false) }

func (s *stream) snapshot() ([]int64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.seqs...), s.remote
}

// check reports what is wrong with the stream for a store whose changes
// are 1..last: it must name every seq once, in increasing order, each
// local group change filling one place.
func (s *stream) check(last int64) error {
	seqs, _ := s.snapshot()
	if int64(len(seqs)) != last {
		return fmt.Errorf("%d changes handed on, want %d", len(seqs), last)
	}
	for i, seq := range seqs {
		if seq != 0 && seq != int64(i+1) {
			return fmt.Errorf("place %d holds seq %d", i+1, seq)
		}
	}
	return nil
}

// waitStream waits (bounded) until the stream has handed on last changes.
func waitStream(t *testing.T, s *stream, last int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		seqs, _ := s.snapshot()
		if int64(len(seqs)) >= last || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.check(last); err != nil {
		t.Error(err)
	}
}

// hammer runs writers goroutines on each instance, each making rounds
// changes (messages, edits, deletions, group writes), and returns the
// messages acknowledged.
func hammer(t *testing.T, dbs []*DB, streams []*stream, users []model.Account, writers, rounds int) {
	var wg sync.WaitGroup
	ctx := context.Background()
	errs := make(chan error, len(dbs)*writers)
	for n, db := range dbs {
		s := streams[n]
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				me := users[(n*writers+w)%len(users)]
				other := users[(n*writers+w+1)%len(users)]
				var last model.Message
				for i := range rounds {
					var err error
					switch i % 7 {
					case 3:
						_, err = db.EditLater(ctx, last.ID, fmt.Sprintf("edited %d/%d/%d", n, w, i), s.message)()
					case 5:
						_, _, err = db.DeleteLater(ctx, last.ID, s.message)()
					case 6:
						_, err = db.CreateGroup(ctx, model.NewGroup{Name: "g", Owner: me.ID, Members: []int64{other.ID}}, 0, s.group)
					default:
						m := storetest.DirectMessage(me.ID, other.ID, fmt.Sprintf("hi %d/%d/%d", n, w, i), "")
						if i%2 == 0 {
							m = storetest.LobbyMessage(me.ID, fmt.Sprintf("lobby %d/%d/%d", n, w, i), "")
						}
						last, _, err = db.AppendLater(ctx, m, s.message)()
					}
					if err != nil {
						errs <- fmt.Errorf("instance %d writer %d round %d: %w", n, w, i, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testNodes(t *testing.T, nodes int) {
	dsn := freshDatabase(t)
	dbs := make([]*DB, nodes)
	streams := make([]*stream, nodes)
	for i := range dbs {
		streams[i] = &stream{t: t}
		dbs[i] = openTest(t, dsn, Options{Remote: streams[i].change})
	}
	var users []model.Account
	for i := range 6 {
		users = append(users, storetest.MustCreateUser(t, dbs[i%nodes], fmt.Sprintf("user%d", i)))
	}
	start := time.Now()
	hammer(t, dbs, streams, users, 4, 70)
	last, err := dbs[0].LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(nodes * 4 * 70); last != want {
		t.Errorf("LastSeq = %d after %d changes", last, want)
	}
	for i, s := range streams {
		waitStream(t, s, last)
		_, remote := s.snapshot()
		if remote == 0 {
			t.Errorf("instance %d was handed no remote change", i)
		}
	}
	if result, err := dbs[0].IntegrityCheck(context.Background()); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", result, err)
	}
	// Every reader's sync stream, paged, has every message once.
	for _, u := range users {
		since, seen := int64(0), map[int64]bool{}
		for {
			msgs, latest, more, err := dbs[len(dbs)-1].Sync(context.Background(), u.ID, since, 50)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if m.Seq <= since || seen[m.ID] {
					t.Fatalf("sync of user %d: message %d (seq %d) again or out of order after %d", u.ID, m.ID, m.Seq, since)
				}
				seen[m.ID] = true
				since = m.Seq
			}
			since = latest
			if !more {
				break
			}
		}
		if since != last {
			t.Errorf("sync of user %d ends at %d, want %d", u.ID, since, last)
		}
	}
	var commits int64
	for _, db := range dbs {
		commits += db.Commits()
	}
	t.Logf("%d instances: %d changes in %v, %d commits", nodes, last, time.Since(start), commits)
}

// TestTwoNodes and TestThreeNodes: instances on one database with
// concurrent writers on each; every instance's stream (Remote and its own
// after-commit actions) is increasing, contiguous and covers every change
// once.
func TestTwoNodes(t *testing.T)   { testNodes(t, 2) }
func TestThreeNodes(t *testing.T) { testNodes(t, 3) }

// TestListenConnectionKilled: a LISTEN connection terminated by the server
// loses nothing, and is made again.
func TestListenConnectionKilled(t *testing.T) {
	dsn := freshDatabase(t)
	a := openTest(t, dsn, Options{})
	bStream := &stream{t: t}
	b := openTest(t, dsn, Options{Remote: bStream.change, Poll: 5 * time.Second})
	ann := storetest.MustCreateUser(t, a, "Ann")
	deadline := time.Now().Add(5 * time.Second)
	for b.listenerPID.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := b.listenerPID.Load()
	for i := range 20 {
		if i == 10 {
			if _, err := a.pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, before); err != nil {
				t.Fatal(err)
			}
		}
		storetest.MustAppend(t, a, storetest.LobbyMessage(ann.ID, fmt.Sprint("m", i), ""))
	}
	waitStream(t, bStream, 20)
	for b.listenerPID.Load() == before && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	if b.listenerPID.Load() == before {
		t.Error("the LISTEN connection was not made again")
	}
	// Woken by the new connection, not the 5 s poll.
	start := time.Now()
	storetest.MustAppend(t, a, storetest.LobbyMessage(ann.ID, "after", ""))
	waitStream(t, bStream, 21)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("a change took %v to reach the other instance", elapsed)
	}
}

// TestWriteErrorIsNoSuccess: a write PostgreSQL refuses (a NUL in a text)
// gets an error and stores nothing, while the writes in its batch commit.
func TestWriteErrorIsNoSuccess(t *testing.T) {
	db := openTest(t, freshDatabase(t), Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	ctx := context.Background()
	var waits []func() (model.Message, bool, error)
	for i := range 10 {
		text := fmt.Sprint("fine ", i)
		if i == 5 {
			text = "bad \x00 text"
		}
		waits = append(waits, db.AppendLater(ctx, storetest.LobbyMessage(ann.ID, text, ""), nil))
	}
	for i, wait := range waits {
		msg, _, err := wait()
		if (i == 5) != (err != nil) {
			t.Errorf("write %d: %+v, %v", i, msg, err)
		}
	}
	if count, _ := db.CountMessages(ctx); count != 9 {
		t.Errorf("%d messages stored, want 9", count)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", result, err)
	}
}

// TestConnectionsKilledMidWrites: the server terminating every connection
// of the engine while writes flow gives their waiters errors, never a
// false success (every acknowledged message is stored), and the engine
// recovers by itself.
func TestConnectionsKilledMidWrites(t *testing.T) {
	dsn := freshDatabase(t)
	db := openTest(t, dsn, Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	ctx := context.Background()
	killer, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)
	var (
		mu    sync.Mutex
		acked []model.Message
		fails int
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg, _, err := db.Append(ctx, storetest.LobbyMessage(ann.ID, fmt.Sprintf("w%d m%d", w, i), ""))
				mu.Lock()
				if err == nil {
					acked = append(acked, msg)
				} else {
					fails++
				}
				mu.Unlock()
			}
		}()
	}
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		if _, err := killer.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d acknowledged, %d failed", len(acked), fails)
	admin := openTest(t, dsn, Options{SessionSweep: -1})
	for _, msg := range acked {
		stored, err := admin.MessageFor(ctx, ann.ID, msg.ID)
		if err != nil || stored.Seq != msg.Seq || stored.Text != msg.Text {
			t.Fatalf("acknowledged message %+v: stored %+v, %v", msg, stored, err)
		}
	}
	// Recovered: a write succeeds again soon.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := db.Append(ctx, storetest.LobbyMessage(ann.ID, "after", ""))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write succeeds after the connections were killed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if result, err := admin.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", result, err)
	}
}
