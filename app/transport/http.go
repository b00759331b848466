package transport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"dce/app/node"
	"dce/app/wire"
	"dce/common/model"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/gofiber/fiber/v2/utils"
)

// cookieName carries the browser's sid.
const cookieName = "dce_sid"

// contentSecurityPolicy is sent with every page: no inline script, no
// framing, connections only to this origin.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; connect-src 'self'"

// HTTPOptions add the HTTP transport's own parts to Options.
type HTTPOptions struct {
	ReadTimeout time.Duration
	Static      fs.FS                         // served under /static/ and /static/v<hash>/
	Page        func(io.Writer, string) error // the chat page at GET /, given the assets' versioned base path
	// Healthy is GET /healthz: an error is 503 with it; otherwise 200 with
	// "ok", or "degraded: ..." when the server serves without something it
	// normally has (Redis, with several nodes).
	Healthy func() (degraded string, err error)
}

// HTTP serves the UI, the WebSocket upgrade, and every node as POST /PATH.
type HTTP struct {
	*Options
	app *fiber.App
	ws  *WebSocket
}

// NewHTTP builds the Fiber app.
func NewHTTP(o *Options, h HTTPOptions) *HTTP {
	cfg := fiber.Config{
		DisableStartupMessage: true,
		ReadTimeout:           h.ReadTimeout,
		IdleTimeout:           2 * time.Minute,
		BodyLimit:             o.Router.MaxFrame(),
		ReadBufferSize:        8 << 10, // also the most request headers may take: more gets 431
		ErrorHandler:          errorHandler,
		// Give the read buffer back once a request has been read: without
		// this, a WebSocket keeps the 8 KiB buffer its upgrade came in on
		// for as long as it lives, half an idle connection's memory.
		ReduceMemoryUsage: true,
	}
	t := &HTTP{Options: o, app: fiber.New(cfg), ws: NewWebSocket(o)}
	// Without this, closing a hijacked (WebSocket) connection from another
	// goroutine does nothing.
	t.app.Server().KeepHijackedConns = true

	t.app.Use(refuseEncodedBodies)
	t.app.Get("/ws", t.ws.Upgrade, func(c *fiber.Ctx) error {
		return fiber.NewError(fiber.StatusBadRequest, "this route takes WebSocket upgrades")
	})
	assets := "/static/v" + assetVersion(h.Static) + "/"
	t.app.Get("/", t.ws.Upgrade, func(c *fiber.Ctx) error {
		t.pageHeaders(c)
		c.Type("html", "utf-8")
		return h.Page(c.Response().BodyWriter(), assets)
	})
	t.app.Get("/healthz", func(c *fiber.Ctx) error {
		degraded, err := h.Healthy()
		if err != nil {
			return fiber.NewError(fiber.StatusServiceUnavailable, err.Error())
		}
		if degraded != "" {
			return c.SendString("degraded: " + degraded)
		}
		return c.SendString("ok")
	})
	// The page names its assets under /static/v<hash of them all>/, cached
	// for good: a new build has a new path, so a page never mixes one
	// build's modules with another's, and a path of another build is 404.
	t.app.Use(strings.TrimSuffix(assets, "/"), func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
		return c.Next()
	}, filesystem.New(filesystem.Config{Root: http.FS(h.Static)}))
	t.app.Use("/static", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		return c.Next()
	}, filesystem.New(filesystem.Config{Root: http.FS(h.Static), MaxAge: 3600}))
	t.app.Post("/*", t.callNode)
	t.app.All("/*", t.wrongMethod)
	return t
}

// Serve serves ln until Shutdown.
func (t *HTTP) Serve(ln net.Listener) error { return t.app.Listener(ln) }

// Shutdown stops taking requests. WebSockets are the hub's to close: the
// HTTP server does not see hijacked connections.
func (t *HTTP) Shutdown(timeout time.Duration) error { return t.app.ShutdownWithTimeout(timeout) }

func (t *HTTP) pageHeaders(c *fiber.Ctx) {
	c.Set("Content-Security-Policy", contentSecurityPolicy)
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	if t.Secure {
		c.Set(fiber.HeaderStrictTransportSecurity, "max-age=31536000")
	}
}

// assetVersion is a short hash of every file in fsys (names and contents):
// the part of the assets' path that changes when any of them does.
func assetVersion(fsys fs.FS) string {
	sum := sha256.New()
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(sum, "%s\x00%d\x00", path, len(b))
		sum.Write(b)
		return nil
	})
	if err != nil {
		panic("transport: cannot read the static assets: " + err.Error())
	}
	return hex.EncodeToString(sum.Sum(nil))[:12]
}

// refuseEncodedBodies answers 415 to any compressed request: Fiber v2 would
// inflate it without a limit.
func refuseEncodedBodies(c *fiber.Ctx) error {
	if enc := c.Get(fiber.HeaderContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
		return fiber.NewError(fiber.StatusUnsupportedMediaType, "compressed request bodies are not accepted")
	}
	return c.Next()
}

// wrongMethod: a node path with another method is 405, anything else 404.
func (t *HTTP) wrongMethod(c *fiber.Ctx) error {
	if t.Router.Lookup(strings.TrimPrefix(c.Path(), "/"), node.HTTP) != nil {
		c.Set(fiber.HeaderAllow, fiber.MethodPost)
		return fiber.NewError(fiber.StatusMethodNotAllowed, "use POST for nodes")
	}
	return fiber.NewError(fiber.StatusNotFound, "no such route")
}

// callNode serves POST /PATH: the node's result as JSON, or its error with
// the status PROTOCOL.md section 4 gives.
func (t *HTTP) callNode(c *fiber.Ctx) error {
	path := utils.CopyString(strings.TrimPrefix(c.Path(), "/"))
	n := t.Router.Lookup(path, node.HTTP)
	if n == nil {
		return writeError(c, node.Errorf(node.CodeNotFound, "no such node: %s", path))
	}
	sid, status := t.credentials(c)
	switch status {
	case fiber.StatusForbidden:
		return writeError(c, node.Errorf(node.CodeForbidden, "cross-site request refused"))
	case fiber.StatusUnsupportedMediaType:
		return fiber.NewError(status, "a request carrying the session cookie must be Content-Type: application/json")
	}
	// Request().Body(), never c.Body(): the latter inflates compressed bodies.
	body := c.Request().Body()
	if len(body) == 0 {
		body = []byte("{}")
	} else if !utf8.Valid(body) || !json.Valid(body) {
		return writeError(c, node.Errorf(node.CodeBadFrame, "the body is not valid JSON"))
	}
	peer := &httpPeer{c: c, ip: t.clientIP(c), secure: t.Secure}
	if sid != "" {
		if s, err := t.Sessions.Get(c.UserContext(), sid); err == nil {
			peer.session = s
		}
	}
	result, err := t.Router.Call(&node.Context{Ctx: c.UserContext(), Node: n, Frame: wire.Frame{Path: path, Body: body}, Peer: peer})
	if err != nil {
		e, _ := node.AsError(err)
		return writeError(c, e)
	}
	out, err := node.EncodeResult(result)
	if err != nil {
		return writeError(c, node.Errorf(node.CodeInternal, "the result could not be encoded"))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Type("json")
	return c.Send(out)
}

// credentials finds the request's sid. A Bearer token is explicit and needs
// no Origin. A request from a browser (it carries the cookie, an Origin or
// Sec-Fetch-Site) must come from this origin (or an allowed one) and say it
// is JSON, which no cross-site form can: that keeps other sites from using
// the cookie, and from logging a visitor in to an account of theirs (login
// sets the cookie). A plain client such as curl sends none of those and is
// let through. status is 0, or the status that refuses the request: 403
// when it is cross-site, 415 when it does not say it is JSON.
func (t *HTTP) credentials(c *fiber.Ctx) (sid string, status int) {
	if auth := c.Get(fiber.HeaderAuthorization); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:]), 0
	}
	sid = c.Cookies(cookieName)
	if sid == "" && c.Get(fiber.HeaderOrigin) == "" && c.Get("Sec-Fetch-Site") == "" {
		return "", 0
	}
	if !originAllowed(c.Get(fiber.HeaderOrigin), c.Hostname(), t.Live.Load().AllowedOrigins) ||
		strings.EqualFold(c.Get("Sec-Fetch-Site"), "cross-site") {
		return "", fiber.StatusForbidden
	}
	if mediaType, _, _ := strings.Cut(c.Get(fiber.HeaderContentType), ";"); !strings.EqualFold(strings.TrimSpace(mediaType), fiber.MIMEApplicationJSON) {
		return "", fiber.StatusUnsupportedMediaType
	}
	return utils.CopyString(sid), 0
}

// errorHandler turns Fiber's own errors (404, 405, 413, 415, 431, ...) into
// the protocol's error body.
func errorHandler(c *fiber.Ctx, err error) error {
	status := fiber.StatusInternalServerError
	message := "the server failed"
	if fe, ok := err.(*fiber.Error); ok {
		status, message = fe.Code, fe.Message
	}
	code := node.CodeInternal
	switch status {
	case fiber.StatusNotFound, fiber.StatusMethodNotAllowed:
		code = node.CodeNotFound
	case fiber.StatusRequestEntityTooLarge:
		code = node.CodeTooLarge
	case fiber.StatusForbidden:
		code = node.CodeForbidden
	case fiber.StatusServiceUnavailable:
		code = node.CodeRateLimited
	default:
		if status >= 400 && status < 500 {
			code = node.CodeBadRequest
		}
	}
	c.Type("json")
	return c.Status(status).Send(wire.AppendErrorBody(nil, code, message, 0))
}

func writeError(c *fiber.Ctx, e *node.Error) error {
	if ms := e.RetryAfterMS(); ms > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.FormatInt((ms+999)/1000, 10))
	}
	c.Type("json")
	return c.Status(node.HTTPStatus(e.Code)).Send(wire.AppendErrorBody(nil, e.Code, e.Message, e.RetryAfterMS()))
}

// httpPeer is one HTTP request as a node.Peer: its session comes from the
// Bearer token or the cookie, and logging in or out sets the cookie.
type httpPeer struct {
	c       *fiber.Ctx
	ip      string
	session *model.Session
	secure  bool
}

func (p *httpPeer) Transport() node.Method  { return node.HTTP }
func (p *httpPeer) RemoteIP() string        { return p.ip }
func (p *httpPeer) Session() *model.Session { return p.session }

func (p *httpPeer) SetSession(s *model.Session) error {
	p.session = s
	cookie := &fiber.Cookie{Name: cookieName, Path: "/", HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, Secure: p.secure}
	if s != nil {
		cookie.Value, cookie.Expires = s.SID, s.Expires
	} else {
		cookie.Expires, cookie.MaxAge = time.Unix(0, 0), -1
	}
	p.c.Cookie(cookie)
	return nil
}

// clientIP is the address a request came from: the peer's own, unless the
// peer is a trusted proxy; then the right-most X-Forwarded-For entry that is
// not itself a trusted proxy (entries to its left are the client's word and
// are never believed).
func (o *Options) clientIP(c *fiber.Ctx) string {
	peer := c.Context().RemoteIP().String()
	if !o.trustedProxy(peer) {
		return peer
	}
	hops := strings.Split(c.Get(fiber.HeaderXForwardedFor), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		addr, err := netip.ParseAddr(hop)
		if err != nil {
			break
		}
		if !o.trustedProxy(addr.Unmap().String()) {
			return addr.Unmap().String()
		}
	}
	return peer
}

// trustedProxy reports whether ip is listed in trusted_proxies (addresses
// or CIDR prefixes).
func (o *Options) trustedProxy(ip string) bool {
	if len(o.TrustedProxies) == 0 {
		return false
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, t := range o.TrustedProxies {
		if prefix, err := netip.ParsePrefix(t); err == nil && prefix.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(t); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}
