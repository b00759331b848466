package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"dce/app/wire"
)

// FuzzDispatch (TESTPLAN Z2): random frames into the real router with a
// table that has every kind of node (one panics) and a fake peer. The input
// is split on newlines into the frames one connection sends; flags pick the
// transport and the session. For every frame: no panic escapes; a frame
// with an id gets exactly one reply, addressed PATH:ID; a frame without one
// gets nothing on success and error;{"path",...} on failure, with the same
// code the request with an id gets; every reply is a well-formed frame with
// a known code and no panic text; bad frames are exactly bad_frame and
// not_found; no goroutine is left behind. Seeds: testdata/fuzz/FuzzDispatch.
func FuzzDispatch(f *testing.F) {
	r := newTestRouter(io.Discard)
	transports := []Method{WebSocket, TCP, UDP, HTTP}
	f.Fuzz(func(t *testing.T, flags byte, data []byte) {
		goroutines := runtime.NumGoroutine()
		peer := &testPeer{transport: transports[flags&3]}
		switch (flags >> 2) & 3 {
		case 1:
			peer.session = session(2)
		case 2:
			peer.session = session(1) // admin
		}
		for _, frame := range bytes.Split(data, []byte("\n")) {
			checkDispatch(t, r, peer, frame)
		}
		// The fuzzing engine starts goroutines of its own now and then, so
		// a leak is a count that stays up, not a momentary one.
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(time.Second); n > goroutines && time.Now().Before(deadline); n = runtime.NumGoroutine() {
			time.Sleep(time.Millisecond)
		}
		if n > goroutines {
			t.Fatalf("goroutines %d -> %d", goroutines, n)
		}
	})
}

func checkDispatch(t *testing.T, r *Router, peer *testPeer, frame []byte) {
	t.Helper()
	reply, bad := r.Dispatch(context.Background(), peer, frame)
	parsed, parseErr := wire.Parse(frame, r.MaxFrame())

	if parseErr == nil && !parsed.HasID() {
		// The same request with an id tells what the call gave; without
		// the id, success is silence and failure is an error frame.
		withID := wire.AppendFrame(nil, parsed.Path, "fuzz", parsed.Body)
		if len(withID) > r.MaxFrame() || parsed.Path == "unencodable" {
			// Too big to ask again; or a node that succeeds with a result
			// JSON cannot hold, which only a request with an id reads (and
			// gets internal for).
			if reply != nil {
				errorFrameCode(t, reply, parsed.Path)
			}
			return
		}
		idReply, idBad := r.Dispatch(context.Background(), peer, withID)
		if idBad != bad {
			t.Fatalf("%q: bad %v, but with an id %v", frame, bad, idBad)
		}
		idCode := replyCode(t, idReply, parsed.Path, "fuzz")
		if idCode == "" {
			if reply != nil {
				t.Fatalf("%q: fire-and-forget success got a reply %q", frame, reply)
			}
			return
		}
		if reply == nil {
			t.Fatalf("%q: fire-and-forget failure (%s with an id) got no error frame", frame, idCode)
		}
		if code := errorFrameCode(t, reply, parsed.Path); code != idCode {
			t.Fatalf("%q: error frame code %q, with an id %q", frame, code, idCode)
		}
		return
	}
	if reply == nil {
		t.Fatalf("%q: no reply (parse error %v)", frame, parseErr)
	}
	var code string
	switch {
	case parseErr == nil: // a request with an id
		code = replyCode(t, reply, parsed.Path, parsed.ID)
	case parsed.ID != "": // refused, but addressed
		code = replyCode(t, reply, parsed.Path, parsed.ID)
	default:
		path := parsed.Path
		if path == "" {
			path = "error"
		}
		code = errorFrameCode(t, reply, path)
	}
	switch {
	case errors.Is(parseErr, wire.ErrTooLarge) && code != CodeTooLarge,
		parseErr != nil && !errors.Is(parseErr, wire.ErrTooLarge) && code != CodeBadFrame:
		t.Fatalf("%q: parse error %v answered with %q", frame, parseErr, code)
	}
	if wantBad := code == CodeBadFrame || code == CodeNotFound; bad != wantBad {
		t.Fatalf("%q: code %q but bad = %v", frame, code, bad)
	}
}

// replyCode checks that reply is PATH:ID;BODY and returns its error code,
// or "" for a success.
func replyCode(t *testing.T, reply []byte, path, id string) string {
	t.Helper()
	f := parseReply(t, reply)
	if f.Path != path || f.ID != id {
		t.Fatalf("reply %q is addressed %s:%s, want %s:%s", reply, f.Path, f.ID, path, id)
	}
	var body errorReply
	if json.Unmarshal(f.Body, &body) != nil || body.Error == nil {
		return ""
	}
	return checkCode(t, reply, body)
}

// errorFrameCode checks that reply is error;{"path":PATH,"error":{...}}
// and returns its code.
func errorFrameCode(t *testing.T, reply []byte, path string) string {
	t.Helper()
	f := parseReply(t, reply)
	var body errorReply
	if f.Path != "error" || f.ID != "" || json.Unmarshal(f.Body, &body) != nil || body.Path == nil || *body.Path != path || body.Error == nil {
		t.Fatalf("%q is not an error frame for path %q", reply, path)
	}
	return checkCode(t, reply, body)
}

func parseReply(t *testing.T, reply []byte) wire.Frame {
	t.Helper()
	f, err := wire.Parse(reply, 0)
	if err != nil {
		t.Fatalf("reply %q is not a frame: %v", reply, err)
	}
	if strings.Contains(string(reply), panicSecret) {
		t.Fatalf("reply %q leaks the panic", reply)
	}
	return f
}

func checkCode(t *testing.T, reply []byte, body errorReply) string {
	t.Helper()
	if !knownCodes[body.Error.Code] || body.Error.Message == "" {
		t.Fatalf("reply %q: code %q is not in PROTOCOL.md section 4, or has no message", reply, body.Error.Code)
	}
	return body.Error.Code
}
