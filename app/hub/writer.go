package hub

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/node"
)

// This file is the writer role: the only code that writes to a
// connection's socket, and everything that decides when it writes. A
// connection's writer role is held by one goroutine at a time, claimed
// under Conn.mu (Conn.writing): either the connection's writer goroutine
// (writeLoop), started when there is something to write and gone when
// there is not, or a delivering goroutine that found the connection idle
// and writes one frame inline (writeInline), without blocking, before it
// hands the role on or gives it back. Whoever holds it may use the Sink
// and the writerState; nobody else does.
//
// Batching. A connection whose frames come slowly is written at once: a
// lone push costs one write and no delay. One sent many frames lately
// (hot) waits a write delay before it takes its queue, so that under a
// broadcast storm one write carries many frames: every write costs a
// syscall of several microseconds whatever it carries, so what bounds a
// storm's CPU is writes per second, hot connections over the delay. The
// delay therefore grows with the number of hot connections: WriteDelay for
// each delayScaleConns of them (never less than WriteDelay), up to
// maxDelayScale times WriteDelay. A reply, a pong, a close or a half-full
// queue ends the wait.
//
// The rate test (busy): the writer counts the frames it wrote over windows
// of rateWindow write delays; a connection is busy when its current or
// last window held at least minDelayedBatch frames per delay. A chat
// room's steady trickle (tens of messages a second) never is; a broadcast
// storm is. Hot is busy and written less than a delay ago.
const (
	rateWindow      = 4
	minDelayedBatch = 2
	delayScaleConns = 1000
	maxDelayScale   = 10
	// stormHold is how many rate windows deliveries stay queued after a
	// storm was seen (startSweep).
	stormHold = 2
	// inlineShardMin is the fewest idle connections one delivery writes
	// to from more than one goroutine (GOMAXPROCS of them).
	inlineShardMin = 512
	// sweepUsers is the fewest users a Deliver names for it to be written
	// as a broadcast's sweep (Hub.Deliver).
	sweepUsers = 64
)

// Sink is a transport's write side. Only the holder of the connection's
// writer role calls its methods, except Abort, which may come from any
// goroutine.
type Sink interface {
	// WriteFrames writes the frames in order under the transport's write
	// deadline; a stream transport may send them with one syscall. With no
	// frames it writes what an InlineSink kept from a partial write.
	WriteFrames(frames [][]byte) error
	// Ping sends a keep-alive probe, if the transport has one.
	Ping() error
	// Close sends the close code and reason where the transport has them
	// (code 0: none), then closes the socket. It is called once, last.
	Close(code node.CloseCode, reason string)
	// Abort makes a blocked write return at once.
	Abort()
}

// InlineSink is a Sink that can also try a write without blocking. The hub
// uses it to write a push straight from the goroutine that delivers it
// when the connection is idle: no writer running, nothing queued, no ping
// or pong due, not busy. A lone push then costs one syscall, with no
// writer goroutine to start, grow a stack for and schedule, which is most
// of what a trickle of messages to many readers costs.
type InlineSink interface {
	Sink
	// TryWrite writes frame if the socket takes it now, and never blocks.
	// With taken false it wrote nothing and the frame is still the
	// caller's. With taken true the frame is the sink's: written whole
	// (more false), or in part with the rest kept to go out first, before
	// anything else, at the next WriteFrames (more true).
	TryWrite(frame []byte) (taken, more bool, err error)
}

// Ponger is implemented by a Sink whose transport answers the peer's pings
// (WebSocket); the hub calls it from the writer role only.
type Ponger interface {
	// Pong writes a pong with payload (at most 125 bytes) under the write
	// deadline.
	Pong(payload string) error
}

// pacing is the hub's share of write batching: what every writer reads to
// decide how long to wait, and whether deliveries may be written inline.
type pacing struct {
	delay      time.Duration // Options.WriteDelay; 0: every write at once
	window     time.Duration // rateWindow write delays
	hot        atomic.Int64  // connections whose writer last found them hot
	sweeps     atomic.Int32  // broadcasts writing to idle connections inline now
	stormUntil atomic.Int64  // Unix ns: until then deliveries are queued, never inline
}

func newPacing(delay time.Duration) pacing {
	return pacing{delay: delay, window: rateWindow * delay}
}

// writeDelay is how long a hot connection's writer waits now: the delay
// for every delayScaleConns hot connections, between 1 and maxDelayScale
// times the delay.
func (p *pacing) writeDelay() time.Duration {
	scale := min(max(p.hot.Load(), delayScaleConns), maxDelayScale*delayScaleConns)
	return p.delay * time.Duration(scale) / delayScaleConns
}

// startSweep reports whether a broadcast may write to idle connections
// inline; if so it counts as under way until endSweep. A broadcast that
// comes while another is still sweeping shows messages coming faster than
// they can be written one by one: for the next stormHold rate windows
// every delivery is queued, so that the writers gather frames. Otherwise
// slow sweeps would hold the rate each connection sees below the writers'
// threshold (busy), and keep every delivery a syscall of its own.
func (p *pacing) startSweep(now time.Time) bool {
	if p.storm(now) {
		return false
	}
	if p.sweeps.Add(1) > 1 {
		p.sweeps.Add(-1)
		p.stormUntil.Store(now.Add(stormHold * p.window).UnixNano())
		return false
	}
	return true
}

func (p *pacing) endSweep() { p.sweeps.Add(-1) }

// storm reports whether deliveries are queued only now (startSweep).
func (p *pacing) storm(now time.Time) bool { return now.UnixNano() < p.stormUntil.Load() }

// writerState is the writer role's own part of a Conn: the rate counts and
// the delay's timer. Only the holder of the role touches it (and the hub
// once the writer has exited for good).
type writerState struct {
	lastWrite        time.Time // when it last wrote
	windowStart      time.Time
	windowFrames     int // frames written in the current rate window
	lastWindowFrames int // and in the one before
	countedHot       bool
	delayTimer       *time.Timer // made on the first delay
}

// busy is the rate test: frames have come fast enough lately for a delay
// to gather minDelayedBatch of them. It reads the windows as noteWrite
// would roll them at now.
func (w *writerState) busy(p *pacing, now time.Time) bool {
	if p.delay <= 0 {
		return false
	}
	enough := minDelayedBatch * rateWindow
	switch since := now.Sub(w.windowStart); {
	case since >= 2*p.window: // nothing lately: noteWrite would clear both windows
		return false
	case since >= p.window: // the current window is over: it is the last one now
		return w.windowFrames >= enough
	}
	return w.windowFrames >= enough || w.lastWindowFrames >= enough
}

// hot reports whether the writer should wait for more frames before it
// writes: busy, and it wrote less than a write delay ago, also when frames
// came in during its last write.
func (w *writerState) hot(p *pacing, now time.Time) bool {
	return now.Sub(w.lastWrite) < p.delay && w.busy(p, now)
}

// noteWrite counts a write of frames at now.
func (w *writerState) noteWrite(p *pacing, now time.Time, frames int) {
	if since := now.Sub(w.windowStart); since >= p.window {
		w.lastWindowFrames = w.windowFrames
		if since >= 2*p.window { // a quiet window went by in between
			w.lastWindowFrames = 0
		}
		w.windowStart, w.windowFrames = now, 0
	}
	w.windowFrames += frames
	w.lastWrite = now
}

// countHot keeps pacing.hot: hot is what the running writer last found
// (false once it exits).
func (w *writerState) countHot(p *pacing, hot bool) {
	if hot != w.countedHot {
		w.countedHot = hot
		if hot {
			p.hot.Add(1)
		} else {
			p.hot.Add(-1)
		}
	}
}

// wakeWriterLocked starts the writer goroutine if nobody holds the role.
func (c *Conn) wakeWriterLocked() {
	if c.writing || c.finished {
		return
	}
	c.writing = true
	c.writer.Add(1)
	go c.writeLoop()
}

// claimLocked takes the writer role for an inline write if c is idle now:
// it writes without blocking, and has no writer running, nothing queued,
// no ping or pong due, and has not lately been sent frames fast. A busy
// connection is left to its writer even when its last write is a while
// ago, as it is during a big broadcast's inline sweep, which can take
// longer than the write delay: writing inline frame by frame would undo
// the batching a storm needs. The caller holds c.mu, and calls
// writeInline when it reports true.
func (c *Conn) claimLocked(now time.Time) bool {
	// With no writer running, the writer's own fields (busy reads them)
	// were last written before it cleared writing under mu.
	if c.inline == nil || c.writing || c.finished || c.pingDue || c.pongDue || len(c.queue) > 0 || c.w.busy(&c.hub.pace, now) {
		return false
	}
	c.writing = true
	c.writer.Add(1)
	return true
}

// cutDelayLocked ends the writer's delay, if it is in one.
func (c *Conn) cutDelayLocked() {
	if c.delaying {
		c.delaying = false
		c.delayWake <- struct{}{} // buffered, and only sent while delaying: never blocks
	}
}

// delay is the writer's wait for more frames: d, or until a reply or a
// pong comes, Enqueue finds the queue half full, or the connection starts
// to close.
func (c *Conn) delay(d time.Duration) {
	c.mu.Lock()
	if c.urgent || c.closing {
		c.mu.Unlock()
		return
	}
	if c.delayWake == nil {
		c.delayWake = make(chan struct{}, 1)
		c.w.delayTimer = time.NewTimer(d)
	} else {
		c.w.delayTimer.Reset(d)
	}
	c.delaying = true
	c.mu.Unlock()
	select {
	case <-c.w.delayTimer.C:
	case <-c.delayWake:
		c.w.delayTimer.Stop()
	}
	c.mu.Lock()
	c.delaying = false
	select { // a wake sent just as the timer fired
	case <-c.delayWake:
	default:
	}
	c.mu.Unlock()
}

// writeLoop is the connection's writer goroutine: it drains the queue in
// batches, sends a due pong and ping, and performs the close; it exits,
// giving the role back, when there is nothing left to do.
func (c *Conn) writeLoop() {
	defer c.writer.Done()
	p := &c.hub.pace
	for {
		// A hot connection waits for more frames so that one write
		// carries them all; any other writes at once, so a lone message
		// or a steady trickle costs no delay.
		hot := c.w.hot(p, time.Now())
		c.w.countHot(p, hot)
		if hot {
			c.delay(p.writeDelay())
		}
		c.mu.Lock()
		if c.closing && (!c.graceful || len(c.queue) == 0) {
			code, reason := c.closeCode, c.closeReason
			c.queue, c.queuedBytes, c.writing = nil, 0, false
			c.pongDue, c.pong = false, ""
			c.finished = true
			c.mu.Unlock()
			c.sink.Close(code, reason)
			return
		}
		if len(c.queue) == 0 && !c.pingDue && !c.pongDue && !c.sinkPending {
			c.w.countHot(p, false) // while still the writer: pacing.hot counts busy writers only
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.queuedBytes = 0
		c.urgent = false
		ping, flush := c.pingDue, c.sinkPending
		pong, pongDue := c.pong, c.pongDue
		c.pingDue, c.pongDue, c.pong, c.sinkPending = false, false, "", false
		c.mu.Unlock()

		// The pong goes first: its ping came before whatever reply is
		// queued now (a ping between a message's fragments is answered
		// before the message).
		var err error
		if pongDue {
			err = c.ponger.Pong(pong)
		}
		if err == nil && (len(batch) > 0 || flush) {
			c.w.noteWrite(p, time.Now(), len(batch))
			err = c.sink.WriteFrames(batch)
			c.hub.framesOut.Add(uint64(len(batch)))
		}
		if err == nil && ping {
			err = c.sink.Ping()
		}
		clear(batch)
		c.mu.Lock()
		if c.spare == nil {
			c.spare = batch
		}
		c.failedLocked(err)
		c.mu.Unlock()
	}
}

// failedLocked closes c after a failed write, if it failed. A write that
// ran out its deadline on a connection nobody was closing met a peer that
// took no data for the whole write timeout: as slow as one whose queue
// overflows, and counted so.
func (c *Conn) failedLocked(err error) {
	switch {
	case err == nil:
	case c.closing:
		c.graceful = false
	default:
		timedOut := isTimeout(err)
		if timedOut {
			c.hub.slowClosed.Add(1) // counted before the close can complete
		}
		c.startCloseLocked(closeAbnormalNoSend, "", false)
		if timedOut {
			c.hub.log.Warn("slow connection closed", "conn", c.id, "transport", c.transport.String(), "reason", "write timeout")
		}
	}
}

// isTimeout reports whether err is a deadline running out (the WebSocket
// library hides the net error behind its own type, which keeps Timeout).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// writeInline writes frame to c, whose writer role the caller claimed
// (claimLocked), and then hands the role to a writer goroutine if there
// is more to do (frames queued meanwhile, the rest of a partial write, a
// ping or pong, a close), or gives it back.
func (c *Conn) writeInline(frame []byte) {
	c.w.noteWrite(&c.hub.pace, time.Now(), 1)
	taken, more, err := c.inline.TryWrite(frame)
	if taken {
		c.hub.framesOut.Add(1)
	}
	c.mu.Lock()
	c.failedLocked(err)
	if err == nil && !taken { // ahead of anything queued while it was tried
		c.queue = append(c.queue, nil)
		copy(c.queue[1:], c.queue)
		c.queue[0] = frame
		c.queuedBytes += len(frame)
	}
	c.sinkPending = more
	if c.closing || c.sinkPending || c.pingDue || c.pongDue || len(c.queue) > 0 {
		c.mu.Unlock()
		go c.writeLoop() // the writer from here on; writer.Add was done by the claim
		return
	}
	c.writing = false
	c.mu.Unlock()
	c.writer.Done()
}

// deliveryKind is how a delivery may write.
type deliveryKind int

const (
	// toUsers (Deliver): inline to idle connections unless in a storm,
	// written before the delivery returns.
	toUsers deliveryKind = iota
	// toAll (Broadcast, and a Deliver to sweepUsers or more): an inline
	// sweep unless another is under way or a storm is on (startSweep),
	// written in a goroutine of its own.
	toAll
	// queuedOnly (BroadcastPresence): never inline.
	queuedOnly
)

// delivery is one frame on its way to many connections. Under Hub.mu,
// held for reading, each connection is offered the frame, which queues it
// or claims an idle one for an inline write; once Hub.mu is released,
// finishDelivery writes to the claimed ones.
type delivery struct {
	frame []byte
	now   time.Time // zero: queued only, nothing claimed
	sweep bool      // a broadcast's inline sweep, counted in pacing.sweeps
	idle  *[]*Conn  // the claimed connections; nil when queued only
	n     int       // the connections the frame will reach
}

func (h *Hub) startDelivery(frame []byte, kind deliveryKind) delivery {
	d := delivery{frame: frame}
	now := time.Now()
	switch kind {
	case toUsers:
		if !h.pace.storm(now) {
			d.now = now
		}
	case toAll:
		if h.pace.startSweep(now) {
			d.now, d.sweep = now, true
		}
	}
	if !d.now.IsZero() {
		d.idle = idleLists.Get().(*[]*Conn)
	}
	return d
}

// offerLocked queues the frame on c, or claims c for an inline write. The
// caller holds Hub.mu for reading, so it must not write: finishDelivery
// does, after.
func (d *delivery) offerLocked(c *Conn) {
	ok, claimed := c.push(d.frame, false, d.now) // a zero now: queued only
	if claimed {
		*d.idle = append(*d.idle, c)
	}
	if ok {
		d.n++
	}
}

// finishDelivery writes the frame to the connections d claimed. A sweep
// goes on in a goroutine of its own: the broadcaster (a sender's reply
// waits for it) need not wait for thousands of writes. Order holds all the
// same: every connection has this frame queued or claimed now, so a later
// delivery is queued behind it.
func (h *Hub) finishDelivery(d *delivery) {
	h.delivered.Add(uint64(d.n))
	switch {
	case d.idle == nil:
	case d.sweep && len(*d.idle) > 0:
		idle, frame := d.idle, d.frame
		go func() {
			writeClaimed(idle, frame)
			h.pace.endSweep()
		}()
		return
	default:
		writeClaimed(d.idle, d.frame)
	}
	if d.sweep {
		h.pace.endSweep()
	}
}

// idleLists hold the connections one delivery has claimed.
var idleLists = sync.Pool{New: func() any { l := make([]*Conn, 0, 64); return &l }}

// writeClaimed writes frame to the connections a delivery claimed, from
// GOMAXPROCS goroutines when there are many, and returns the list to its
// pool once every write is done.
func writeClaimed(idle *[]*Conn, frame []byte) {
	conns := *idle
	shards := runtime.GOMAXPROCS(0)
	if len(conns) < inlineShardMin || shards == 1 {
		for _, c := range conns {
			c.writeInline(frame)
		}
	} else {
		per := (len(conns) + shards - 1) / shards
		var wg sync.WaitGroup
		for i := per; i < len(conns); i += per {
			part := conns[i:min(i+per, len(conns))]
			wg.Go(func() {
				for _, c := range part {
					c.writeInline(frame)
				}
			})
		}
		for _, c := range conns[:per] {
			c.writeInline(frame)
		}
		wg.Wait()
	}
	clear(conns)
	*idle = conns[:0]
	if cap(conns) <= 1<<16 {
		idleLists.Put(idle)
	}
}
