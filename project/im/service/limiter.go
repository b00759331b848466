package service

import (
	"context"
	"fmt"
	"strconv"
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
	// pending counts, per key, the events reserved and not yet settled
	// (a login whose password is being hashed).
	pending map[string]int
}

func newWindowLimiter(window time.Duration) *windowLimiter {
	return &windowLimiter{window: window, events: map[string][]time.Time{}, pending: map[string]int{}}
}

// pendingRetry is the wait a client is told when a key is at its limit
// only because of attempts still being decided: they end within a hash.
const pendingRetry = 250 * time.Millisecond

// limitKey is one key an attempt counts against, with its limit. With
// ifFirstHasEvents it binds only when the first key of the attempt already
// has events in the window (the per-nickname limit binds only addresses
// that failed for the nickname themselves), though it is counted always.
type limitKey struct {
	key              string
	limit            int
	ifFirstHasEvents bool
}

// reserve counts one attempt against every key at once, unless a key is
// at its limit, in which case it counts nothing and says how long to wait.
// The check and the count are one step under the lock, so attempts that
// arrive together cannot all pass the check before any is counted. The
// caller settles the reservation when the attempt's outcome is known:
// kept (a failure) or taken back.
func (w *windowLimiter) reserve(keys []limitKey, now time.Time) (reservation, time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	firstHas := len(keys) > 0 && len(w.pruneLocked(keys[0].key, now)) > 0
	for _, k := range keys {
		if k.limit <= 0 || (k.ifFirstHasEvents && !firstHas) {
			continue
		}
		ev := w.pruneLocked(k.key, now)
		if len(ev) < k.limit {
			continue
		}
		if len(ev)-w.pending[k.key] < k.limit {
			return reservation{}, pendingRetry, false
		}
		return reservation{}, ev[len(ev)-k.limit].Add(w.window).Sub(now), false
	}
	for _, k := range keys {
		ev := append(w.pruneLocked(k.key, now), now)
		if keep := max(k.limit, 1); len(ev) > keep {
			ev = ev[len(ev)-keep:]
		}
		w.events[k.key] = ev
		w.pending[k.key]++
	}
	return reservation{w: w, keys: keys, at: now}, 0, true
}

// reservation is an attempt reserve counted and nobody settled yet.
type reservation struct {
	w    *windowLimiter
	keys []limitKey
	at   time.Time
}

// settle decides a reservation: keep leaves the attempt counted (it
// failed); otherwise it is taken back, as if it had never been made.
// Settling twice, or a zero reservation, does nothing.
func (r *reservation) settle(keep bool) {
	w := r.w
	if w == nil {
		return
	}
	r.w = nil
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range r.keys {
		if w.pending[k.key]--; w.pending[k.key] <= 0 {
			delete(w.pending, k.key)
		}
		if keep {
			continue
		}
		ev := w.events[k.key]
		for i := len(ev) - 1; i >= 0; i-- {
			if ev[i].Equal(r.at) {
				ev = append(ev[:i], ev[i+1:]...)
				break
			}
		}
		if len(ev) == 0 {
			delete(w.events, k.key)
		} else {
			w.events[k.key] = ev
		}
	}
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
type userLimiter = keyedLimiter[int64]

func newUserLimiter(perSecond, burst int) *userLimiter {
	return newKeyedLimiter[int64](perSecond, burst)
}

// SharedLimiter is a token bucket per key shared by several nodes (GCRA in
// Redis), so that a user meets the same limit whichever nodes they use.
// Allow takes a token for key at perSecond with burst, or says how long
// until one is free; an error (the engine cannot answer) has the caller
// fall back to this node's own bucket.
type SharedLimiter interface {
	Allow(ctx context.Context, key string, perSecond, burst int) (wait time.Duration, ok bool, err error)
}

// sharedTimeout bounds one question to a SharedLimiter.
const sharedTimeout = 500 * time.Millisecond

// keyedLimiter is a token bucket per key: a user, an address. With shared
// set (several nodes), the buckets are the shared ones, named name:key,
// and the local ones serve only while the shared limiter fails.
type keyedLimiter[K comparable] struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets map[K]*bucket
	shared  SharedLimiter
	name    string
}

// share puts the limiter's buckets in shared under name.
func (u *keyedLimiter[K]) share(shared SharedLimiter, name string) {
	u.shared, u.name = shared, name
}

// allowShared asks the shared limiter; done is false when it could not
// answer.
func (u *keyedLimiter[K]) allowShared(key K) (wait time.Duration, ok, done bool) {
	u.mu.Lock()
	perSecond, burst := int(u.limit), u.burst
	u.mu.Unlock()
	if perSecond <= 0 {
		return 0, false, false // a rate of 0 is the local bucket's to judge (a burst, then nothing)
	}
	var k string
	switch v := any(key).(type) {
	case int64:
		k = u.name + ":" + strconv.FormatInt(v, 10)
	case string:
		k = u.name + ":" + v
	default:
		k = u.name + ":" + fmt.Sprint(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	wait, ok, err := u.shared.Allow(ctx, k, perSecond, burst)
	if err != nil {
		return 0, false, false
	}
	return wait, ok, true
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newKeyedLimiter[K comparable](perSecond, burst int) *keyedLimiter[K] {
	return &keyedLimiter[K]{limit: rate.Limit(perSecond), burst: burst, buckets: map[K]*bucket{}}
}

// allow takes a token for key, or says how long until one is free.
func (u *keyedLimiter[K]) allow(key K, now time.Time) (time.Duration, bool) {
	if u.shared != nil {
		if wait, ok, done := u.allowShared(key); done {
			return wait, ok
		}
	}
	u.mu.Lock()
	b := u.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(u.limit, u.burst)}
		u.buckets[key] = b
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

// setRate changes the rate for every key (a reload).
func (u *keyedLimiter[K]) setRate(perSecond, burst int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.limit, u.burst = rate.Limit(perSecond), burst
	for _, b := range u.buckets {
		b.lim.SetLimit(u.limit)
		b.lim.SetBurst(burst)
	}
}

// sweep drops buckets idle long enough to be full again.
func (u *keyedLimiter[K]) sweep(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, b := range u.buckets {
		if now.Sub(b.last) > time.Minute {
			delete(u.buckets, id)
		}
	}
}

// shareLimits puts the per-user limiters (sends, typing, updates,
// creations, searches, connections and resumes) in shared, when it is set.
// The per-address and failed-login limits stay per node: an address's
// connections and logins reach one node more often than not, and their
// limits are loose.
func (s *Service) shareLimits(shared SharedLimiter) {
	if shared == nil {
		return
	}
	s.sends.share(shared, "sends")
	s.typing.share(shared, "typing")
	s.updates.share(shared, "updates")
	s.creations.share(shared, "creations")
	s.searches.perUser.share(shared, "searches")
	s.admission.perUser.share(shared, "connects")
}
