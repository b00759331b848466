package hub

import (
	"sync"
	"sync/atomic"
	"time"

	"dce/app/node"
	"dce/common/model"
)

// closeAbnormalNoSend closes without a close frame: the socket is gone.
const closeAbnormalNoSend node.CloseCode = 0

// maxPongPayload is the most a ping's payload, and so its pong's, may hold
// (RFC 6455 section 5.5: control frames carry at most 125 bytes).
const maxPongPayload = 125

// Conn is one live connection. It implements node.Peer.
type Conn struct {
	hub       *Hub
	id        uint64
	transport node.Method
	remoteIP  string
	sink      Sink
	inline    InlineSink // sink, when it can write without blocking; else nil
	ponger    Ponger     // sink, when its transport answers pings; else nil

	session atomic.Pointer[model.Session]
	// unwatched: the client asked not to receive im/presence events.
	unwatched atomic.Bool

	mu          sync.Mutex // guards the fields below
	queue       [][]byte
	spare       [][]byte // the last batch's slice, reused
	queuedBytes int
	urgent      bool // a reply or a pong is due: the writer does not delay
	writing     bool // someone holds the writer role (writer.go)
	sinkPending bool // the sink kept part of an inline write: the writer must call WriteFrames
	pingDue     bool
	pongDue     bool   // the peer pinged
	pong        string // the last ping's payload
	closing     bool
	graceful    bool // flush the queue before closing
	closeCode   node.CloseCode
	closeReason string
	userID      int64 // the user this conn is attached to in the index, or 0
	attachedAt  int   // its place in Hub.attached, or -1 (guarded by Hub.mu)
	pingTimer   *time.Timer
	delaying    bool          // the writer is in its write delay
	delayWake   chan struct{} // cuts the delay short; made on the first delay
	finished    bool          // the writer has closed the sink: nothing more is written

	w      writerState // the writer role's own (writer.go)
	writer sync.WaitGroup

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
// (writer.go): claimed reports that the caller must call writeInline.
func (c *Conn) push(frame []byte, urgent bool, now time.Time) (ok, claimed bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false, false
	}
	if !now.IsZero() && c.claimLocked(now) {
		c.mu.Unlock()
		return true, true
	}
	if c.queuedBytes+len(frame) > c.hub.opts.QueueBytes || len(c.queue) >= c.hub.opts.QueueFrames {
		queued := c.queuedBytes // read under the lock, before the close empties the queue
		c.hub.slowClosed.Add(1) // counted before the close can complete
		c.startCloseLocked(node.CloseTooSlow, "too slow: send queue overflowed", false)
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

// Pong answers the peer's ping with payload (at most 125 bytes are kept).
// The answer is written by the connection's writer, never by the caller,
// so a peer that pings and does not read blocks only its own writer. A
// pong not yet written is replaced by the next: RFC 6455 (section 5.5.3)
// lets an endpoint answer only the most recent ping, so a ping flood
// costs one pending pong, not a queue. It reports false when the sink has
// no pongs or the connection is closing.
func (c *Conn) Pong(payload string) bool {
	if c.ponger == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.pong = payload[:min(len(payload), maxPongPayload)]
	c.pongDue, c.urgent = true, true
	c.wakeWriterLocked()
	c.cutDelayLocked()
	return true
}

// Close closes the connection with code and reason after the frames already
// queued are written (a kick's im/kicked goes out before its 4001). It
// returns at once; Finish waits.
func (c *Conn) Close(code node.CloseCode, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.startCloseLocked(code, reason, true)
	}
	c.mu.Unlock()
}

// CloseNow closes the connection with code and reason without writing what
// is queued: the peer has sent its close frame, and the answer to it goes
// out next (RFC 6455 section 5.5.1). A close already under way keeps its
// code, and stops waiting for the queue.
func (c *Conn) CloseNow(code node.CloseCode, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.startCloseLocked(code, reason, false)
	} else {
		c.graceful = false
		c.cutDelayLocked()
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

func (c *Conn) startCloseLocked(code node.CloseCode, reason string, graceful bool) {
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
	gone := !c.closing
	if gone { // reading ended with nobody closing: the socket is gone
		c.startCloseLocked(closeAbnormalNoSend, "", false)
	}
	c.mu.Unlock()
	if gone {
		c.sink.Abort()
	} else {
		// A close under way writes under the sink's write deadline (a
		// graceful one flushes the queue first); bound it.
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
