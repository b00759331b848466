package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/servertest/syncbuf"
	"dce/app/wire"
)

// laterRouter is a router whose nodes return a Later with each outcome a
// Later can have; ran counts the Laters that have run.
func laterRouter(log io.Writer, ran *atomic.Int64) *Router {
	later := func(l Later) Handler {
		return func(c *Context) (any, error) {
			return Later(func() (any, error) {
				ran.Add(1)
				return l()
			}), nil
		}
	}
	type result struct {
		N int `json:"n"`
	}
	rows := []Node{
		{Path: "later/ok", Name: "finishes later", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			var req result
			if err := c.Bind(&req); err != nil {
				return nil, err // refused at once, before any Later
			}
			return Later(func() (any, error) {
				ran.Add(1)
				return result{req.N * 2}, nil
			}), nil
		}},
		{Path: "later/fail", Name: "fails later", Methods: Net, Auth: Public, Do: later(func() (any, error) {
			return nil, Errorf(CodeForbidden, "not now")
		})},
		{Path: "later/oops", Name: "fails unexpectedly later", Methods: Net, Auth: Public, Do: later(func() (any, error) {
			return nil, errors.New("disk on fire: " + panicSecret)
		})},
		{Path: "later/boom", Name: "panics later", Methods: Net, Auth: Public, Do: later(func() (any, error) {
			panic(panicSecret)
		})},
		{Path: "later/nil", Name: "nil result later", Methods: Net, Auth: Public, Do: later(func() (any, error) { return nil, nil })},
		{Path: "later/again", Name: "a Later that returns a Later", Methods: Net, Auth: Public, Do: later(func() (any, error) {
			return Later(func() (any, error) { return nil, nil }), nil
		})},
		{Path: "later/user", Name: "logged in, later", Methods: Net, Auth: User, Do: later(func() (any, error) {
			return result{1}, nil
		})},
	}
	return NewRouter(rows, RouterOptions{Log: slog.New(slog.NewTextHandler(log, nil)),
		Now: func() time.Time { return testNow }})
}

// dispatchLater runs DispatchLater and returns its reply, bad verdict and
// the finish funcs it handed out.
func dispatchLater(r *Router, peer Peer, frame string) (reply []byte, bad bool, finishes []func() []byte) {
	reply, bad = r.DispatchLater(context.Background(), peer, []byte(frame), func(finish func() []byte) {
		finishes = append(finishes, finish)
	})
	return reply, bad, finishes
}

// TestDispatchLater: a node's Later is handed to the connection unrun, with
// no reply now; its finish runs it and returns the frame Dispatch would
// have, errors and panics included.
func TestDispatchLater(t *testing.T) {
	var logs syncbuf.Buffer
	var ran atomic.Int64
	r := laterRouter(&logs, &ran)
	tests := []struct {
		name  string
		frame string
		reply string // the finish's frame, "" for nil; a prefix when it ends in "*"
	}{
		{"result", `later/ok:7;{"n":21}`, `later/ok:7;{"n":42}`},
		{"no id: nothing on success", `later/ok;{"n":1}`, ""},
		{"nil result with an id is {}", "later/nil:8", "later/nil:8;{}"},
		{"nil result without an id", "later/nil", ""},
		{"node error", "later/fail:9", `later/fail:9;{"error":{"code":"forbidden","message":"not now"}}`},
		{"node error without id", "later/fail", `error;{"path":"later/fail","error":{"code":"forbidden","message":"not now"}}`},
		{"unexpected error is internal", "later/oops:10", `later/oops:10;{"error":{"code":"internal",*`},
		{"panic is internal", "later/boom:11", `later/boom:11;{"error":{"code":"internal",*`},
		{"panic without id", "later/boom", `error;{"path":"later/boom","error":{"code":"internal",*`},
		{"a Later's Later is internal", "later/again:12", `later/again:12;{"error":{"code":"internal",*`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ran.Load()
			peer := &testPeer{transport: WebSocket}
			reply, bad, finishes := dispatchLater(r, peer, tt.frame)
			if reply != nil || bad {
				t.Fatalf("DispatchLater replied %q (bad %v) at once; a Later's reply comes from its finish", reply, bad)
			}
			if len(finishes) != 1 {
				t.Fatalf("later was called %d times, want once", len(finishes))
			}
			if ran.Load() != before {
				t.Fatal("the Later ran before its finish was called")
			}
			// The finish runs on another goroutine, as the hub runs it.
			done := make(chan []byte)
			go func() { done <- finishes[0]() }()
			got := string(<-done)
			if ran.Load() != before+1 {
				t.Fatalf("the finish ran the Later %d times, want once", ran.Load()-before)
			}
			if prefix, ok := strings.CutSuffix(tt.reply, "*"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Fatalf("finish gave %q, want %q...", got, prefix)
				}
			} else if got != tt.reply {
				t.Fatalf("finish gave %q, want %q", got, tt.reply)
			}
			if strings.Contains(got, panicSecret) || strings.Contains(got, "disk on fire") {
				t.Fatalf("the reply leaks the cause: %q", got)
			}
		})
	}
	for _, logged := range []string{"node panicked", "later_test.go", "disk on fire", "node's Later returned a Later"} {
		if !strings.Contains(logs.String(), logged) {
			t.Errorf("%q is not logged; logs: %s", logged, logs.String())
		}
	}
}

// TestDispatchLaterRefusedAtOnce: a request refused before its node
// returns a Later (a bad body, no login, a bad frame, no such node) is
// answered at once, and later is never called.
func TestDispatchLaterRefusedAtOnce(t *testing.T) {
	var ran atomic.Int64
	r := laterRouter(io.Discard, &ran)
	tests := []struct {
		frame string
		reply string // a prefix
		bad   bool
	}{
		{`later/ok:1;{"n":"x"}`, `later/ok:1;{"error":{"code":"bad_request",`, false},
		{"later/user:2", `later/user:2;{"error":{"code":"unauthorized",`, false},
		{"later/nosuch:3", `later/nosuch:3;{"error":{"code":"not_found",`, true},
		{"later/ok:4;{", `later/ok:4;{"error":{"code":"bad_frame",`, true},
	}
	for _, tt := range tests {
		reply, bad, finishes := dispatchLater(r, &testPeer{transport: TCP}, tt.frame)
		if !strings.HasPrefix(string(reply), tt.reply) || bad != tt.bad {
			t.Errorf("%s: reply %q bad %v, want %q... bad %v", tt.frame, reply, bad, tt.reply, tt.bad)
		}
		if len(finishes) != 0 {
			t.Errorf("%s: later was called for a refused request", tt.frame)
		}
	}
	if ran.Load() != 0 {
		t.Fatalf("%d Laters ran for refused requests", ran.Load())
	}
	// Logged in, the same node's Later is deferred.
	reply, _, finishes := dispatchLater(r, &testPeer{transport: TCP, session: session(2)}, "later/user:5")
	if reply != nil || len(finishes) != 1 {
		t.Fatalf("a logged-in call: reply %q, %d finishes", reply, len(finishes))
	}
	if got := string(finishes[0]()); got != `later/user:5;{"n":1}` {
		t.Fatalf("finish gave %q", got)
	}
}

// TestLaterRunsInline: without a later func (Dispatch, and Call as HTTP
// and UDP use them) a Later runs at once and its result is the reply.
func TestLaterRunsInline(t *testing.T) {
	var logs syncbuf.Buffer
	var ran atomic.Int64
	r := laterRouter(&logs, &ran)
	peer := &testPeer{transport: UDP}
	dispatch := []struct{ frame, reply string }{
		{`later/ok:1;{"n":5}`, `later/ok:1;{"n":10}`},
		{`later/ok;{"n":5}`, ""},
		{"later/fail:2", `later/fail:2;{"error":{"code":"forbidden","message":"not now"}}`},
		{"later/fail", `error;{"path":"later/fail","error":{"code":"forbidden","message":"not now"}}`},
		{"later/boom:3", `later/boom:3;{"error":{"code":"internal","message":"` + errInternal.Message + `"}}`},
	}
	for _, tt := range dispatch {
		reply, bad := r.Dispatch(context.Background(), peer, []byte(tt.frame))
		if string(reply) != tt.reply || bad {
			t.Errorf("Dispatch %s: %q (bad %v), want %q", tt.frame, reply, bad, tt.reply)
		}
	}
	if ran.Load() != int64(len(dispatch)) {
		t.Fatalf("Dispatch ran %d Laters, want %d", ran.Load(), len(dispatch))
	}

	call := func(path, body string) (any, error) {
		t.Helper()
		f, err := wire.Parse([]byte(path+";"+body), 0)
		if err != nil {
			t.Fatal(err)
		}
		return r.Call(&Context{Ctx: context.Background(), Node: r.Lookup(path, HTTP), Frame: f,
			Peer: &testPeer{transport: HTTP}})
	}
	result, err := call("later/ok", `{"n":4}`)
	if _, isLater := result.(Later); isLater || err != nil {
		t.Fatalf("Call returned %T, %v; want the Later's result", result, err)
	}
	if body, _ := EncodeResult(result); string(body) != `{"n":8}` {
		t.Fatalf("Call's result encodes as %s", body)
	}
	if _, err := call("later/fail", ""); err == nil || err.(*Error).Code != CodeForbidden {
		t.Fatalf("Call of a failing Later: %v", err)
	}
	for _, path := range []string{"later/boom", "later/oops", "later/again"} {
		result, err := call(path, "")
		if e, ok := AsError(err); !ok || e.Code != CodeInternal || result != nil {
			t.Fatalf("Call %s: %v, %v; want internal", path, result, err)
		}
	}
	if !strings.Contains(logs.String(), "node panicked") {
		t.Errorf("an inline Later's panic is not logged: %s", logs.String())
	}
}
