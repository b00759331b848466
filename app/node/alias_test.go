package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
)

// TestDeferredPartOutlivesTheReadBuffer: the transports reuse the buffer a
// frame was read into as soon as DispatchLater returns (the WebSocket
// reader's pooled buffer, the TCP line buffer), while a deferred request's
// Later runs afterwards. A Later that reads its frame (binds the body, or
// returns it) sees the frame as it came, not what the buffer holds by then.
func TestDeferredPartOutlivesTheReadBuffer(t *testing.T) {
	type echo struct {
		Text string `json:"text"`
	}
	rows := []Node{
		{Path: "later/bind", Name: "binds its body later", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return Later(func() (any, error) {
				var req echo
				if err := c.Bind(&req); err != nil {
					return nil, err
				}
				return req, nil
			}), nil
		}},
		{Path: "later/raw", Name: "returns its body later", Methods: Net, Auth: Public, Do: func(c *Context) (any, error) {
			return Later(func() (any, error) { return RawJSON(c.Frame.Body), nil }), nil
		}},
	}
	r := NewRouter(rows, RouterOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, frame := range []string{`later/bind:1;{"text":"the original text"}`, `later/raw:2;{"text":"the original text"}`} {
		buf := []byte(frame)
		var finishes []func() []byte
		reply, _ := r.DispatchLater(context.Background(), &testPeer{transport: TCP}, buf, func(finish func() []byte) {
			finishes = append(finishes, finish)
		})
		if reply != nil || len(finishes) != 1 {
			t.Fatalf("%s: reply %q and %d finishes, want none and one", frame, reply, len(finishes))
		}
		// The transport reads its next frame into the same buffer.
		copy(buf, bytes.Repeat([]byte("Z"), len(buf)))
		head, _, _ := bytes.Cut([]byte(frame), []byte(";"))
		want := string(head) + `;{"text":"the original text"}`
		if got := string(finishes[0]()); got != want {
			t.Errorf("deferred %s after its buffer was reused: %q, want %q", frame, got, want)
		}
	}
}
