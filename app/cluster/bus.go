package cluster

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/hub"
	"dce/app/node"

	"github.com/go-json-experiment/json"
)

// busQueue bounds the pushes waiting to be published: an outage drops
// what is beyond it (counted) rather than hold memory or a sender.
const busQueue = 8192

// Bus is the service's Bus over Redis pub/sub: a push is delivered to
// this node's connections at once and published for the other nodes,
// which deliver it to theirs. One goroutine publishes, in order, so the
// pushes of one node reach each other node in the order they were made.
// Presence frames stay on this node: every node folds the summed presence
// itself (Events.Presence) and pushes it to its own watchers.
type Bus struct {
	c       *Cluster
	q       chan []byte
	dropped atomic.Uint64
	nextID  atomic.Uint64

	wmu     sync.Mutex
	waiters map[string]*waiter
}

// waiter is a session end or kick waiting for the other nodes.
type waiter struct {
	need map[string]bool
	n    int // connections the others ended
	done chan struct{}
}

func newBus(c *Cluster) *Bus {
	return &Bus{c: c, q: make(chan []byte, busQueue), waiters: map[string]*waiter{}}
}

// Bus returns the node's Bus (service.Bus).
func (c *Cluster) Bus() *Bus { return c.bus }

// Deliver sends frame to every connection of users on every node, except
// the connection numbered exceptConn on this node.
func (b *Bus) Deliver(users []int64, frame []byte, exceptConn uint64) {
	b.c.hub.Deliver(users, frame, exceptConn)
	if len(users) == 0 {
		return
	}
	m := make([]byte, 0, 2+len(b.c.opts.Node)+len(users)*8+len(frame))
	m = append(m, 'D')
	m = append(m, b.c.opts.Node...)
	m = append(m, '|')
	for i, u := range users {
		if i > 0 {
			m = append(m, ',')
		}
		m = strconv.AppendInt(m, u, 10)
	}
	m = append(m, '|')
	b.publish(append(m, frame...))
}

// Broadcast sends frame to every logged-in connection on every node,
// except exceptConn on this node and exceptUser's everywhere.
func (b *Bus) Broadcast(frame []byte, exceptConn uint64, exceptUser int64) {
	b.c.hub.Broadcast(frame, exceptConn, exceptUser)
	m := make([]byte, 0, 24+len(b.c.opts.Node)+len(frame))
	m = append(m, 'B')
	m = append(m, b.c.opts.Node...)
	m = append(m, '|')
	m = strconv.AppendInt(m, exceptUser, 10)
	m = append(m, '|')
	b.publish(append(m, frame...))
}

// BroadcastPresence sends a presence frame to this node's watchers: each
// node announces the summed presence to its own (see Bus).
func (b *Bus) BroadcastPresence(frame []byte) { b.c.hub.BroadcastPresence(frame) }

// Dropped is how many publications were lost to an outage or a full queue.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

func (b *Bus) publish(m []byte) {
	select {
	case b.q <- m:
	default:
		if b.dropped.Add(1)%1000 == 1 {
			b.c.log.Warn("cluster: the queue of pushes for other nodes is full; dropping", "dropped", b.dropped.Load())
		}
	}
}

// publishLoop publishes the queue in order, in pipelined batches.
func (b *Bus) publishLoop() {
	c := b.c
	batch := make([][]byte, 0, 256)
	for {
		select {
		case <-c.stop:
			return
		case m := <-b.q:
			batch = append(batch[:0], m)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case m := <-b.q:
				batch = append(batch, m)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pipe := c.rdb.Pipeline()
		for _, m := range batch {
			ch := c.keys.bus
			if m[0] == 'A' {
				ch, m = c.keys.ack, m[1:]
			}
			pipe.Publish(ctx, ch, m)
		}
		_, err := pipe.Exec(ctx)
		cancel()
		if err != nil {
			b.dropped.Add(uint64(len(batch)))
			c.failed("publish", err)
			continue
		}
		c.ok()
	}
}

// request is a session end ('E'), a kick ('K') or an account change ('U')
// for the other nodes.
type request struct {
	Kind   string         `json:"k"`
	Node   string         `json:"n"`
	ID     string         `json:"id"`
	User   int64          `json:"u"`
	SID    string         `json:"s,omitempty"`
	Code   node.CloseCode `json:"c,omitempty"`
	Reason string         `json:"r,omitempty"`
	Frame  []byte         `json:"f,omitempty"`
}

// received handles another node's publication on the bus channel.
func (b *Bus) received(payload string) {
	c := b.c
	if payload == "" {
		return
	}
	switch payload[0] {
	case 'D', 'B':
		rest := payload[1:]
		from, rest, ok1 := strings.Cut(rest, "|")
		arg, frame, ok2 := strings.Cut(rest, "|")
		if !ok1 || !ok2 || from == c.opts.Node {
			return
		}
		if payload[0] == 'B' {
			except, err := strconv.ParseInt(arg, 10, 64)
			if err == nil {
				c.hub.Broadcast([]byte(frame), 0, except)
			}
			return
		}
		users := make([]int64, 0, strings.Count(arg, ",")+1)
		for _, s := range strings.Split(arg, ",") {
			if u, err := strconv.ParseInt(s, 10, 64); err == nil {
				users = append(users, u)
			}
		}
		c.hub.Deliver(users, []byte(frame), 0)
	case 'J':
		var r request
		if err := json.Unmarshal([]byte(payload[1:]), &r); err != nil || r.Node == c.opts.Node {
			return
		}
		n := 0
		switch r.Kind {
		case "E":
			n = endSession(c.hub, r.User, r.SID)
		case "K":
			n = c.hub.Kick(r.User, r.Frame, r.Code, r.Reason)
		case "U":
			if f := c.events.AccountChanged; f != nil {
				f(r.User)
			}
		}
		b.publish([]byte("A" + c.opts.Node + "|" + r.ID + "|" + strconv.Itoa(n)))
	}
}

// endSession is hub.EndSession, counting the connections it logged out.
func endSession(h *hub.Hub, user int64, sid string) int {
	n := 0
	for _, conn := range h.UserConns(user) {
		if s := conn.Session(); s != nil && s.SID == sid {
			n++
		}
	}
	h.EndSession(user, sid)
	return n
}

// acked handles an acknowledgement "node|id|count".
func (b *Bus) acked(payload string) {
	parts := strings.Split(payload, "|")
	if len(parts) != 3 {
		return
	}
	n, _ := strconv.Atoi(parts[2])
	b.wmu.Lock()
	defer b.wmu.Unlock()
	w := b.waiters[parts[1]]
	if w == nil || !w.need[parts[0]] {
		return
	}
	delete(w.need, parts[0])
	w.n += n
	if len(w.need) == 0 {
		close(w.done)
		delete(b.waiters, parts[1])
	}
}

// ask publishes r to the other nodes and waits, at most AckWait, until
// every live node has acknowledged it; it returns the connections they
// ended and whether all answered.
func (b *Bus) ask(r request) (int, bool) {
	c := b.c
	others := c.pres.others()
	r.Node = c.opts.Node
	r.ID = c.opts.Node + "-" + strconv.FormatUint(b.nextID.Add(1), 10)
	enc, err := json.Marshal(r)
	if err != nil {
		return 0, false
	}
	w := &waiter{need: map[string]bool{}, done: make(chan struct{})}
	for _, o := range others {
		w.need[o] = true
	}
	if len(others) > 0 {
		b.wmu.Lock()
		b.waiters[r.ID] = w
		b.wmu.Unlock()
	}
	b.publish(append([]byte{'J'}, enc...))
	if len(others) == 0 {
		return 0, true
	}
	t := time.NewTimer(c.opts.AckWait)
	defer t.Stop()
	select {
	case <-w.done:
		return w.n, true
	case <-t.C:
	case <-c.stop:
	}
	b.wmu.Lock()
	delete(b.waiters, r.ID)
	missing := make([]string, 0, len(w.need))
	for n := range w.need {
		missing = append(missing, n)
	}
	got := w.n
	b.wmu.Unlock()
	c.log.Warn("cluster: nodes did not acknowledge in time", "kind", r.Kind, "user", r.User, "missing", missing)
	return got, false
}

// Hub is the service's view of the live connections over every node:
// presence summed over the live nodes, session ends and kicks that reach
// every node before they return, this node's counters.
type Hub struct{ c *Cluster }

// Hub returns the node's Hub (service.Hub).
func (c *Cluster) Hub() *Hub { return &Hub{c} }

// Online lists the users online on any live node, with their places
// summed over the nodes.
func (h *Hub) Online() []hub.Online { return h.c.pres.online() }

// Places is how many connections user holds on the live nodes, and
// whether they count as online.
func (h *Hub) Places(user int64) (int, bool) { return h.c.pres.placesOf(user) }

// EndSession logs out every connection holding the session sid, on every
// node: here at once, then on the others, waiting (at most AckWait) for
// every live node's acknowledgement.
func (h *Hub) EndSession(user int64, sid string) {
	h.c.hub.EndSession(user, sid)
	h.c.bus.ask(request{Kind: "E", User: user, SID: sid})
}

// Kick sends frame (if any) to every connection of user on every node,
// then closes them with code and reason, waiting as EndSession does. It
// returns the connections closed (those of nodes that answered in time).
func (h *Hub) Kick(user int64, frame []byte, code node.CloseCode, reason string) int {
	n := h.c.hub.Kick(user, frame, code, reason)
	m, _ := h.c.bus.ask(request{Kind: "K", User: user, Code: code, Reason: reason, Frame: bytes.Clone(frame)})
	return n + m
}

// AccountChanged tells every other live node that user's account changed,
// so that none goes on with a cached copy, and waits as EndSession does.
func (h *Hub) AccountChanged(user int64) { h.c.bus.ask(request{Kind: "U", User: user}) }

// Stats is this node's counters, with Online counted over every node.
func (h *Hub) Stats() hub.Stats {
	st := h.c.hub.Stats()
	h.c.pres.mu.Lock()
	st.Online = len(h.c.pres.totals)
	h.c.pres.mu.Unlock()
	return st
}
