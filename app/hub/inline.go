package hub

import (
	"runtime"
	"sync"
	"time"
)

// InlineSink is a Sink that can also try a write without blocking. The hub
// uses it to write a push straight from the goroutine that delivers it
// when the connection is idle: no writer running, nothing queued, no ping
// due, not hot. A lone push then costs one syscall, with no writer
// goroutine to start, grow a stack for and schedule, which is most of what
// a trickle of messages to many readers costs. Like the Sink's other
// methods, TryWrite is called only by the connection's writer: the
// delivering goroutine is the writer for the length of the call.
type InlineSink interface {
	Sink
	// TryWrite writes frame if the socket takes it now, and never blocks.
	// With taken false it wrote nothing and the frame is still the
	// caller's. With taken true the frame is the sink's: written whole
	// (more false), or in part with the rest kept to go out first, before
	// anything else, at the next WriteFrames (more true).
	TryWrite(frame []byte) (taken, more bool, err error)
}

// inlineShardMin is the fewest idle connections one delivery writes to
// from more than one goroutine (GOMAXPROCS of them).
const inlineShardMin = 512

// idleLocked reports whether c can be written to inline now: it writes
// without blocking, and has no writer running, nothing queued, no ping due,
// and has not lately been sent frames fast. The caller holds c.mu.
func (c *Conn) idleLocked(now time.Time) bool {
	// With no writer running, the writer's own fields (fast reads them)
	// were last written before it cleared writing under mu.
	return c.inline != nil && !c.writing && !c.finished && !c.pingDue && len(c.queue) == 0 && !c.fast(now)
}

// fast is hot's rate test without its recency test: frames have come fast
// enough lately for a writer's delay to gather minDelayedBatch of them.
// Such a connection is left to its writer even when its last write is a
// while ago, as it is during a big broadcast's inline sweep, which can take
// longer than the write delay: writing inline frame by frame would undo
// the batching that a storm needs.
func (c *Conn) fast(now time.Time) bool {
	if c.hub.opts.WriteDelay <= 0 {
		return false
	}
	window := rateWindow * c.hub.opts.WriteDelay
	enough := minDelayedBatch * rateWindow
	switch since := now.Sub(c.windowStart); {
	case since >= 2*window: // nothing lately: noteWrite would clear both windows
		return false
	case since >= window: // the current window is over: it is the last one now
		return c.windowFrames >= enough
	}
	return c.windowFrames >= enough || c.lastWindowFrames >= enough
}

// writeInline writes frame to c, which the caller has claimed, and then
// hands c to a writer goroutine if there is more to do (frames queued
// meanwhile, the rest of a partial write, a ping, a close), or releases
// it.
func (c *Conn) writeInline(frame []byte) {
	c.noteWrite(time.Now(), 1)
	taken, more, err := c.inline.TryWrite(frame)
	if taken {
		c.hub.framesOut.Add(1)
	}
	c.mu.Lock()
	switch {
	case err != nil && !c.closing:
		c.startCloseLocked(closeAbnormalNoSend, "", false)
	case err != nil:
		c.graceful = false
	case !taken: // ahead of anything queued while it was tried
		c.queue = append(c.queue, nil)
		copy(c.queue[1:], c.queue)
		c.queue[0] = frame
		c.queuedBytes += len(frame)
	}
	c.sinkPending = more
	if c.closing || c.sinkPending || c.pingDue || len(c.queue) > 0 {
		c.mu.Unlock()
		go c.writeLoop() // the writer from here on; writer.Add was done by the claim
		return
	}
	c.writing = false
	c.mu.Unlock()
	c.writer.Done()
}

// stormHold is how many rate windows (rateWindow write delays) deliveries
// stay queued after a storm was seen.
const stormHold = 2

// startSweep reports whether a broadcast may write to idle connections
// inline; if so it counts as under way until the caller ends it (sweeps).
// A broadcast that comes while another is still sweeping shows messages
// coming faster than they can be written one by one: for the next
// stormHold rate windows every delivery is queued, so that the writers
// gather frames. Otherwise slow sweeps would hold the rate each connection
// sees below the writers' threshold (fast), and keep every delivery a
// syscall of its own.
func (h *Hub) startSweep(now time.Time) bool {
	if h.storm(now) {
		return false
	}
	if h.sweeps.Add(1) > 1 {
		h.sweeps.Add(-1)
		hold := stormHold * rateWindow * h.opts.WriteDelay
		h.stormUntil.Store(now.Add(hold).UnixNano())
		return false
	}
	return true
}

// storm reports whether deliveries are queued only now (startSweep).
func (h *Hub) storm(now time.Time) bool { return now.UnixNano() < h.stormUntil.Load() }

// idleLists hold the connections one delivery has claimed.
var idleLists = sync.Pool{New: func() any { l := make([]*Conn, 0, 64); return &l }}

// writeIdle writes frame to the claimed connections, from GOMAXPROCS
// goroutines when there are many, and returns when every write is done.
func writeIdle(conns []*Conn, frame []byte) {
	shards := runtime.GOMAXPROCS(0)
	if len(conns) < inlineShardMin || shards == 1 {
		for _, c := range conns {
			c.writeInline(frame)
		}
		return
	}
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
