// Package transport carries frames between sockets and the router: one thin
// file per transport (websocket, tcp, udp, http, cli) and this shared loop. A
// transport reads, hands each frame to node.Router.Dispatch, and queues the
// reply on the connection's hub.Conn; it never writes to a socket outside
// the connection's writer.
package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"dce/app/hub"
	"dce/app/node"
	"dce/common/model"
)

// Sessions attaches a connection to the session a sid names (the cookie,
// ?sid=, a Bearer token) and is told when a logged-in connection closes.
type Sessions interface {
	Resume(ctx context.Context, peer node.Peer, sid string) (model.User, error)
	Get(ctx context.Context, sid string) (*model.Session, error)
	Disconnected(ctx context.Context, sess *model.Session, logoutOnClose bool)
}

// Live are the settings `dce websocket reload` may change.
type Live struct {
	AllowedOrigins     []string
	BadFramesPerMinute int
	LogoutOnClose      bool
}

// Options are shared by every transport.
type Options struct {
	Router         *node.Router
	Hub            *hub.Hub
	Sessions       Sessions
	Admission      Admission // nil: new connections are not rate-limited
	Live           *atomic.Pointer[Live]
	Log            *slog.Logger
	PingInterval   time.Duration
	PongWait       time.Duration
	WriteTimeout   time.Duration
	TCPIdleTimeout time.Duration
	FrameTimeout   time.Duration
	UDPPeerTimeout time.Duration
	UDPPeers       int
	Secure         bool     // Secure cookies and HSTS
	TrustedProxies []string // whose X-Forwarded-For to believe

	active          atomic.Int64 // connection goroutines still winding down
	delayedRefusals atomic.Int64 // refusals waiting out their delay now (admission.go)
}

// Active is how many connection goroutines have not yet finished; shutdown
// waits for none before it closes the store.
func (o *Options) Active() int64 { return o.active.Load() }

// badFrames counts a peer's bad frames in a one-minute window.
type badFrames struct {
	start time.Time
	count int
}

// add counts one bad frame and reports whether the peer is over limit.
func (b *badFrames) add(now time.Time, limit int) bool {
	if now.Sub(b.start) >= time.Minute {
		b.start, b.count = now, 0
	}
	b.count++
	return limit > 0 && b.count > limit
}

// dispatch runs one frame from c and queues its reply. It reports false when
// the peer has sent too many bad frames and must be closed. With pipelined,
// a request that finishes later (a message waiting for its commit) does so
// on the connection's own deferred queue while the reader goes on.
func (o *Options) dispatch(ctx context.Context, c *hub.Conn, bad *badFrames, raw []byte, pipelined bool) bool {
	var (
		reply []byte
		isBad bool
	)
	if pipelined {
		onFreshStack(func() { reply, isBad = o.Router.DispatchLater(ctx, c, raw, c.Defer) })
	} else {
		reply, isBad = o.Router.Dispatch(ctx, c, raw)
	}
	if reply != nil {
		c.Reply(reply)
	}
	if isBad && bad.add(time.Now(), o.Live.Load().BadFramesPerMinute) {
		c.Close(node.ClosePolicy, "too many bad frames")
		return false
	}
	return true
}

// resume attaches a new connection to the session sid names, if it is live.
// A refusal that is a node.Disconnect closes the connection with its code
// (4503 for a banned user, 4509 for one over the per-user cap); a stale sid
// leaves it anonymous.
func (o *Options) resume(ctx context.Context, c *hub.Conn, sid string) {
	if sid == "" {
		return
	}
	_, err := o.Sessions.Resume(ctx, c, sid)
	if err == nil {
		return
	}
	// It came in past the anonymous cap on the strength of its sid; a sid
	// that logs nobody in must not be a way around the cap.
	if c.Session() == nil && o.Hub.OverAnonCap(c.RemoteIP()) {
		c.Close(node.ClosePolicy, hub.ErrTooManyAnon.Reason)
		return
	}
	var d *node.Disconnect
	if errors.As(err, &d) {
		c.Close(d.Code, d.Reason)
		return
	}
	e, _ := node.AsError(err)
	switch e.Code {
	case node.CodeForbidden:
		c.Close(node.ClosePolicy, e.Message)
	case node.CodeUnauthorized: // a stale sid: the connection stays, anonymous
	default:
		o.Log.Warn("resume at connect failed", "err", err)
	}
}

// finish ends a connection after its reader stopped. The session is told
// before the hub lets the connection go, so that shutdown, which waits for
// the hub to empty, never closes the store under it.
func (o *Options) finish(c *hub.Conn) {
	if sess := c.Session(); sess != nil {
		o.Sessions.Disconnected(context.Background(), sess, o.Live.Load().LogoutOnClose)
	}
	c.Finish()
}

// hostIP is the IP part of a network address.
func hostIP(addr net.Addr) string {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// writeDeadline keeps a socket's write deadline between half the write
// timeout and the whole of it ahead, moving it only when it has come
// within half: setting a deadline costs a lock in the runtime's poller, too
// much to pay on every write of a busy connection. Only the holder of the
// connection's writer role calls extend and set; abort may come from
// anywhere.
type writeDeadline struct {
	conn    net.Conn
	timeout time.Duration
	until   time.Time
	aborted atomic.Bool
}

var errAborted = errors.New("the connection's writes were aborted")

// extend makes sure the next write has at least half the timeout.
func (d *writeDeadline) extend() error {
	now := time.Now()
	if d.until.Sub(now) >= d.timeout/2 {
		return d.check()
	}
	d.until = now.Add(d.timeout)
	_ = d.conn.SetWriteDeadline(d.until)
	return d.check()
}

// set sets the deadline to t for a last write (a close frame), after an
// abort too: the abort ended the write that was stuck.
func (d *writeDeadline) set(t time.Time) error {
	d.aborted.Store(false)
	d.until = t
	return d.conn.SetWriteDeadline(t)
}

// check reports an abort; one that raced with a new deadline wins.
func (d *writeDeadline) check() error {
	if d.aborted.Load() {
		_ = d.conn.SetWriteDeadline(time.Now())
		return errAborted
	}
	return nil
}

// abort makes a blocked write return at once, and every later one fail.
func (d *writeDeadline) abort() {
	d.aborted.Store(true)
	_ = d.conn.SetWriteDeadline(time.Now())
}

// onFreshStack runs f on a goroutine of its own and waits for it. A
// connection's reader calls the deep code (the store, JSON, hashing)
// through it, so the reader's own stack stays as small as reading needs
// (a few KiB) instead of keeping, for the connection's life, the most any
// request ever took: with tens of thousands of idle connections that is
// most of their memory. It costs a goroutine start per request.
// A panic in f is raised again on the caller's goroutine, where it would
// have been.
func onFreshStack(f func()) {
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		f()
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}

// tryWriteFrame is an InlineSink's TryWrite: head, frame and tail with one
// write(2) that never waits. While the rest of an earlier partial write is
// unwritten it writes nothing (the writer sends that rest first); the rest
// of a new partial write goes to *rest, for the sink to write before
// anything else. The socket's write deadline holds for raw writes too, so
// it is extended first: one that had passed would fail the write at once.
func tryWriteFrame(socket syscall.RawConn, deadline *writeDeadline, rest *[]byte, head, frame, tail []byte) (taken, more bool, err error) {
	if len(*rest) > 0 {
		return false, false, nil
	}
	if err := deadline.extend(); err != nil {
		return false, false, err
	}
	bp := wsBuffers.Get().(*[]byte)
	b := append(append(append((*bp)[:0], head...), frame...), tail...)
	defer func() {
		*bp = b[:0]
		if cap(b) <= 2*wsBatch {
			wsBuffers.Put(bp)
		}
	}()
	n, err := writeNoWait(socket, b)
	switch {
	case err != nil:
		return false, false, err
	case n == 0:
		return false, false, nil
	case n < len(b):
		*rest = append([]byte(nil), b[n:]...)
		return true, true, nil
	}
	return true, false, nil
}

// writeNoWait makes one write(2) of b to the socket and never waits for it
// to drain: n is what the socket took, 0 when its buffer is full.
//
// The call is raw (not announced to the Go scheduler): on a non-blocking
// socket write(2) cannot block, and announcing it wakes the runtime's
// monitor thread whenever it sleeps, which happened on every broadcast
// that followed a quiet spell and cost about a twentieth of the server's
// CPU in a paced fan-out.
//
// It goes through Control, which only keeps the descriptor open, and not
// Write, which would first take the descriptor's write lock: the caller
// may be a delivery sweeping many connections, and the lock may be held
// by a write that waits on this socket (the WebSocket library's own close
// after a protocol error, with a one-second deadline). The writer role
// makes sure no other write of ours runs meanwhile.
func writeNoWait(socket syscall.RawConn, b []byte) (n int, err error) {
	var werr error
	err = socket.Control(func(fd uintptr) {
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if errno != 0 {
			werr = errno
		} else {
			n = int(r)
		}
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}
