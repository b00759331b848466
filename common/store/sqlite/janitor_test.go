package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/common/store"
	"dce/common/store/storetest"
)

// countSessions reads the database file through a handle of its own, not
// the store's: live is the sessions whose expiry is after now, expired the
// others.
func countSessions(t *testing.T, path string, now time.Time) (live, expired int) {
	t.Helper()
	file, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if err := file.QueryRow(`SELECT COUNT(*) FILTER (WHERE expires > ?1), COUNT(*) FILTER (WHERE expires <= ?1) FROM sessions`,
		now.UnixMilli()).Scan(&live, &expired); err != nil {
		t.Fatal(err)
	}
	return live, expired
}

// saveSessions saves n sessions of user expiring at expires, named
// prefix-0 to prefix-(n-1), from a few goroutines at once.
func saveSessions(t *testing.T, db *DB, user int64, prefix string, n int, expires time.Time) {
	t.Helper()
	var wait sync.WaitGroup
	for w := range 8 {
		wait.Go(func() {
			for i := w; i < n; i += 8 {
				if err := db.SaveSession(context.Background(), fmt.Sprint(prefix, "-", i), user, time.Now(), expires); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wait.Wait()
}

// TestJanitorRemovesExpiredSessions: sessions with a short lifetime are
// gone from the file soon after they expire (more than one batch of them),
// live ones stay, Close stops the janitor, and sessions that expired while
// the store was closed are gone once it opens again. The store's clock is
// the test's, so how long saving takes on a loaded machine cannot expire a
// session early.
func TestJanitorRemovesExpiredSessions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	const interval = 50 * time.Millisecond
	var clock atomic.Int64 // Unix milliseconds
	clock.Store(time.Now().UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	advance := func(d time.Duration) { clock.Add(d.Milliseconds()) }
	db, err := Open(ctx, Options{Path: path, Synchronous: "NORMAL", SessionSweep: interval, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ann := storetest.MustCreateUser(t, db, "Ann")
	short := 2*sessionSweepBatch + 17
	saveSessions(t, db, ann.ID, "short", short, now().Add(time.Hour))
	saveSessions(t, db, ann.ID, "live", 3, now().Add(100*time.Hour))
	time.Sleep(3 * interval) // sweeps that must find nothing to remove
	if live, expired := countSessions(t, path, now()); live != short+3 || expired != 0 {
		t.Fatalf("before expiry: %d live, %d expired sessions in the file; want %d, 0", live, expired, short+3)
	}

	// Gone within a few sweeps of expiring, with room for a slow machine.
	advance(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(interval / 2)
		live, expired := countSessions(t, path, now())
		if live+expired == 3 && expired == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after expiry: %d live, %d expired sessions in the file; want 3, 0", live, expired)
		}
	}
	for i := range 3 {
		if userID, _, _, err := db.LoadSession(ctx, fmt.Sprint("live-", i)); err != nil || userID != ann.ID {
			t.Errorf("LoadSession(live-%d) = %d, %v; want %d", i, userID, err, ann.ID)
		}
	}

	// Expiring while the store is closed: Close stops the janitor, so the
	// rows are still in the file when the store opens again.
	saveSessions(t, db, ann.ID, "closed", 5, now().Add(time.Hour))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-db.janitor.done:
	default:
		t.Fatal("the janitor still runs after Close")
	}
	advance(2 * time.Hour)
	time.Sleep(3 * interval)
	if live, expired := countSessions(t, path, now()); live != 3 || expired != 5 {
		t.Fatalf("while closed: %d live, %d expired sessions in the file; want 3, 5", live, expired)
	}
	db = MustOpen(t, Options{Path: path, SessionSweep: time.Hour, Now: now})
	if live, expired := countSessions(t, path, now()); live != 3 || expired != 0 {
		t.Errorf("after reopening: %d live, %d expired sessions in the file; want 3, 0", live, expired)
	}
	for i := range 5 {
		if _, _, _, err := db.LoadSession(ctx, fmt.Sprint("closed-", i)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LoadSession(closed-%d) after reopening: %v, want ErrNotFound", i, err)
		}
	}
	for i := range 3 {
		if userID, _, _, err := db.LoadSession(ctx, fmt.Sprint("live-", i)); err != nil || userID != ann.ID {
			t.Errorf("LoadSession(live-%d) after reopening = %d, %v; want %d", i, userID, err, ann.ID)
		}
	}
}

// TestJanitorOff: a negative SessionSweep never removes anything; the
// rows stay until DeleteExpiredSessions, which takes them all, batch by
// batch.
func TestJanitorOff(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	db := MustOpen(t, Options{Path: path, Synchronous: "NORMAL", SessionSweep: -1})
	ann := storetest.MustCreateUser(t, db, "Ann")
	n := sessionSweepBatch + 1
	saveSessions(t, db, ann.ID, "short", n, time.Now().Add(50*time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	if live, expired := countSessions(t, path, time.Now()); live != 0 || expired != n {
		t.Fatalf("janitor off: %d live, %d expired sessions in the file; want 0, %d", live, expired, n)
	}
	if removed, err := db.DeleteExpiredSessions(ctx); err != nil || removed != int64(n) {
		t.Errorf("DeleteExpiredSessions = %d, %v; want %d", removed, err, n)
	}
	if live, expired := countSessions(t, path, time.Now()); live != 0 || expired != 0 {
		t.Errorf("after DeleteExpiredSessions: %d live, %d expired sessions in the file; want 0, 0", live, expired)
	}
}
