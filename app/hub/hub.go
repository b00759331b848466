package hub

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/node"
	"dce/common/model"
)

// Admission errors: each is the disconnect its connection gets where it
// already has a socket with close codes (a WebSocket whose sid names a
// user over the cap, one that raced past Admit).
var (
	ErrServerFull     = &node.Disconnect{Code: node.CloseOverConnLimit, Reason: "the server is at its connection limit"}
	ErrTooManyAnon    = &node.Disconnect{Code: node.CloseOverConnLimit, Reason: "too many connections from this address without a login"}
	ErrTooManyForUser = &node.Disconnect{Code: node.CloseOverConnLimit, Reason: "too many connections for this user"}
	ErrShuttingDown   = &node.Disconnect{Code: node.CloseGoingAway, Reason: "the server is shutting down"}
)

var errConnectionGone = errors.New("the connection has closed")

const (
	defaultQueueBytes  = 1 << 20
	defaultQueueFrames = 4096
)

// Options configure a Hub. Zero values take the defaults noted.
type Options struct {
	QueueBytes   int           // bytes queued per connection before it is closed as too slow; 1 MiB
	QueueFrames  int           // frames queued per connection before the same; 4096
	WriteTimeout time.Duration // how long a close may take to flush and write its close frame (Finish); 10 s
	// WriteDelay is how long the writer of a hot connection (one that
	// wrote less than a delay ago, and has lately been sent at least
	// minDelayedBatch frames per delay) waits, once woken, for more frames
	// before it writes, per 1,000 hot connections (writer.go): under a
	// broadcast storm that turns one syscall per frame into one per batch,
	// while a connection sent less still writes each frame at once. 0:
	// always write at once.
	WriteDelay      time.Duration
	MaxConns        int           // connections on this node; 0 is no limit
	MaxConnsPerUser int           // 0 is no limit
	MaxAnonPerIP    int           // connections without a login from one address; 0 is no limit
	PresenceGrace   time.Duration // how long a user with no connection stays online
	// OnPresence is told every change of a user's places, in order: online
	// with places >= 1 as connections come and go (0 during the grace), and
	// online=false when the grace has run out.
	OnPresence func(userID int64, online bool, places int)
	// RawPresence has OnPresence told every change as it happens,
	// unfolded: online with 0 places when the grace begins, and repeats of
	// the places last told. A multi-node engine mirrors this node's places
	// from it and folds the sum over nodes itself.
	RawPresence bool
	// Slots, when set, counts each user's connections across nodes for
	// MaxConnsPerUser (on top of this node's own count): a connection
	// takes a slot before it attaches to a user, outside the hub's locks,
	// and gives it back after it detaches.
	Slots UserSlots
	Log   *slog.Logger
}

// UserSlots is a count of every user's connections shared by several
// nodes. Acquire takes one of user's slots unless limit (> 0) are taken
// already; Release gives one back. Neither may block for long: they run
// on a connection's login and close.
type UserSlots interface {
	Acquire(user int64, limit int) bool
	Release(user int64)
}

// Hub is the set of live connections on this node.
type Hub struct {
	opts Options
	log  *slog.Logger
	caps caps // MaxConns, MaxConnsPerUser and MaxAnonPerIP, changed by SetCaps

	presenceMu sync.Mutex

	mu    sync.RWMutex // guards the fields below
	conns map[uint64]*Conn
	users map[int64]*userEntry
	// attached is every connection attached to a user, in no order: what
	// a broadcast walks (a slice walks several times faster than the maps).
	attached []*Conn
	anonByIP map[string]int
	closing  bool
	// attachGen counts changes to users' connections (attach, detach):
	// a resolved list of users (resolved.go) is good while it is the same.
	attachGen uint64

	resolveMu sync.Mutex // guards resolved; taken under mu held for reading
	resolved  [resolvedSlots]*resolvedList

	nextID     atomic.Uint64
	slowClosed atomic.Uint64
	framesOut  atomic.Uint64
	delivered  atomic.Uint64
	pace       pacing // write batching (writer.go)
}

type userEntry struct {
	conns      []*Conn // a slice: a delivery walks it for every user it names, and users hold few connections
	told       int     // the places last reported by OnPresence
	online     bool
	graceTimer *time.Timer
	graceGen   uint64
}

// New makes a hub.
func New(opts Options) *Hub {
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = defaultQueueBytes
	}
	if opts.QueueFrames <= 0 {
		opts.QueueFrames = defaultQueueFrames
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	h := &Hub{opts: opts, log: opts.Log, conns: map[uint64]*Conn{}, users: map[int64]*userEntry{}, anonByIP: map[string]int{},
		pace: newPacing(opts.WriteDelay)}
	h.SetCaps(opts.MaxConns, opts.MaxConnsPerUser, opts.MaxAnonPerIP)
	return h
}

// Admit tells whether a new anonymous connection from ip would be accepted
// now; transports ask before they upgrade, to refuse with a status.
func (h *Hub) Admit(ip string, anonymous bool) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.admitLocked(ip, anonymous)
}

// OverAnonCap reports whether ip holds more connections without a login
// than the cap allows.
func (h *Hub) OverAnonCap(ip string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return over(&h.caps.anonPerIP, h.anonByIP[ip]-1)
}

func (h *Hub) admitLocked(ip string, anonymous bool) error {
	switch {
	case h.closing:
		return ErrShuttingDown
	case over(&h.caps.conns, len(h.conns)):
		return ErrServerFull
	case anonymous && over(&h.caps.anonPerIP, h.anonByIP[ip]):
		return ErrTooManyAnon
	}
	return nil
}

// Register adds a connection whose writes go to sink. pingEvery > 0 arms a
// keep-alive ping at that interval. It fails when a cap is reached; the
// caller then closes the socket itself.
func (h *Hub) Register(sink Sink, transport node.Method, remoteIP string, pingEvery time.Duration) (*Conn, error) {
	return h.register(sink, transport, remoteIP, pingEvery, true)
}

// RegisterWithCredential is Register for a connection that arrived with a
// sid (a cookie, ?sid=): it is about to be logged in, so the cap on
// anonymous connections per address does not refuse it.
func (h *Hub) RegisterWithCredential(sink Sink, transport node.Method, remoteIP string, pingEvery time.Duration) (*Conn, error) {
	return h.register(sink, transport, remoteIP, pingEvery, false)
}

func (h *Hub) register(sink Sink, transport node.Method, remoteIP string, pingEvery time.Duration, anonymous bool) (*Conn, error) {
	c := &Conn{hub: h, id: h.nextID.Add(1), transport: transport, remoteIP: remoteIP, sink: sink, attachedAt: -1}
	c.inline, _ = sink.(InlineSink)
	c.ponger, _ = sink.(Ponger)
	h.mu.Lock()
	if err := h.admitLocked(remoteIP, anonymous); err != nil {
		h.mu.Unlock()
		return nil, err
	}
	h.conns[c.id] = c
	h.anonByIP[remoteIP]++
	h.mu.Unlock()
	if pingEvery > 0 {
		c.schedulePing(pingEvery)
	}
	return c, nil
}

// setSession moves c from its current user (if any) to s's user (if any).
func (h *Hub) setSession(c *Conn, s *model.Session) error {
	var newUser int64
	if s != nil {
		newUser = s.UserID
	}
	if h.opts.Slots != nil {
		return h.setSessionSlotted(c, s, newUser)
	}
	_, _, err := h.setSessionLocked(c, s, newUser)
	return err
}

// setSessionSlotted is setSession with shared slots: the new user's slot
// is taken before the locks, and whatever slot ends up unused (the old
// user's, or the new one's when the attach did not happen) is given back
// after them.
func (h *Hub) setSessionSlotted(c *Conn, s *model.Session, newUser int64) error {
	var slot int64
	if newUser != 0 {
		h.mu.RLock()
		cur := c.userID
		h.mu.RUnlock()
		if cur != newUser {
			if !h.opts.Slots.Acquire(newUser, int(h.caps.perUser.Load())) {
				return ErrTooManyForUser
			}
			slot = newUser
		}
	}
	attached, detached, err := h.setSessionLocked(c, s, newUser)
	if slot != 0 && attached != slot {
		h.opts.Slots.Release(slot)
	}
	if detached != 0 {
		h.opts.Slots.Release(detached)
	}
	return err
}

// setSessionLocked moves c under the locks and says which user it
// attached to and which it detached from (0: none).
func (h *Hub) setSessionLocked(c *Conn, s *model.Session, newUser int64) (attached, detached int64, err error) {
	h.presenceMu.Lock()
	defer h.presenceMu.Unlock()
	h.mu.Lock()
	if h.conns[c.id] != c {
		h.mu.Unlock()
		return 0, 0, errConnectionGone
	}
	oldUser := c.userID
	if newUser != 0 && newUser != oldUser {
		if u := h.users[newUser]; u != nil && over(&h.caps.perUser, len(u.conns)) {
			h.mu.Unlock()
			return 0, 0, ErrTooManyForUser
		}
	}
	c.session.Store(s)
	var events []presenceEvent
	if oldUser != newUser {
		if oldUser != 0 {
			events = append(events, h.detachLocked(c, oldUser))
			detached = oldUser
		} else {
			h.anonDecLocked(c.remoteIP)
		}
		if newUser != 0 {
			events = append(events, h.attachLocked(c, newUser))
			attached = newUser
		} else {
			h.anonByIP[c.remoteIP]++
		}
	}
	h.mu.Unlock()
	h.emit(events)
	return attached, detached, nil
}

type presenceEvent struct {
	user   int64
	online bool
	places int
}

// emit reports presence changes. A user in the grace (online, no places)
// is not reported, nor is a change back to the places last reported: a
// page reload within the grace is invisible to others.
func (h *Hub) emit(events []presenceEvent) {
	for _, e := range events {
		if e.user == 0 {
			continue
		}
		if h.opts.RawPresence {
			if h.opts.OnPresence != nil {
				h.opts.OnPresence(e.user, e.online, e.places)
			}
			continue
		}
		if e.online && e.places == 0 {
			continue
		}
		h.mu.Lock()
		u := h.users[e.user]
		changed := true
		if u != nil && e.online {
			changed = u.told != e.places
			u.told = e.places
		}
		h.mu.Unlock()
		if changed && h.opts.OnPresence != nil {
			h.opts.OnPresence(e.user, e.online, e.places)
		}
	}
}

func (h *Hub) attachLocked(c *Conn, user int64) presenceEvent {
	u := h.users[user]
	if u == nil {
		u = &userEntry{}
		h.users[user] = u
	}
	u.conns = append(u.conns, c)
	c.userID = user
	c.attachedAt = len(h.attached)
	h.attached = append(h.attached, c)
	h.attachGen++
	if u.graceTimer != nil {
		u.graceTimer.Stop()
		u.graceTimer = nil
		u.graceGen++
	}
	u.online = true
	return presenceEvent{user: user, online: true, places: len(u.conns)}
}

func (h *Hub) detachLocked(c *Conn, user int64) presenceEvent {
	h.attachGen++
	c.userID = 0
	if i := c.attachedAt; i >= 0 && i < len(h.attached) && h.attached[i] == c {
		last := h.attached[len(h.attached)-1]
		h.attached[i], last.attachedAt = last, i
		h.attached[len(h.attached)-1] = nil
		h.attached = h.attached[:len(h.attached)-1]
	}
	c.attachedAt = -1
	u := h.users[user]
	if u == nil {
		return presenceEvent{}
	}
	if i := slices.Index(u.conns, c); i >= 0 {
		u.conns = slices.Delete(u.conns, i, i+1)
	}
	if len(u.conns) > 0 {
		return presenceEvent{user: user, online: true, places: len(u.conns)}
	}
	if h.opts.PresenceGrace <= 0 {
		delete(h.users, user)
		return presenceEvent{user: user, online: false}
	}
	u.graceGen++
	gen := u.graceGen
	u.graceTimer = time.AfterFunc(h.opts.PresenceGrace, func() { h.graceOver(user, gen) })
	return presenceEvent{user: user, online: true, places: 0}
}

// graceOver takes a user offline if no connection came back in the grace.
func (h *Hub) graceOver(user int64, gen uint64) {
	h.presenceMu.Lock()
	defer h.presenceMu.Unlock()
	h.mu.Lock()
	u := h.users[user]
	if h.closing || u == nil || u.graceGen != gen || len(u.conns) > 0 {
		h.mu.Unlock()
		return
	}
	delete(h.users, user)
	h.mu.Unlock()
	h.emit([]presenceEvent{{user: user, online: false}})
}

func (h *Hub) anonDecLocked(ip string) {
	if h.anonByIP[ip] <= 1 {
		delete(h.anonByIP, ip)
	} else {
		h.anonByIP[ip]--
	}
}

// remove drops a finished connection from the indexes.
func (h *Hub) remove(c *Conn) {
	c.w.countHot(&h.pace, false) // the writer has exited: its fields are ours
	if detached := h.removeLocked(c); detached != 0 && h.opts.Slots != nil {
		h.opts.Slots.Release(detached)
	}
}

// removeLocked is remove under the locks; it returns the user c was
// attached to (0: none).
func (h *Hub) removeLocked(c *Conn) int64 {
	h.presenceMu.Lock()
	defer h.presenceMu.Unlock()
	h.mu.Lock()
	if h.conns[c.id] != c {
		h.mu.Unlock()
		return 0
	}
	delete(h.conns, c.id)
	var events []presenceEvent
	detached := c.userID
	if detached != 0 {
		events = append(events, h.detachLocked(c, detached))
	} else {
		h.anonDecLocked(c.remoteIP)
	}
	h.mu.Unlock()
	h.emit(events)
	return detached
}

// Deliver delivers frame to every connection of every user in users, except
// the connection numbered except (0: none): written at once to the idle
// ones (writer.go), queued on the others. The same bytes go to every
// queue; callers must not change them afterwards. A delivery to fewer than
// sweepUsers users is written before it returns; one to more (a big
// group's message) is written as a broadcast is, by a sweep that may still
// be under way when it returns and that takes part in storm detection, so
// that a storm of them is gathered by the writers, not written frame by
// frame. Order holds either way: every connection has the frame queued or
// claimed before Deliver returns.
func (h *Hub) Deliver(users []int64, frame []byte, except uint64) {
	kind := toUsers
	if len(users) >= sweepUsers {
		kind = toAll
	}
	d := h.startDelivery(frame, kind)
	h.mu.RLock()
	if kind == toAll {
		for _, c := range h.resolveLocked(users) {
			if c.id != except {
				d.offerLocked(c)
			}
		}
	} else {
		for _, id := range users {
			if u := h.users[id]; u != nil {
				for _, c := range u.conns {
					if c.id != except {
						d.offerLocked(c)
					}
				}
			}
		}
	}
	h.mu.RUnlock()
	h.finishDelivery(&d)
}

// Broadcast delivers frame to every logged-in connection except the one
// numbered exceptConn and those of exceptUser (0: none), as Deliver does,
// except that the inline writes may still be under way when it returns.
func (h *Hub) Broadcast(frame []byte, exceptConn uint64, exceptUser int64) {
	h.broadcast(frame, exceptConn, exceptUser, toAll)
}

// BroadcastPresence enqueues a presence frame on every logged-in connection
// that watches presence. Nothing is written inline: presence is announced
// under presenceMu, which must not wait for a sweep of writes.
func (h *Hub) BroadcastPresence(frame []byte) {
	h.broadcast(frame, 0, 0, queuedOnly)
}

func (h *Hub) broadcast(frame []byte, exceptConn uint64, exceptUser int64, kind deliveryKind) {
	watchersOnly := kind == queuedOnly
	d := h.startDelivery(frame, kind)
	h.mu.RLock()
	for _, c := range h.attached {
		if c.id == exceptConn || (exceptUser != 0 && c.userID == exceptUser) || (watchersOnly && c.unwatched.Load()) {
			continue
		}
		d.offerLocked(c)
	}
	h.mu.RUnlock()
	h.finishDelivery(&d)
}

// UserConns returns the user's live connections.
func (h *Hub) UserConns(user int64) []*Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	u := h.users[user]
	if u == nil {
		return nil
	}
	return slices.Clone(u.conns)
}

// Kick sends frame (if any) to every connection of user, then closes them
// with code and reason.
func (h *Hub) Kick(user int64, frame []byte, code node.CloseCode, reason string) int {
	conns := h.UserConns(user)
	for _, c := range conns {
		if frame != nil {
			c.Enqueue(frame)
		}
		c.Close(code, reason)
	}
	return len(conns)
}

// EndSession logs out every connection holding the session sid.
func (h *Hub) EndSession(user int64, sid string) {
	for _, c := range h.UserConns(user) {
		if s := c.Session(); s != nil && s.SID == sid {
			_ = c.SetSession(nil)
		}
	}
}

// Online is one online user and their places.
type Online struct {
	UserID int64
	Places int
}

// Online lists the users online now.
func (h *Hub) Online() []Online {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Online, 0, len(h.users))
	for id, u := range h.users {
		if u.online {
			out = append(out, Online{UserID: id, Places: len(u.conns)})
		}
	}
	return out
}

// Places is how many connections user holds now, and whether they count as
// online.
func (h *Hub) Places(user int64) (int, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	u := h.users[user]
	if u == nil {
		return 0, false
	}
	return len(u.conns), u.online
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Connections int
	Online      int
	SlowClosed  uint64
	FramesOut   uint64
	Delivered   uint64
}

// Stats returns the counters now.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return Stats{Connections: len(h.conns), Online: len(h.users), SlowClosed: h.slowClosed.Load(),
		FramesOut: h.framesOut.Load(), Delivered: h.delivered.Load()}
}

// Shutdown refuses new connections and closes every live one with code
// (1001 on stop), waiting until they are gone or ctx ends; whatever is left
// then is aborted.
func (h *Hub) Shutdown(ctx context.Context, code node.CloseCode, reason string) {
	h.mu.Lock()
	h.closing = true
	conns := make([]*Conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Close(code, reason)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		h.mu.RLock()
		left := len(h.conns)
		h.mu.RUnlock()
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			for _, c := range conns {
				c.Abort()
			}
			return
		case <-tick.C:
		}
	}
}
