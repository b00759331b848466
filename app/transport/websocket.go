package transport

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/wire"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

// Locals set before the upgrade and read by the WebSocket handler.
const (
	localIP  = "dce_ip"
	localSID = "dce_sid"
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
	if err := ws.Hub.Admit(ip, sid == ""); err != nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, err.Error())
	}
	c.Locals(localIP, strings.Clone(ip))
	c.Locals(localSID, strings.Clone(sid))
	return ws.handler(c)
}

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

// serve runs in the library's goroutine after the upgrade; it is the
// connection's reader and returns only after the writer has exited.
func (ws *WebSocket) serve(wc *websocket.Conn) {
	ws.active.Add(1)
	defer ws.active.Add(-1)
	defer wc.Close() // with KeepHijackedConns the socket is ours to close
	ip, _ := wc.Locals(localIP).(string)
	sid, _ := wc.Locals(localSID).(string)
	sink := &wsSink{conn: wc, writeTimeout: ws.WriteTimeout}
	register := ws.Hub.Register
	if sid != "" {
		register = ws.Hub.RegisterWithCredential
	}
	c, err := register(sink, node.WebSocket, ip, ws.PingInterval)
	if err != nil {
		sink.Close(hub.ClosePolicy, err.Error())
		return
	}
	ctx := context.Background()
	ws.resume(ctx, c, sid)

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
		c.Close(hub.CloseTooLarge, "frame too large")
		return false
	case kind == websocket.TextMessage && !utf8.Valid(msg):
		c.Close(hub.CloseInvalidUTF8, "invalid UTF-8")
		return false
	case len(msg) == 0:
		return true
	}
	return ws.dispatch(ctx, c, bad, msg)
}

// recoverPanic replaces the library's recover, which would write the panic
// text to the client from outside the writer.
func (ws *WebSocket) recoverPanic(wc *websocket.Conn) {
	if p := recover(); p != nil {
		ws.Log.Error("websocket handler panicked", "panic", p)
	}
}

// wsSink writes frames as WebSocket text messages.
type wsSink struct {
	conn         *websocket.Conn
	writeTimeout time.Duration
	closeOnce    sync.Once
}

func (s *wsSink) WriteFrames(frames [][]byte) error {
	for _, f := range frames {
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
		if err := s.conn.WriteMessage(websocket.TextMessage, f); err != nil {
			return err
		}
	}
	return nil
}

func (s *wsSink) Ping() error {
	return s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.writeTimeout))
}

// closeReasonMax is the most a close frame's reason may hold.
const closeReasonMax = 123

func (s *wsSink) Close(code int, reason string) {
	s.closeOnce.Do(func() {
		if code != 0 {
			if len(reason) > closeReasonMax {
				reason = reason[:closeReasonMax]
			}
			_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
				time.Now().Add(time.Second))
		}
		_ = s.conn.Close()
	})
}

func (s *wsSink) Abort() {
	if nc := s.conn.NetConn(); nc != nil {
		_ = nc.SetWriteDeadline(time.Now())
	}
}
