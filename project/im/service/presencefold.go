package service

import (
	"sync"
	"time"
)

// presenceInterval is the least time between two im/presence pushes about
// one user (PROTOCOL.md section 5): a client that reconnects in a loop
// costs its watchers one push a second, not one per connection.
const presenceInterval = time.Second

// presenceFolder folds a user's presence changes into at most one push per
// interval. The first change after a quiet interval goes out at once; the
// ones that follow within the interval wait for its end and go out as one
// push of the state then, so the last state always arrives. A user whose
// state is back where the last push left it by then is not pushed at all.
//
// Every push is the same for every watcher (it is broadcast), so folding
// per user is folding per user per watcher. send runs under mu, which
// keeps each user's pushes in order; it only enqueues.
type presenceFolder struct {
	interval time.Duration
	send     func(user int64, online bool, places int)

	mu     sync.Mutex // guards users and closed; held while send runs
	users  map[int64]*foldedPresence
	closed bool
}

type foldedPresence struct {
	lastPush time.Time
	pushed   presenceState // what the last push said
	latest   presenceState // the state now
	timer    *time.Timer   // armed while a change waits for the interval's end
}

type presenceState struct {
	online bool
	places int
}

func newPresenceFolder(interval time.Duration, send func(user int64, online bool, places int)) *presenceFolder {
	return &presenceFolder{interval: interval, send: send, users: map[int64]*foldedPresence{}}
}

// change is told every change of a user's places, in order.
func (f *presenceFolder) change(user int64, online bool, places int, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	u := f.users[user]
	if u == nil {
		u = &foldedPresence{}
		f.users[user] = u
	}
	u.latest = presenceState{online, places}
	switch {
	case u.timer != nil: // folded into the push at the interval's end
	case now.Sub(u.lastPush) >= f.interval:
		f.pushLocked(user, u, now)
	default:
		u.timer = time.AfterFunc(u.lastPush.Add(f.interval).Sub(now), func() { f.due(user) })
	}
}

// due sends a user's folded changes at the end of the interval.
func (f *presenceFolder) due(user int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[user]
	if f.closed || u == nil {
		return
	}
	u.timer = nil
	if u.latest != u.pushed {
		f.pushLocked(user, u, time.Now())
	}
}

func (f *presenceFolder) pushLocked(user int64, u *foldedPresence, now time.Time) {
	u.lastPush, u.pushed = now, u.latest
	f.send(user, u.latest.online, u.latest.places)
}

// sweep forgets users whose last push is more than an interval old and
// who have nothing waiting: their next change goes out at once anyway.
func (f *presenceFolder) sweep(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, u := range f.users {
		if u.timer == nil && now.Sub(u.lastPush) >= f.interval {
			delete(f.users, id)
		}
	}
}

// close stops the waiting pushes; later changes are dropped.
func (f *presenceFolder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, u := range f.users {
		if u.timer != nil {
			u.timer.Stop()
		}
	}
}
