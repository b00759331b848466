package service

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// windowLimiter counts events per key in a sliding window: failed logins
// keyed by nickname and address, registrations keyed by address.
type windowLimiter struct {
	mu     sync.Mutex
	window time.Duration
	events map[string][]time.Time // oldest first, at most the largest limit asked
}

func newWindowLimiter(window time.Duration) *windowLimiter {
	return &windowLimiter{window: window, events: map[string][]time.Time{}}
}

// blocked reports whether key has limit or more events in the window, and
// if so how long until the oldest leaves it.
func (w *windowLimiter) blocked(key string, limit int, now time.Time) (time.Duration, bool) {
	if limit <= 0 {
		return 0, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.pruneLocked(key, now)
	if len(ev) < limit {
		return 0, false
	}
	return ev[len(ev)-limit].Add(w.window).Sub(now), true
}

// count is how many events key has in the window.
func (w *windowLimiter) count(key string, now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pruneLocked(key, now))
}

// add records an event for key, keeping at most keep of them.
func (w *windowLimiter) add(key string, keep int, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := append(w.pruneLocked(key, now), now)
	if len(ev) > keep {
		ev = ev[len(ev)-keep:]
	}
	w.events[key] = ev
}

// reset forgets key (a successful login clears its own failures).
func (w *windowLimiter) reset(key string) {
	w.mu.Lock()
	delete(w.events, key)
	w.mu.Unlock()
}

func (w *windowLimiter) pruneLocked(key string, now time.Time) []time.Time {
	ev := w.events[key]
	i := 0
	for i < len(ev) && now.Sub(ev[i]) >= w.window {
		i++
	}
	if i == len(ev) {
		delete(w.events, key)
		return nil
	}
	return ev[i:]
}

// sweep drops keys whose events have all left the window.
func (w *windowLimiter) sweep(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key := range w.events {
		w.pruneLocked(key, now)
	}
}

// userLimiter is a token bucket per user, shared by all of the user's
// connections and transports (N tabs never get N times the rate).
type userLimiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets map[int64]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newUserLimiter(perSecond, burst int) *userLimiter {
	return &userLimiter{limit: rate.Limit(perSecond), burst: burst, buckets: map[int64]*bucket{}}
}

// allow takes a token for user, or says how long until one is free.
func (u *userLimiter) allow(user int64, now time.Time) (time.Duration, bool) {
	u.mu.Lock()
	b := u.buckets[user]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(u.limit, u.burst)}
		u.buckets[user] = b
	}
	b.last = now
	u.mu.Unlock()
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// setRate changes the rate for every user (a reload).
func (u *userLimiter) setRate(perSecond, burst int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.limit, u.burst = rate.Limit(perSecond), burst
	for _, b := range u.buckets {
		b.lim.SetLimit(u.limit)
		b.lim.SetBurst(burst)
	}
}

// sweep drops buckets idle long enough to be full again.
func (u *userLimiter) sweep(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, b := range u.buckets {
		if now.Sub(b.last) > time.Minute {
			delete(u.buckets, id)
		}
	}
}
