package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/wire"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

// Locals set before the upgrade and read by the WebSocket handler.
const (
	localIP  = "dce_ip"
	localSID = "dce_sid"
	// localUnwatched marks a connection opened with ?presence=0.
	localUnwatched = "dce_unwatched"
	// localSocket is the raw access (syscall.RawConn) to the accepted
	// socket under the upgrade, for the sink's writes that must not block
	// (inlineWSSink.TryWrite). Not the net.Conn itself: fasthttp closes
	// every user value that is an io.Closer when it releases the request.
	localSocket = "dce_socket"
)

// hardReadLimit is the library's own limit: a message declared larger than
// this is refused by the library with 1009 before a byte of it is read.
// Below it, the server reads up to the frame limit and answers too_large
// itself before closing with 1009.
const hardReadLimitFactor = 2

// WebSocket upgrades HTTP requests and serves frames over them.
type WebSocket struct {
	*Options
	handler fiber.Handler
	buffers sync.Pool
}

// NewWebSocket makes the WebSocket transport.
func NewWebSocket(o *Options) *WebSocket {
	ws := &WebSocket{Options: o}
	ws.buffers.New = func() any { return new(bytes.Buffer) }
	ws.handler = websocket.New(ws.serve, websocket.Config{
		// Origins are checked by Upgrade below, with a 403 as PROTOCOL.md
		// says; the library's check answers 426 and allows every origin by
		// default.
		Origins:           []string{"*"},
		EnableCompression: false, // the read limit would count compressed bytes
		RecoverHandler:    ws.recoverPanic,
		// The library writes only control frames the sink does not take
		// over (a protocol error's close): borrow its buffer for those
		// instead of keeping one per connection.
		WriteBufferPool: &sync.Pool{},
		// Frames are read through this buffer in pieces of its size; a
		// small one keeps idle connections cheap at a few more reads for a
		// large frame.
		ReadBufferSize: 512,
	})
	return ws
}

// Upgrade is the route handler: it refuses cross-site and over-cap upgrades
// with a status, then hands the request to the library.
func (ws *WebSocket) Upgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return c.Next()
	}
	if !ws.originAllowed(c) {
		return fiber.NewError(fiber.StatusForbidden, "cross-site WebSocket refused")
	}
	// The library answers every failed handshake with a bare 426 (contrib
	// turns its errors into fiber.ErrUpgradeRequired, and fasthttp's Error
	// drops the Sec-WebSocket-Version header), so the two answers RFC 6455
	// section 4.2.2 names are given here.
	if !hasToken(c.Get("Sec-WebSocket-Version"), "13") {
		c.Set("Sec-WebSocket-Version", "13")
		return fiber.NewError(fiber.StatusUpgradeRequired, "only WebSocket version 13 is supported")
	}
	if strings.TrimSpace(c.Get("Sec-WebSocket-Key")) == "" {
		return fiber.NewError(fiber.StatusBadRequest, "Sec-WebSocket-Key is missing")
	}
	sid := c.Query("sid")
	if sid == "" {
		sid = c.Cookies(cookieName)
	}
	ip := ws.clientIP(c)
	if e := ws.allowConnect(c.UserContext(), ip, sid); e != nil {
		return writeError(c, e) // 429 with Retry-After
	}
	if err := ws.Hub.Admit(ip, sid == ""); err != nil {
		c.Set(fiber.HeaderRetryAfter, capRetryAfter)
		return fiber.NewError(fiber.StatusServiceUnavailable, err.Error())
	}
	c.Locals(localIP, strings.Clone(ip))
	c.Locals(localSID, strings.Clone(sid))
	c.Locals(localUnwatched, c.Query("presence") == "0")
	if sc, ok := c.Context().Conn().(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.Locals(localSocket, rc)
		}
	}
	return ws.handler(c)
}

// capRetryAfter is the Retry-After, in seconds, of an upgrade refused at a
// connection cap: places come free as others leave, not at a known time.
const capRetryAfter = "5"

// hasToken reports whether the comma-separated header value lists token.
func hasToken(header, token string) bool {
	for _, t := range strings.Split(header, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// originAllowed: no Origin (not a browser), this server's own origin, or
// one listed in allowed_origins.
func (ws *WebSocket) originAllowed(c *fiber.Ctx) bool {
	return originAllowed(c.Get(fiber.HeaderOrigin), c.Hostname(), ws.Live.Load().AllowedOrigins)
}

func originAllowed(origin, host string, allowed []string) bool {
	if origin == "" {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(a, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// serve runs in the library's goroutine after the upgrade. It takes what
// it needs from the request, hands the connection to a reader goroutine of
// its own, and returns. Returning lets fasthttp release the request context
// and contrib/websocket its copies of the request's locals, query, cookies
// and headers: kept for the life of the connection they were a fifth of an
// idle connection's memory. The reader's stack starts afresh, without the
// handshake's frames under it, and stays at the smallest size reading needs.
func (ws *WebSocket) serve(wc *websocket.Conn) {
	ip, _ := wc.Locals(localIP).(string)
	sid, _ := wc.Locals(localSID).(string)
	unwatched, _ := wc.Locals(localUnwatched).(bool)
	socket, _ := wc.Locals(localSocket).(syscall.RawConn)
	conn := wc.Conn // contrib's wrapper goes back to its pool when serve returns
	ws.active.Add(1)
	go ws.read(conn, socket, ip, sid, unwatched)
}

// read is the connection's reader; it returns only after the writer has
// exited.
func (ws *WebSocket) read(wc *fws.Conn, socket syscall.RawConn, ip, sid string, unwatched bool) {
	defer ws.active.Add(-1)
	defer wc.Close() // with KeepHijackedConns the socket is ours to close
	defer func() {
		if p := recover(); p != nil {
			ws.Log.Error("websocket reader panicked", "panic", p)
		}
	}()
	sink := newWSSink(wc, ws.WriteTimeout)
	var hubSink hub.Sink = sink
	if socket != nil {
		hubSink = &inlineWSSink{wsSink: sink, socket: socket}
	}
	register := ws.Hub.Register
	if sid != "" {
		register = ws.Hub.RegisterWithCredential
	}
	c, err := register(hubSink, node.WebSocket, ip, ws.PingInterval)
	if err != nil { // a cap reached since Admit, or a shutdown: no writer exists, the socket is ours
		code := node.ClosePolicy
		var d *node.Disconnect
		if errors.As(err, &d) {
			code = d.Code
		}
		sink.Close(code, err.Error())
		return
	}
	takeControlFrames(wc, c)
	if unwatched {
		c.WatchPresence(false)
	}
	ctx := context.Background()
	onFreshStack(func() { ws.resume(ctx, c, sid) })

	maxFrame := ws.Router.MaxFrame()
	wc.SetReadLimit(int64(maxFrame) * hardReadLimitFactor)
	wc.SetPongHandler(func(string) error {
		return wc.SetReadDeadline(time.Now().Add(ws.PongWait))
	})
	var bad badFrames
	for {
		_ = wc.SetReadDeadline(time.Now().Add(ws.PongWait))
		kind, r, err := wc.NextReader()
		if err != nil {
			break
		}
		buf := ws.buffers.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(io.LimitReader(r, int64(maxFrame)+1))
		keep := ws.handleMessage(ctx, c, &bad, kind, buf.Bytes(), err, maxFrame)
		if buf.Cap() <= 2*maxFrame {
			ws.buffers.Put(buf)
		}
		if !keep {
			break
		}
	}
	ws.finish(c)
}

// handleMessage handles one WebSocket message; false ends the connection.
func (ws *WebSocket) handleMessage(ctx context.Context, c *hub.Conn, bad *badFrames, kind int, msg []byte, readErr error, maxFrame int) bool {
	switch {
	case readErr != nil:
		return false
	case len(msg) > maxFrame:
		c.Enqueue(wire.AppendError(nil, "error", "", node.CodeTooLarge, "frame is over the size limit", 0))
		c.Close(node.CloseTooLarge, "frame too large")
		return false
	case kind == websocket.TextMessage && !utf8.Valid(msg):
		c.Close(node.CloseInvalidUTF8, "invalid UTF-8")
		return false
	case len(msg) == 0:
		return true
	}
	return ws.dispatch(ctx, c, bad, msg, true)
}

// recoverPanic is the library's RecoverHandler. It replaces the library's
// recover, which would write the panic text to the client from outside the
// writer.
func (ws *WebSocket) recoverPanic(*websocket.Conn) {
	if p := recover(); p != nil {
		ws.Log.Error("websocket handler panicked", "panic", p)
	}
}

// wsSink writes frames as WebSocket text messages. It builds the frames
// itself and writes a batch of them to the socket with one syscall: the
// library would spend one write per message. Like every Sink it is used
// only by the holder of the connection's writer role (hub/writer.go), one
// goroutine at a time, so it needs no lock: the reader does not write, it
// hands the peer's pings and close to the hub (takeControlFrames).
type wsSink struct {
	conn      *fws.Conn
	raw       net.Conn
	deadline  writeDeadline
	closeSent bool   // a close frame has gone out: nothing may follow it
	closed    bool   // Close has run
	rest      []byte // what a TryWrite could not write: it goes before anything else
}

var (
	_ hub.Ponger     = (*wsSink)(nil)
	_ hub.InlineSink = (*inlineWSSink)(nil)
)

func newWSSink(wc *fws.Conn, writeTimeout time.Duration) *wsSink {
	raw := wc.NetConn()
	return &wsSink{conn: wc, raw: raw, deadline: writeDeadline{conn: raw, timeout: writeTimeout}}
}

// takeControlFrames hands the peer's pings and close to c's writer, which
// answers them: the reader never writes, so a peer that pings and does not
// read stalls nobody but its own writer, whose write timeout closes it.
// The library still writes a close itself after a protocol error it finds
// while reading, with its own one-second deadline; the connection ends
// then anyway.
func takeControlFrames(wc *fws.Conn, c *hub.Conn) {
	wc.SetPingHandler(func(data string) error {
		c.Pong(data)
		return nil
	})
	wc.SetCloseHandler(func(code int, _ string) error {
		c.CloseNow(node.CloseCode(code), "")
		return nil
	})
}

// WebSocket opcodes with the FIN bit set (RFC 6455 section 5.2).
const (
	opText  = 0x81
	opClose = 0x88
	opPing  = 0x89
	opPong  = 0x8A
)

// appendFrameHeader appends an unmasked server frame header.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	switch {
	case n < 126:
		return append(b, op, byte(n))
	case n <= 0xFFFF:
		return append(b, op, 126, byte(n>>8), byte(n))
	default:
		return append(b, op, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// wsBatch is the most a batch buffer holds before it is written out.
const wsBatch = 64 << 10

var wsBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var errCloseSent = errors.New("websocket: close already sent")

// writeRaw writes b under the write timeout, or under deadline when it is
// not zero.
func (s *wsSink) writeRaw(b []byte, deadline time.Time, closing bool) error {
	if s.closeSent {
		return errCloseSent
	}
	s.closeSent = closing
	var err error
	if deadline.IsZero() {
		err = s.deadline.extend()
	} else {
		err = s.deadline.set(deadline)
	}
	if err != nil {
		return err
	}
	if len(s.rest) > 0 {
		if _, err := s.raw.Write(s.rest); err != nil {
			return err
		}
		s.rest = nil
	}
	if len(b) == 0 {
		return nil
	}
	_, err = s.raw.Write(b)
	return err
}

// writeControl writes a control frame; payloads over 125 bytes are cut.
func (s *wsSink) writeControl(op byte, payload string, deadline time.Time, closing bool) error {
	payload = payload[:min(len(payload), 125)]
	bp := wsBuffers.Get().(*[]byte)
	b := append(appendFrameHeader((*bp)[:0], op, len(payload)), payload...)
	err := s.writeRaw(b, deadline, closing)
	*bp = b[:0]
	wsBuffers.Put(bp)
	return err
}

func (s *wsSink) WriteFrames(frames [][]byte) error {
	if len(frames) == 0 { // the rest of a TryWrite only
		return s.writeRaw(nil, time.Time{}, false)
	}
	bp := wsBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 2*wsBatch {
			wsBuffers.Put(bp)
		}
	}()
	b := (*bp)[:0]
	for i, f := range frames {
		b = append(appendFrameHeader(b, opText, len(f)), f...)
		if len(b) >= wsBatch || i == len(frames)-1 {
			if err := s.writeRaw(b, time.Time{}, false); err != nil {
				*bp = b[:0]
				return err
			}
			b = b[:0]
		}
	}
	*bp = b
	return nil
}

// inlineWSSink is a wsSink that can also write without blocking, through
// the raw socket: the hub's InlineSink.
type inlineWSSink struct {
	*wsSink
	socket syscall.RawConn
}

// TryWrite implements hub.InlineSink: one write(2) of the frame, never a
// wait for the socket to drain.
func (s *inlineWSSink) TryWrite(frame []byte) (taken, more bool, err error) {
	if s.closeSent {
		return false, false, errCloseSent
	}
	var head [10]byte
	return tryWriteFrame(s.socket, &s.deadline, &s.rest, appendFrameHeader(head[:0], opText, len(frame)), frame, nil)
}

func (s *wsSink) Ping() error {
	return s.writeControl(opPing, "", time.Time{}, false)
}

// Pong implements hub.Ponger.
func (s *wsSink) Pong(payload string) error {
	return s.writeControl(opPong, payload, time.Time{}, false)
}

// closeReasonMax is the most a close frame's reason may hold.
const closeReasonMax = 123

func (s *wsSink) Close(code node.CloseCode, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	if code != 0 {
		if len(reason) > closeReasonMax {
			reason = reason[:closeReasonMax]
		}
		_ = s.writeControl(opClose, string(websocket.FormatCloseMessage(int(code), reason)), time.Now().Add(time.Second), true)
	}
	_ = s.conn.Close()
}

func (s *wsSink) Abort() {
	if s.raw != nil {
		s.deadline.abort()
	}
}
