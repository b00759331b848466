package hub

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/node"
	"dce/common/model"
)

// Close codes the hub uses (PROTOCOL.md section 1). Stream transports without
// close codes just close.
const (
	CloseGoingAway      = 1001
	CloseInvalidUTF8    = 1007
	ClosePolicy         = 1008
	CloseTooLarge       = 1009
	CloseInternal       = 1011
	CloseKicked         = 4001
	CloseTooSlow        = 4008
	CloseBanned         = 4503
	CloseOverConnLimit  = 4509
	closeAbnormalNoSend = 0 // the socket is gone: no close frame
)

// Sink is a transport's write side. The hub calls WriteFrames, Ping and
// Close only from the connection's writer goroutine; Abort may come from
// any goroutine.
type Sink interface {
	// WriteFrames writes the frames in order under the transport's write
	// deadline; a stream transport may send them with one syscall.
	WriteFrames(frames [][]byte) error
	// Ping sends a keep-alive probe, if the transport has one.
	Ping() error
	// Close sends the close code and reason where the transport has them
	// (code 0: none), then closes the socket. It is called once.
	Close(code int, reason string)
	// Abort makes a blocked write return at once.
	Abort()
}

// Conn is one live connection. It implements node.Peer.
type Conn struct {
	hub       *Hub
	id        uint64
	transport node.Method
	remoteIP  string
	sink      Sink
	inline    InlineSink // sink, when it can write without blocking; else nil

	session atomic.Pointer[model.Session]
	// unwatched: the client asked not to receive im/presence events.
	unwatched atomic.Bool

	mu          sync.Mutex // guards the fields below
	queue       [][]byte
	spare       [][]byte // the last batch's slice, reused
	queuedBytes int
	urgent      bool // a reply is queued: the writer does not delay
	writing     bool // a writer goroutine is running, or an inline write (inline.go)
	sinkPending bool // the sink kept part of an inline write: the writer must call WriteFrames
	pingDue     bool
	closing     bool
	graceful    bool // flush the queue before closing
	closeCode   int
	closeReason string
	userID      int64 // the user this conn is attached to in the index, or 0
	attachedAt  int   // its place in Hub.attached, or -1 (guarded by Hub.mu)
	pingTimer   *time.Timer
	// The writer's own, for the write delay (hot): when it last wrote, and
	// how many frames it wrote in the current and the last rate window.
	lastWrite        time.Time
	windowStart      time.Time
	windowFrames     int
	lastWindowFrames int
	countedHot       bool          // counted in Hub.hotConns
	delaying         bool          // the writer is in its write delay
	delayWake        chan struct{} // cuts the delay short; made on the first delay
	delayTimer       *time.Timer   // the delay's timer; made on the first delay
	writer           sync.WaitGroup
	finished         bool

	// Deferred requests (later.go); lmu guards the four fields after it.
	lmu          sync.Mutex
	later        []func() []byte
	laterPending int // queued or running
	laterRunning bool
	laterRoom    chan struct{} // closed when a deferred request finishes; nil if nobody waits
	laterDone    sync.WaitGroup
}

var _ node.Peer = (*Conn)(nil)

// WatchPresence says whether the connection receives presence events
// (BroadcastPresence); every connection does unless its client opts out.
func (c *Conn) WatchPresence(watch bool) { c.unwatched.Store(!watch) }

// ID is the connection's number, unique within the hub.
func (c *Conn) ID() uint64 { return c.id }

// Transport implements node.Peer.
func (c *Conn) Transport() node.Method { return c.transport }

// RemoteIP implements node.Peer.
func (c *Conn) RemoteIP() string { return c.remoteIP }

// Session implements node.Peer.
func (c *Conn) Session() *model.Session { return c.session.Load() }

// SetSession implements node.Peer: it attaches the connection to the
// session's user (or detaches it with nil), which may change presence.
func (c *Conn) SetSession(s *model.Session) error {
	return c.hub.setSession(c, s)
}

// Enqueue queues a frame for the writer. It never blocks. It reports false
// when the connection is closing, or when the frame overflowed the queue, in
// which case the connection is closed with 4008.
func (c *Conn) Enqueue(frame []byte) bool { return c.enqueue(frame, false) }

// Reply queues a reply to the client's request as Enqueue does, but it is
// written without a write delay: the delay gathers pushes, and must not
// slow a request's round trip on a busy connection. Pushes queued before
// it go out in the same write.
func (c *Conn) Reply(frame []byte) bool { return c.enqueue(frame, true) }

func (c *Conn) enqueue(frame []byte, urgent bool) bool {
	ok, _ := c.push(frame, urgent, time.Time{})
	return ok
}

// push queues frame for the writer, as enqueue. Given a time (now), it may
// instead claim an idle connection for an inline write of the frame
// (inline.go): claimed reports that the caller must call writeInline.
func (c *Conn) push(frame []byte, urgent bool, now time.Time) (ok, claimed bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false, false
	}
	if !now.IsZero() && c.idleLocked(now) {
		c.writing = true
		c.writer.Add(1)
		c.mu.Unlock()
		return true, true
	}
	if c.queuedBytes+len(frame) > c.hub.opts.QueueBytes || len(c.queue) >= c.hub.opts.QueueFrames {
		queued := c.queuedBytes // read under the lock, before the close empties the queue
		c.hub.slowClosed.Add(1) // counted before the close can complete
		c.startCloseLocked(CloseTooSlow, "too slow: send queue overflowed", false)
		c.mu.Unlock()
		c.sink.Abort()
		c.hub.log.Warn("slow connection closed", "conn", c.id, "transport", c.transport.String(), "queued_bytes", queued)
		return false, false
	}
	c.queue = append(c.queue, frame)
	c.queuedBytes += len(frame)
	c.urgent = c.urgent || urgent
	c.wakeWriterLocked()
	// A reply, or a queue half full, cuts the writer's delay short: the
	// delay is there to gather frames, never to make a fast reader look
	// slow.
	if c.urgent || 2*len(c.queue) >= c.hub.opts.QueueFrames || 2*c.queuedBytes >= c.hub.opts.QueueBytes {
		c.cutDelayLocked()
	}
	c.mu.Unlock()
	return true, false
}

// cutDelayLocked ends the writer's delay, if it is in one.
func (c *Conn) cutDelayLocked() {
	if c.delaying {
		c.delaying = false
		c.delayWake <- struct{}{} // buffered, and only sent while delaying: never blocks
	}
}

// delay is the writer's wait for more frames: d, or until a reply comes,
// Enqueue finds the queue half full, or the connection starts to close.
// Only the writer calls it.
func (c *Conn) delay(d time.Duration) {
	c.mu.Lock()
	if c.urgent || c.closing {
		c.mu.Unlock()
		return
	}
	if c.delayWake == nil {
		c.delayWake = make(chan struct{}, 1)
		c.delayTimer = time.NewTimer(d)
	} else {
		c.delayTimer.Reset(d)
	}
	c.delaying = true
	c.mu.Unlock()
	select {
	case <-c.delayTimer.C:
	case <-c.delayWake:
		c.delayTimer.Stop()
	}
	c.mu.Lock()
	c.delaying = false
	select { // a wake sent just as the timer fired
	case <-c.delayWake:
	default:
	}
	c.mu.Unlock()
}

// Close closes the connection with code and reason after the frames already
// queued are written (a kick's im/kicked goes out before its 4001). It
// returns at once; Finish waits.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.startCloseLocked(code, reason, true)
	}
	c.mu.Unlock()
}

// Abort makes a blocked write fail now; used when a graceful close has
// waited long enough.
func (c *Conn) Abort() {
	c.mu.Lock()
	c.graceful = false
	done := c.finished && !c.writing
	c.mu.Unlock()
	if !done { // once finished, the transport may have released the socket
		c.sink.Abort()
	}
}

func (c *Conn) startCloseLocked(code int, reason string, graceful bool) {
	c.closing = true
	c.graceful = graceful
	c.closeCode, c.closeReason = code, reason
	if !graceful {
		c.queue, c.queuedBytes = nil, 0
	}
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.wakeWriterLocked()
	c.cutDelayLocked()
}

// wakeWriterLocked starts the writer goroutine if it is not running.
func (c *Conn) wakeWriterLocked() {
	if c.writing || c.finished {
		return
	}
	c.writing = true
	c.writer.Add(1)
	go c.writeLoop()
}

// writeLoop is the connection's writer: it drains the queue in batches,
// sends a due ping, and performs the close; it exits when there is nothing
// left to do.
func (c *Conn) writeLoop() {
	defer c.writer.Done()
	for {
		// A hot connection waits for more frames so that one write
		// carries them all, also when frames came in during its last
		// write; any other writes at once, so a lone message or a steady
		// trickle costs no delay.
		hot := c.hot(time.Now())
		c.countHot(hot)
		if hot {
			c.delay(c.hub.writeDelay())
		}
		c.mu.Lock()
		if c.closing && (!c.graceful || len(c.queue) == 0) {
			code, reason := c.closeCode, c.closeReason
			c.queue, c.queuedBytes, c.writing = nil, 0, false
			c.finished = true
			c.mu.Unlock()
			c.sink.Close(code, reason)
			return
		}
		if len(c.queue) == 0 && !c.pingDue && !c.sinkPending {
			c.countHot(false) // while still the writer: Hub.hotConns counts busy writers only
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.queuedBytes = 0
		c.urgent = false
		ping, flush := c.pingDue, c.sinkPending
		c.pingDue, c.sinkPending = false, false
		c.mu.Unlock()

		var err error
		if len(batch) > 0 || flush {
			c.noteWrite(time.Now(), len(batch))
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
		// A write that ran out its deadline on a connection nobody was
		// closing met a peer that took no data for the whole write
		// timeout: as slow as one whose queue overflows, and counted so.
		timedOut := err != nil && !c.closing && isTimeout(err)
		if timedOut {
			c.hub.slowClosed.Add(1) // counted before the close can complete
		}
		if err != nil && !c.closing {
			c.startCloseLocked(closeAbnormalNoSend, "", false)
		} else if err != nil {
			c.graceful = false
		}
		c.mu.Unlock()
		if timedOut {
			c.hub.log.Warn("slow connection closed", "conn", c.id, "transport", c.transport.String(), "reason", "write timeout")
		}
	}
}

// hot reports whether the writer should wait for more frames before it
// writes: it wrote less than a write delay ago, and frames have lately
// come fast enough for a delay to gather minDelayedBatch of them. Only the
// writer calls it.
func (c *Conn) hot(now time.Time) bool {
	d := c.hub.opts.WriteDelay
	if d <= 0 || now.Sub(c.lastWrite) >= d {
		return false
	}
	enough := minDelayedBatch * rateWindow
	return c.windowFrames >= enough || c.lastWindowFrames >= enough
}

// countHot keeps Hub.hotConns: hot is what the running writer last found
// (false once it exits). Only the writer calls it, and remove once the
// writer has exited for good.
func (c *Conn) countHot(hot bool) {
	if hot != c.countedHot {
		c.countedHot = hot
		if hot {
			c.hub.hotConns.Add(1)
		} else {
			c.hub.hotConns.Add(-1)
		}
	}
}

// noteWrite counts a write of frames at now for hot. Only the writer calls
// it.
func (c *Conn) noteWrite(now time.Time, frames int) {
	window := rateWindow * c.hub.opts.WriteDelay
	if since := now.Sub(c.windowStart); since >= window {
		c.lastWindowFrames = c.windowFrames
		if since >= 2*window { // a quiet window went by in between
			c.lastWindowFrames = 0
		}
		c.windowStart, c.windowFrames = now, 0
	}
	c.windowFrames += frames
	c.lastWrite = now
}

// isTimeout reports whether err is a deadline running out (the WebSocket
// library hides the net error behind its own type, which keeps Timeout).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// schedulePing arms the keep-alive timer.
func (c *Conn) schedulePing(every time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pingTimer = time.AfterFunc(every, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closing {
			return
		}
		c.pingDue = true
		c.wakeWriterLocked()
		c.pingTimer.Reset(every)
	})
}

// Finish is called by the transport when reading has ended. It lets the
// deferred requests finish (a message already queued for the store is
// stored and delivered to its readers whether or not its sender stays),
// closes the connection if nobody has yet, waits for the writer to exit,
// closes the socket and removes the connection from the hub. After Finish
// returns no goroutine of the hub touches the socket.
func (c *Conn) Finish() {
	c.laterDone.Wait()
	c.mu.Lock()
	if !c.closing {
		c.startCloseLocked(closeAbnormalNoSend, "", false)
	}
	graceful := c.graceful
	c.mu.Unlock()
	if !graceful {
		c.sink.Abort()
	} else {
		// A graceful close flushes under the sink's write deadline; bound it.
		t := time.AfterFunc(c.hub.opts.WriteTimeout, c.Abort)
		defer t.Stop()
	}
	c.writer.Wait()
	c.hub.remove(c)
}

// Closing reports whether the connection is closing.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}
