package service

import (
	"sync"
	"testing"
	"time"
)

// foldRecorder records what a presenceFolder sends.
type foldRecorder struct {
	mu    sync.Mutex
	sent  []presenceState
	times []time.Time
}

func (r *foldRecorder) send(_ int64, online bool, places int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, presenceState{online, places})
	r.times = append(r.times, time.Now())
}

func (r *foldRecorder) got() []presenceState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]presenceState(nil), r.sent...)
}

// TestPresenceFolding: the first change goes out at once; a burst within
// the interval is one push of the last state at the interval's end; a
// burst that ends where the last push left it sends nothing more.
func TestPresenceFolding(t *testing.T) {
	const interval = 50 * time.Millisecond
	r := &foldRecorder{}
	f := newPresenceFolder(interval, r.send)
	defer f.close()
	now := time.Now()
	f.change(7, true, 1, now)
	if got := r.got(); len(got) != 1 || got[0] != (presenceState{true, 1}) {
		t.Fatalf("first change: %v, want one push at once", got)
	}
	for places := 2; places <= 40; places++ {
		f.change(7, true, places, time.Now())
	}
	f.change(7, true, 3, time.Now())
	if got := r.got(); len(got) != 1 {
		t.Fatalf("a burst within the interval was pushed at once: %v", got)
	}
	time.Sleep(3 * interval)
	got := r.got()
	if len(got) != 2 || got[1] != (presenceState{true, 3}) {
		t.Fatalf("after the interval: %v, want the last state (online, 3 places) once", got)
	}
	if gap := r.times[1].Sub(r.times[0]); gap < interval {
		t.Fatalf("two pushes %v apart, want at least %v", gap, interval)
	}
	// Away and back within an interval after a push: the watchers' view is
	// already right.
	f.change(7, true, 4, time.Now()) // after a quiet interval: at once
	f.change(7, true, 5, time.Now())
	f.change(7, true, 4, time.Now())
	time.Sleep(3 * interval)
	if got := r.got(); len(got) != 3 || got[2] != (presenceState{true, 4}) {
		t.Fatalf("a change undone within the interval was pushed: %v", got)
	}
	// Offline is folded like any change, and arrives.
	f.change(7, true, 1, time.Now())
	f.change(7, false, 0, time.Now())
	time.Sleep(3 * interval)
	if got := r.got(); got[len(got)-1] != (presenceState{false, 0}) {
		t.Fatalf("the last push %v, want offline", got[len(got)-1])
	}
	// Users are folded apart; sweep forgets the quiet ones.
	f.change(8, true, 1, time.Now())
	if got := r.got(); got[len(got)-1] != (presenceState{true, 1}) {
		t.Fatalf("another user's first change waited: %v", got)
	}
	f.sweep(time.Now().Add(time.Hour))
	f.mu.Lock()
	left := len(f.users)
	f.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d users left after a sweep", left)
	}
}
