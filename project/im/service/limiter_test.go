package service

import (
	"sync"
	"testing"
	"time"
)

// The failed-login window: limit events are allowed, the next is blocked
// until the oldest of the last limit leaves the window.
func TestWindowLimiterThresholds(t *testing.T) {
	const window = 5 * time.Minute
	w := newWindowLimiter(window)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 5 {
		if _, blocked := w.blocked("na|victim|1.2.3.4", 5, t0.Add(time.Duration(i)*time.Second)); blocked {
			t.Fatalf("blocked after %d events; the limit is 5", i)
		}
		w.add("na|victim|1.2.3.4", 5, t0.Add(time.Duration(i)*time.Second))
	}
	now := t0.Add(10 * time.Second)
	wait, blocked := w.blocked("na|victim|1.2.3.4", 5, now)
	if !blocked || wait != window-10*time.Second {
		t.Fatalf("after 5 events: blocked=%v wait=%v; want blocked for %v", blocked, wait, window-10*time.Second)
	}
	if _, blocked := w.blocked("na|victim|5.6.7.8", 5, now); blocked {
		t.Fatal("another key is blocked")
	}
	// The oldest leaves the window: one more is allowed.
	if _, blocked := w.blocked("na|victim|1.2.3.4", 5, t0.Add(window)); blocked {
		t.Fatal("still blocked after the oldest event left the window")
	}
	// A larger limit on the same key is not yet reached (keep bounds memory, not the count).
	if _, blocked := w.blocked("na|victim|1.2.3.4", 30, now); blocked {
		t.Fatal("5 events block a limit of 30")
	}
	w.reset("na|victim|1.2.3.4")
	if _, blocked := w.blocked("na|victim|1.2.3.4", 5, now); blocked {
		t.Fatal("blocked after reset")
	}
	if _, blocked := w.blocked("any", 0, now); blocked {
		t.Fatal("a limit of 0 blocks")
	}
}

// Memory stays bounded: at most keep events per key, and sweep drops keys
// whose events have all left the window.
func TestWindowLimiterMemory(t *testing.T) {
	w := newWindowLimiter(time.Minute)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 1000 {
		w.add("k", 50, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(w.events["k"]); n != 50 {
		t.Fatalf("%d events kept for one key, want 50", n)
	}
	for i := range 100 {
		w.add(string(rune('a'+i%26))+string(rune(i)), 5, t0)
	}
	w.sweep(t0.Add(2 * time.Minute))
	if n := len(w.events); n != 0 {
		t.Fatalf("%d keys left after everything left the window", n)
	}
}

// The per-user bucket: a burst, then the rate; the wait it names is
// enough; users are independent.
func TestUserLimiter(t *testing.T) {
	u := newUserLimiter(10, 20)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 20 {
		if _, ok := u.allow(1, t0); !ok {
			t.Fatalf("send %d of a burst of 20 refused", i+1)
		}
	}
	wait, ok := u.allow(1, t0)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("21st at once: ok=%v wait=%v; want refused with a wait of at most 100ms", ok, wait)
	}
	// A refusal takes no token: after the wait named, one send passes, and
	// refusals meanwhile did not push it further back.
	for range 50 {
		u.allow(1, t0.Add(wait/2))
	}
	if _, ok := u.allow(1, t0.Add(wait)); !ok {
		t.Fatalf("refused after waiting the %v named", wait)
	}
	if _, ok := u.allow(2, t0); !ok {
		t.Fatal("another user is limited by user 1's sends")
	}
	// Over a second, about the rate more.
	n := 0
	for ms := 1; ms <= 1000; ms++ {
		if _, ok := u.allow(3, t0.Add(time.Duration(ms)*time.Millisecond)); ok {
			n++
		}
	}
	if n < 20 || n > 20+10+1 {
		t.Fatalf("%d sends allowed in a second from a full bucket; want 20..31", n)
	}
	u.setRate(1, 1)
	u.sweep(t0.Add(time.Hour))
	if len(u.buckets) != 0 {
		t.Fatalf("%d idle buckets left after a sweep", len(u.buckets))
	}
}

// Many connections of one user share one bucket (run with -race).
func TestUserLimiterSharedAcrossGoroutines(t *testing.T) {
	u := newUserLimiter(10, 20)
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, ok := u.allow(7, now); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 20 {
		t.Fatalf("%d of 100 simultaneous sends allowed; want the burst, 20", allowed)
	}
}

// reserve counts before the outcome is known: of many attempts at once,
// exactly the limit get through; taking them back frees their places;
// while they are undecided the wait told is short.
func TestWindowLimiterReserve(t *testing.T) {
	w := newWindowLimiter(5 * time.Minute)
	now := time.Now()
	keys := []limitKey{{key: "na|n|ip", limit: 5}, {key: "a|ip", limit: 30}, {key: "n|n", limit: 50, ifFirstHasEvents: true}}
	var (
		mu      sync.Mutex
		granted []reservation
		waits   []time.Duration
		wg      sync.WaitGroup
	)
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, wait, ok := w.reserve(keys, now)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				granted = append(granted, r)
			} else {
				waits = append(waits, wait)
			}
		}()
	}
	wg.Wait()
	if len(granted) != 5 {
		t.Fatalf("%d of 60 attempts at once were let through, want 5", len(granted))
	}
	for _, wait := range waits {
		if wait != pendingRetry {
			t.Fatalf("wait %v while the attempts are undecided, want %v", wait, pendingRetry)
		}
	}
	for i := range granted[:4] {
		granted[i].settle(false) // right passwords: taken back
	}
	granted[4].settle(true)  // a wrong one: kept
	granted[4].settle(false) // settled once only
	for i := range 4 {
		r, _, ok := w.reserve(keys, now)
		if !ok {
			t.Fatalf("attempt %d after 4 were taken back: refused", i)
		}
		r.settle(true)
	}
	if _, wait, ok := w.reserve(keys, now); ok || wait <= pendingRetry {
		t.Fatalf("after 5 kept failures: ok=%v wait=%v, want refused until the window passes", ok, wait)
	}
	// The per-nickname key binds only an address that failed itself.
	other := []limitKey{{key: "na|n|ip2", limit: 5}, {key: "a|ip2", limit: 30}, {key: "n|n", limit: 5, ifFirstHasEvents: true}}
	if r, _, ok := w.reserve(other, now); !ok {
		t.Fatalf("another address, no failures of its own: refused by the nickname's")
	} else {
		r.settle(false)
	}
}
