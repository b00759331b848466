package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"dce/app/wire"

	"github.com/go-json-experiment/json"
)

// AdminCheck tells whether a user is an admin now (roles can change while a
// session lives, so the router asks rather than trusting the session).
type AdminCheck func(ctx context.Context, userID int64) (bool, error)

// Router finds a node by path and runs it with the cross-cutting checks
// composed once around it: panic recovery, login, admin.
type Router struct {
	nodes    map[string]*Node
	isAdmin  AdminCheck
	log      *slog.Logger
	maxFrame int
	now      func() time.Time
}

// RouterOptions configure a Router.
type RouterOptions struct {
	IsAdmin  AdminCheck
	Log      *slog.Logger
	MaxFrame int // frame size limit; wire.DefaultMaxFrame when 0
	Now      func() time.Time
}

// NewRouter checks the table and builds the router. A duplicate path, a path
// outside the frame charset, a row with no methods, name or handler, or with
// no Auth (AuthUnset, after Group's defaults) panics: the table is code, and
// code that is wrong should not start.
func NewRouter(rows []Node, opts RouterOptions) *Router {
	r := &Router{nodes: make(map[string]*Node, len(rows)), isAdmin: opts.IsAdmin, log: opts.Log,
		maxFrame: opts.MaxFrame, now: opts.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.maxFrame <= 0 {
		r.maxFrame = wire.DefaultMaxFrame
	}
	if r.now == nil {
		r.now = time.Now
	}
	for i := range rows {
		row := rows[i]
		switch {
		case !wire.ValidPath([]byte(row.Path)):
			panic(fmt.Sprintf("node table: bad path %q", row.Path))
		case r.nodes[row.Path] != nil:
			panic(fmt.Sprintf("node table: duplicate path %q", row.Path))
		case row.Methods == 0 || row.Name == "" || row.Do == nil:
			panic(fmt.Sprintf("node table: %q needs methods, a name and a handler", row.Path))
		case row.Auth == AuthUnset:
			panic(fmt.Sprintf("node table: %q has no Auth (Public, User or Admin)", row.Path))
		case row.Auth > Admin:
			panic(fmt.Sprintf("node table: %q has an unknown %v", row.Path, row.Auth))
		case row.Auth == Admin && opts.IsAdmin == nil:
			panic(fmt.Sprintf("node table: %q needs an admin check", row.Path))
		}
		r.nodes[row.Path] = &row
	}
	return r
}

// MaxFrame is the frame size limit the router enforces.
func (r *Router) MaxFrame() int { return r.maxFrame }

// Lookup finds the node for path on method m, or nil.
func (r *Router) Lookup(path string, m Method) *Node {
	n := r.nodes[path]
	if n == nil || n.Methods&m == 0 {
		return nil
	}
	return n
}

// Dispatch is THE place a frame becomes a controller call. It parses raw,
// runs the node, and returns the frame to send back: the reply for a request
// with an id, an error frame for a failed request without one, or nil. bad
// reports a frame that did not parse or named no node, for the transports'
// bad-frame counters.
func (r *Router) Dispatch(ctx context.Context, peer Peer, raw []byte) (reply []byte, bad bool) {
	return r.DispatchLater(ctx, peer, raw, nil)
}

// DispatchLater is Dispatch for a connection that can finish requests
// later: when the node returns a Later, later is given a function that runs
// it and returns the reply (nil for a request without an id), and the
// returned reply is nil. A nil later runs a Later at once. The caller may
// reuse raw as soon as DispatchLater returns: nothing the deferred function
// holds aliases it.
func (r *Router) DispatchLater(ctx context.Context, peer Peer, raw []byte, later func(finish func() []byte)) (reply []byte, bad bool) {
	f, err := wire.Parse(raw, r.maxFrame)
	if err != nil {
		code := CodeBadFrame
		if errors.Is(err, wire.ErrTooLarge) {
			code = CodeTooLarge
		}
		return wire.AppendError(nil, pathOrError(f.Path), f.ID, code, err.Error(), 0), code == CodeBadFrame
	}
	n := r.Lookup(f.Path, peer.Transport())
	if n == nil {
		return wire.AppendError(nil, f.Path, f.ID, CodeNotFound, "no such node: "+f.Path, 0), true
	}
	c := &Context{Ctx: ctx, Node: n, Frame: f, Peer: peer}
	result, err := r.call(c, later != nil)
	if l, ok := result.(Later); ok && err == nil {
		// The Later runs after this returns, when the transport has reused
		// raw for its next frame; it holds c, so c's body must not be a
		// slice of raw any more. (Path and ID are strings Parse copied.)
		c.Frame.Body = bytes.Clone(f.Body)
		later(func() []byte {
			result, err := r.finish(c, l)
			return r.reply(f, result, err)
		})
		return nil, false
	}
	return r.reply(f, result, err), false
}

// reply is the frame that answers f: an error frame, the result for a
// request with an id, or nil.
func (r *Router) reply(f wire.Frame, result any, err error) []byte {
	if err != nil {
		e, _ := AsError(err)
		return wire.AppendError(nil, f.Path, f.ID, e.Code, e.Message, e.RetryAfterMS())
	}
	if !f.HasID() {
		return nil
	}
	return r.appendResult(wire.AppendHead(nil, f.Path, f.ID), f, result)
}

func pathOrError(p string) string {
	if p == "" {
		return "error"
	}
	return p
}

// appendResult appends the encoded result; a result that cannot be encoded
// turns into an internal error frame instead.
func (r *Router) appendResult(dst []byte, f wire.Frame, result any) []byte {
	if a, ok := result.(JSONAppender); ok {
		return a.AppendJSON(dst) // straight into the frame: no body buffer to copy
	}
	body, err := EncodeResult(result)
	if err != nil {
		r.log.Error("encode result", "path", f.Path, "err", err)
		return wire.AppendError(nil, f.Path, f.ID, CodeInternal, errInternal.Message, 0)
	}
	return append(dst, body...)
}

// JSONAppender is a result that encodes itself, without reflection, as
// json.Marshal would: for the results of the busiest nodes.
type JSONAppender interface {
	AppendJSON(dst []byte) []byte
}

// EncodeResult encodes a node's result as JSON: {} for nil, RawJSON as is,
// a JSONAppender by itself.
func EncodeResult(result any) ([]byte, error) {
	switch v := result.(type) {
	case nil:
		return []byte("{}"), nil
	case RawJSON:
		return v, nil
	case JSONAppender:
		return v.AppendJSON(make([]byte, 0, 128)), nil
	}
	return json.Marshal(result, json.Deterministic(false))
}

// Call runs c.Node with the login and admin checks and panic recovery. The
// error, if any, is an *Error; an unexpected one is logged here with its
// cause and comes back as internal.
func (r *Router) Call(c *Context) (result any, err error) {
	return r.call(c, false)
}

// call is Call; with keepLater a Later result is returned unrun.
func (r *Router) call(c *Context, keepLater bool) (result any, err error) {
	if c.Now.IsZero() {
		c.Now = r.now()
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("node panicked", "path", c.Node.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			result, err = nil, errInternal
		}
	}()
	if err := r.authorize(c); err != nil {
		if _, ok := AsError(err); !ok { // the admin check failed: log the cause once, as for a node
			r.log.Error("authorize failed", "path", c.Node.Path, "err", err)
			return nil, errInternal
		}
		return nil, err
	}
	result, err = c.Node.Do(c)
	if l, ok := result.(Later); ok && err == nil && !keepLater {
		return r.finish(c, l)
	}
	return result, r.checkError(c, err)
}

// finish runs a node's Later with the same panic recovery and error
// handling as the node itself.
func (r *Router) finish(c *Context, l Later) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("node panicked", "path", c.Node.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			result, err = nil, errInternal
		}
	}()
	result, err = l()
	if _, ok := result.(Later); ok && err == nil {
		r.log.Error("node's Later returned a Later", "path", c.Node.Path)
		return nil, errInternal
	}
	return result, r.checkError(c, err)
}

// checkError logs an unexpected error and turns it into internal.
func (r *Router) checkError(c *Context, err error) error {
	if err != nil {
		if _, ok := AsError(err); !ok {
			r.log.Error("node failed", "path", c.Node.Path, "err", err)
			return errInternal
		}
	}
	return err
}

func (r *Router) authorize(c *Context) error {
	if c.Node.Auth == Public {
		return nil
	}
	s := c.Peer.Session()
	if s == nil {
		return ErrUnauthorized
	}
	if !c.Now.Before(s.Expires) {
		_ = c.Peer.SetSession(nil)
		return &Error{Code: CodeUnauthorized, Message: "the session has expired; log in again"}
	}
	if c.Node.Auth == Admin {
		ok, err := r.isAdmin(c.Ctx, s.UserID)
		if err != nil {
			return err
		}
		if !ok {
			return &Error{Code: CodeForbidden, Message: "admins only"}
		}
	}
	return nil
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
