package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/wire"
	"dce/common/model"
)

// testPeer is a connection as a node sees it: a transport, an address and
// a session.
type testPeer struct {
	transport Method
	mu        sync.Mutex
	session   *model.Session
	sets      int
}

func (p *testPeer) Transport() Method { return p.transport }
func (p *testPeer) RemoteIP() string  { return "127.0.0.1" }
func (p *testPeer) Session() *model.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.session
}
func (p *testPeer) SetSession(s *model.Session) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.session = s
	p.sets++
	return nil
}

const panicSecret = "panic text that must not reach a client"

// testNodes is a small table with every kind of outcome a node can have.
func testNodes() []Node {
	type echo struct {
		A string `json:"a"`
		N int    `json:"n"`
	}
	return []Node{
		{Path: "ping", Name: "ping", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return struct {
				TS int64 `json:"ts"`
			}{c.Now.UnixMilli()}, nil
		}},
		{Path: "echo", Name: "echo", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			var req echo
			if err := c.Bind(&req); err != nil {
				return nil, err
			}
			return req, nil
		}},
		{Path: "boom", Name: "panics", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) { panic(panicSecret) }},
		{Path: "fail", Name: "fails", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return nil, Errorf(CodeBadRequest, "no good")
		}},
		{Path: "oops", Name: "fails unexpectedly", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return nil, errors.New("disk on fire: " + panicSecret)
		}},
		{Path: "slow-down", Name: "rate limited", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return nil, RateLimited(1500*time.Millisecond, "later")
		}},
		{Path: "nothing", Name: "returns nil", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) { return nil, nil }},
		{Path: "raw", Name: "raw JSON", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) { return RawJSON(`{"raw":true}`), nil }},
		{Path: "unencodable", Name: "a result JSON cannot hold", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return map[string]any{"f": func() {}}, nil
		}},
		{Path: "tcp/only", Name: "TCP only", Methods: TCP, Auth: Public, Do: func(c *Context) (any, error) { return nil, nil }},
		{Path: "need/user", Name: "logged in", Methods: Net, Auth: User, Do: func(c *Context) (any, error) {
			return struct {
				User int64 `json:"user"`
			}{c.UserID()}, nil
		}},
		{Path: "need/admin", Name: "admin", Methods: Net, Auth: Admin, Do: func(c *Context) (any, error) { return nil, nil }},
	}
}

var testNow = time.UnixMilli(1763800000123)

func newTestRouter(log io.Writer) *Router {
	return NewRouter(testNodes(), RouterOptions{
		IsAdmin: func(ctx context.Context, user int64) (bool, error) {
			if user == 3 {
				return false, errors.New("store down")
			}
			return user == 1, nil
		},
		Log: slog.New(slog.NewTextHandler(log, nil)),
		Now: func() time.Time { return testNow },
	})
}

func session(user int64) *model.Session {
	return &model.Session{SID: "sid", UserID: user, Expires: testNow.Add(time.Hour)}
}

// TestDispatch: each kind of frame and outcome gives the reply PROTOCOL.md
// section 1 describes, and the right bad-frame verdict.
func TestDispatch(t *testing.T) {
	var logs strings.Builder
	r := newTestRouter(&logs)
	tests := []struct {
		name    string
		frame   string
		session *model.Session
		reply   string // exact reply, "" for none; a prefix when it ends in "*"
		bad     bool
	}{
		{"request", "ping:1", nil, `ping:1;{"ts":1763800000123}`, false},
		{"fire-and-forget success", "ping", nil, "", false},
		{"fire-and-forget success with nil result", "nothing", nil, "", false},
		{"nil result with an id is {}", "nothing:2", nil, "nothing:2;{}", false},
		{"raw JSON result", "raw:3", nil, `raw:3;{"raw":true}`, false},
		{"bind", `echo:4;{"a":"x","n":2,"extra":[1]}`, nil, `echo:4;{"a":"x","n":2}`, false},
		{"bind is case-sensitive", `echo:5;{"A":"x"}`, nil, `echo:5;{"a":"","n":0}`, false},
		{"bind refuses duplicate keys", `echo:6;{"a":"x","a":"y"}`, nil, `echo:6;{"error":{"code":"bad_request",*`, false},
		{"bind refuses a wrong type", `echo:7;{"n":"7"}`, nil, `echo:7;{"error":{"code":"bad_request","message":"field n *`, false},
		{"bind refuses an overflow", `echo:8;{"n":1e400}`, nil, `echo:8;{"error":{"code":"bad_request",*`, false},
		{"bind refuses a lone surrogate", `echo:9;{"a":"\ud800"}`, nil, `echo:9;{"error":{"code":"bad_request",*`, false},
		{"bind of a non-object", `echo:10;[1]`, nil, `echo:10;{"error":{"code":"bad_request",*`, false},
		{"node error", "fail:11", nil, `fail:11;{"error":{"code":"bad_request","message":"no good"}}`, false},
		{"node error without id", "fail", nil, `error;{"path":"fail","error":{"code":"bad_request","message":"no good"}}`, false},
		{"rate limited carries retry_after_ms", "slow-down:12", nil, `slow-down:12;{"error":{"code":"rate_limited","message":"later","retry_after_ms":1500}}`, false},
		{"unexpected error is internal", "oops:13", nil, `oops:13;{"error":{"code":"internal",*`, false},
		{"panic is internal", "boom:14", nil, `boom:14;{"error":{"code":"internal",*`, false},
		{"panic without id", "boom", nil, `error;{"path":"boom","error":{"code":"internal",*`, false},
		{"unencodable result is internal", "unencodable:15", nil, `unencodable:15;{"error":{"code":"internal",*`, false},
		{"unencodable result without id is silent", "unencodable", nil, "", false},
		{"unknown node", "nosuch:16", nil, `nosuch:16;{"error":{"code":"not_found",*`, true},
		{"node of another transport", "tcp/only:17", nil, `tcp/only:17;{"error":{"code":"not_found",*`, true},
		{"unknown node without id", "nosuch", nil, `error;{"path":"nosuch","error":{"code":"not_found",*`, true},
		{"bad path", "Nope:18", nil, `error;{"path":"error","error":{"code":"bad_frame",*`, true},
		{"bad id", "ping:a.b", nil, `error;{"path":"ping","error":{"code":"bad_frame",*`, true},
		{"bad body with id", "ping:19;{", nil, `ping:19;{"error":{"code":"bad_frame",*`, true},
		{"bad body without id", "ping;{", nil, `error;{"path":"ping","error":{"code":"bad_frame",*`, true},
		{"invalid UTF-8 body", "ping:20;\"\xff\"", nil, `ping:20;{"error":{"code":"bad_frame",*`, true},
		{"empty frame", "", nil, `error;{"path":"error","error":{"code":"bad_frame",*`, true},
		{"too large is not a bad frame", "ping:21;" + `"` + strings.Repeat("x", wire.DefaultMaxFrame) + `"`, nil, `ping:21;{"error":{"code":"too_large",*`, false},
		{"login needed", "need/user:22", nil, `need/user:22;{"error":{"code":"unauthorized",*`, false},
		{"logged in", "need/user:23", session(2), `need/user:23;{"user":2}`, false},
		{"expired session", "need/user:24", &model.Session{UserID: 2, Expires: testNow}, `need/user:24;{"error":{"code":"unauthorized","message":"the session has expired; log in again"}}`, false},
		{"admin needed", "need/admin:25", session(2), `need/admin:25;{"error":{"code":"forbidden",*`, false},
		{"admin", "need/admin:26", session(1), `need/admin:26;{}`, false},
		{"admin check fails", "need/admin:27", session(3), `need/admin:27;{"error":{"code":"internal",*`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := &testPeer{transport: WebSocket, session: tt.session}
			reply, bad := r.Dispatch(context.Background(), peer, []byte(tt.frame))
			got := string(reply)
			if prefix, ok := strings.CutSuffix(tt.reply, "*"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Fatalf("reply %q, want %q...", got, prefix)
				}
			} else if got != tt.reply {
				t.Fatalf("reply %q, want %q", got, tt.reply)
			}
			if bad != tt.bad {
				t.Fatalf("bad = %v, want %v", bad, tt.bad)
			}
			if strings.Contains(got, panicSecret) || strings.Contains(got, "disk on fire") {
				t.Fatalf("the reply leaks the cause: %q", got)
			}
		})
	}
	if !strings.Contains(logs.String(), "node panicked") || !strings.Contains(logs.String(), "router_test.go") {
		t.Errorf("a panic is logged with its stack; logs: %s", logs.String())
	}
	for _, cause := range []string{"disk on fire", "store down"} { // an internal error's cause is logged
		if !strings.Contains(logs.String(), cause) {
			t.Errorf("the cause %q of an internal error is not logged; logs: %s", cause, logs.String())
		}
	}
	// An expired session is dropped from the peer.
	peer := &testPeer{transport: TCP, session: &model.Session{UserID: 2, Expires: testNow.Add(-time.Second)}}
	r.Dispatch(context.Background(), peer, []byte("need/user:x"))
	if peer.Session() != nil || peer.sets != 1 {
		t.Fatalf("an expired session was not dropped: %+v, %d sets", peer.Session(), peer.sets)
	}
}

// TestNewRouterRefusesBadTables: a wrong table panics at startup.
func TestNewRouterRefusesBadTables(t *testing.T) {
	ok := func(*Context) (any, error) { return nil, nil }
	tables := map[string][]Node{
		"duplicate path":   {{Path: "a", Name: "a", Methods: Net, Auth: Public, Do: ok}, {Path: "a", Name: "b", Methods: TCP, Auth: Public, Do: ok}},
		"bad path":         {{Path: "A", Name: "a", Methods: Net, Auth: Public, Do: ok}},
		"empty path":       {{Path: "", Name: "a", Methods: Net, Auth: Public, Do: ok}},
		"leading slash":    {{Path: "/a", Name: "a", Methods: Net, Auth: Public, Do: ok}},
		"no methods":       {{Path: "a", Name: "a", Auth: Public, Do: ok}},
		"no name":          {{Path: "a", Methods: Net, Auth: Public, Do: ok}},
		"no handler":       {{Path: "a", Name: "a", Methods: Net, Auth: Public}},
		"no admin checker": {{Path: "a", Name: "a", Methods: Net, Auth: Admin, Do: ok}},
	}
	for name, rows := range tables {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("NewRouter accepted the table")
				}
			}()
			NewRouter(rows, RouterOptions{})
		})
	}
}

// TestNewRouterRefusesMissingAuth: a row that says nothing of Auth, alone
// or in a group whose parent says nothing either, panics at construction
// with a message naming its path; a row in a group with an Auth inherits
// it, and one that says Public stays public.
func TestNewRouterRefusesMissingAuth(t *testing.T) {
	ok := func(*Context) (any, error) { return nil, nil }
	for name, c := range map[string]struct {
		rows []Node
		path string
	}{
		"alone": {[]Node{{Path: "a", Name: "a", Methods: Net, Auth: Public, Do: ok}, {Path: "forgot", Name: "b", Methods: Net, Do: ok}}, "forgot"},
		"in a group without one": {Group(Node{Path: "im", Methods: Net},
			Node{Path: "send", Name: "send", Auth: User, Do: ok}, Node{Path: "load", Name: "load", Do: ok}), "im/load"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil {
					t.Fatal("NewRouter accepted a row with no Auth")
				}
				if msg := fmt.Sprint(p); !strings.Contains(msg, fmt.Sprintf("%q", c.path)) || !strings.Contains(msg, "Auth") {
					t.Fatalf("panic %q does not name %q and Auth", msg, c.path)
				}
			}()
			NewRouter(c.rows, RouterOptions{})
		})
	}
	rows := Group(Node{Path: "im", Methods: Net, Auth: User},
		Node{Path: "send", Name: "send", Do: ok},
		Node{Path: "hello", Name: "hello", Auth: Public, Do: ok},
	)
	r := NewRouter(rows, RouterOptions{})
	if got := r.Lookup("im/send", WebSocket).Auth; got != User {
		t.Errorf("im/send: Auth %v, want the group's user", got)
	}
	if got := r.Lookup("im/hello", WebSocket).Auth; got != Public {
		t.Errorf("im/hello: Auth %v, want the row's own public", got)
	}
	if reply, _ := r.Dispatch(context.Background(), &testPeer{transport: WebSocket}, []byte("im/send:1")); !strings.Contains(string(reply), CodeUnauthorized) {
		t.Errorf("im/send anonymous: %s, want unauthorized", reply)
	}
	if reply, _ := r.Dispatch(context.Background(), &testPeer{transport: WebSocket}, []byte("im/hello:1")); string(reply) != "im/hello:1;{}" {
		t.Errorf("im/hello anonymous: %s, want im/hello:1;{}", reply)
	}
}

func TestGroup(t *testing.T) {
	ok := func(*Context) (any, error) { return nil, nil }
	rows := Group(Node{Path: "im", Methods: Net, Auth: User},
		Node{Path: "send", Name: "send", Do: ok},
		Node{Path: "tcp", Name: "tcp", Methods: TCP, Auth: Admin, Do: ok},
	)
	if rows[0].Path != "im/send" || rows[0].Methods != Net || rows[0].Auth != User {
		t.Fatalf("row 0: %+v", rows[0])
	}
	if rows[1].Path != "im/tcp" || rows[1].Methods != TCP || rows[1].Auth != Admin {
		t.Fatalf("row 1: %+v", rows[1])
	}
	r := NewRouter(rows, RouterOptions{IsAdmin: func(context.Context, int64) (bool, error) { return false, nil }})
	if r.Lookup("im/send", HTTP) == nil || r.Lookup("im/tcp", UDP) != nil || r.Lookup("im/tcp", TCP) == nil {
		t.Fatal("Lookup does not follow the methods")
	}
	if got := (WebSocket | UDP | CLI).String(); got != "websocket,udp,cli" {
		t.Fatalf("Method.String() = %q", got)
	}
	if table := r.Table(); len(table) != 2 || table[0].Path != "im/send" {
		t.Fatalf("Table() = %+v", table)
	}
}

// TestHTTPStatus is PROTOCOL.md section 4's table.
func TestHTTPStatus(t *testing.T) {
	want := map[string]int{CodeBadFrame: 400, CodeBadRequest: 400, CodeUnauthorized: 401, CodeAuthFailed: 401,
		CodeForbidden: 403, CodeNotFound: 404, CodeTooLarge: 413, CodeRateLimited: 429, CodeInternal: 500, "made-up": 500}
	for code, status := range want {
		if got := HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, status)
		}
	}
	if ms := RateLimited(time.Microsecond, "x").RetryAfterMS(); ms != 1 {
		t.Errorf("a retry under a millisecond is %d ms, want 1", ms)
	}
	if e, ok := AsError(errors.New("x")); ok || e.Code != CodeInternal {
		t.Errorf("AsError(plain) = %v, %v", e, ok)
	}
	wrapped := errors.Join(errors.New("context"), Errorf(CodeForbidden, "no"))
	if e, ok := AsError(wrapped); !ok || e.Code != CodeForbidden {
		t.Errorf("AsError(wrapped) = %v, %v", e, ok)
	}
}

// errorReply is the body of an error reply or error frame.
type errorReply struct {
	Path  *string `json:"path"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var knownCodes = map[string]bool{CodeBadFrame: true, CodeBadRequest: true, CodeUnauthorized: true, CodeAuthFailed: true,
	CodeForbidden: true, CodeNotFound: true, CodeTooLarge: true, CodeRateLimited: true, CodeInternal: true}

// BenchmarkDispatch is the hot path of every frame: parse, look up, bind,
// run, encode.
func BenchmarkDispatch(b *testing.B) {
	r := newTestRouter(io.Discard)
	peer := &testPeer{transport: WebSocket}
	frame := []byte(`echo:c-81;{"a":"hello, how is everyone today?","n":81}`)
	b.ReportAllocs()
	for b.Loop() {
		if reply, _ := r.Dispatch(context.Background(), peer, frame); reply == nil {
			b.Fatal("no reply")
		}
	}
}
