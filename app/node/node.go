// Package node is the node table and the router: the place where a frame
// (or an HTTP request, or a command line) becomes a controller call.
//
// A Node is one row of Dce's nodes.php in typed Go: a path, the transports
// ("methods") it serves, a name for `dce help`, whether it needs a login or
// an admin, and the controller method that runs it. The table is checked
// when the program starts; a bad row panics then, never when a client calls.
package node

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"dce/app/wire"
	"dce/common/model"

	"github.com/go-json-experiment/json"
)

// Method is a transport a node can be reached over; a node serves a set.
type Method uint8

const (
	WebSocket Method = 1 << iota
	TCP
	UDP
	HTTP
	CLI

	// Net is every network transport: what most chat nodes serve.
	Net = WebSocket | TCP | UDP | HTTP
)

var methodNames = []struct {
	m    Method
	name string
}{{WebSocket, "websocket"}, {TCP, "tcp"}, {UDP, "udp"}, {HTTP, "http"}, {CLI, "cli"}}

// String lists the methods in m, comma separated.
func (m Method) String() string {
	var names []string
	for _, mn := range methodNames {
		if m&mn.m != 0 {
			names = append(names, mn.name)
		}
	}
	return strings.Join(names, ",")
}

// Auth is what a caller must be to run a node. Its zero value is
// AuthUnset, which the router refuses: a row that forgets its Auth stops
// the program at start instead of serving everyone.
type Auth uint8

const (
	AuthUnset Auth = iota // the row did not say; never valid in a router
	Public                // anyone, logged in or not
	User                  // a logged-in session
	Admin                 // a logged-in admin
)

func (a Auth) String() string {
	switch a {
	case Public:
		return "public"
	case User:
		return "user"
	case Admin:
		return "admin"
	case AuthUnset:
		return "unset"
	}
	return fmt.Sprintf("Auth(%d)", uint8(a))
}

// Handler runs a node. Its result is encoded as JSON (RawJSON as is); nil
// means {} for a request with an id and nothing at all for one without.
type Handler func(*Context) (any, error)

// RawJSON is a result that is already encoded.
type RawJSON []byte

// Node is one row of the node table.
type Node struct {
	Path    string
	Name    string
	Methods Method
	Auth    Auth
	Do      Handler
}

// Group gives rows the defaults of a parent row, as Dce's nested node
// declarations do: a path prefix, and Methods and Auth where a row leaves
// them zero. A row's own Auth, Public included, wins over the parent's; a
// row with none under a parent with none stays AuthUnset, and the router
// refuses it.
func Group(parent Node, rows ...Node) []Node {
	out := make([]Node, len(rows))
	for i, row := range rows {
		if parent.Path != "" {
			row.Path = parent.Path + "/" + row.Path
		}
		if row.Methods == 0 {
			row.Methods = parent.Methods
		}
		if row.Auth == AuthUnset {
			row.Auth = parent.Auth
		}
		out[i] = row
	}
	return out
}

// Peer is the connection a call came in on, as a controller sees it.
type Peer interface {
	// Transport is the method the peer speaks.
	Transport() Method
	// RemoteIP is the client's address, after the trusted-proxy rule.
	RemoteIP() string
	// Session is the logged-in session, or nil.
	Session() *model.Session
	// SetSession logs the connection in to s, or out with nil. It fails
	// when the user is over their connection cap.
	SetSession(s *model.Session) error
}

// Context is one call of a node. Controllers keep per-call state here, not
// in their own fields.
type Context struct {
	Ctx   context.Context
	Node  *Node
	Frame wire.Frame // Body is valid during the call (see Later for after)
	Peer  Peer
	Now   time.Time

	// Args and Out are the command line's arguments and output (CLI only).
	Args []string
	Out  io.Writer
}

// Later is a result a node returns before its work is done (a message
// waiting for its commit). Over WebSocket and TCP the connection reads its
// next frame at once and the Later runs afterwards, the Laters of one
// connection one after another in the order their requests came; its
// result is the reply. Elsewhere it runs at once, as if returned directly.
//
// By the time a deferred Later runs, the transport has reused the buffer
// the frame was read into. The router gives the Context a copy of the body
// when it defers, so a Later may read c.Frame or call c.Bind; it must not
// keep a slice of the body it took itself before returning (bind into a
// value in the node, or read c.Frame.Body inside the Later).
type Later func() (any, error)

// Session is the caller's session; nodes with Auth User or Admin may rely on
// it being non-nil.
func (c *Context) Session() *model.Session { return c.Peer.Session() }

// UserID is the caller's user id, or 0 when not logged in.
func (c *Context) UserID() int64 {
	if s := c.Peer.Session(); s != nil {
		return s.UserID
	}
	return 0
}

// Bind decodes the frame's body into v, a pointer to a struct. Field names
// match exactly (case-sensitive), duplicate names and invalid UTF-8 are
// refused, and unknown fields are ignored so that older servers accept newer
// clients. Failures are bad_request.
func (c *Context) Bind(v any) error {
	if err := json.Unmarshal(c.Frame.Body, v); err != nil {
		return &Error{Code: CodeBadRequest, Message: bindMessage(err)}
	}
	return nil
}

// bindMessage turns a decoding error into a message fit for a client,
// naming the field when it can.
func bindMessage(err error) string {
	var se *json.SemanticError
	if errorsAs(err, &se) && se.JSONPointer != "" {
		return fmt.Sprintf("field %s has the wrong type or value", strings.TrimPrefix(string(se.JSONPointer), "/"))
	}
	return "body is not valid for this node"
}

// Table is the whole node table, sorted by path, for `dce help`.
func (r *Router) Table() []Node {
	out := make([]Node, 0, len(r.nodes))
	for _, n := range r.nodes {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
