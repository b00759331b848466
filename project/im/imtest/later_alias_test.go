package imtest

import (
	"strings"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/node"
	"dce/app/servertest"
)

// A deferred request reads its frame after the transport has read the
// next one into the same buffer (the WebSocket reader's pooled buffer, the
// TCP line buffer): the Later must still see its own body. The test node's
// Later waits until the connection has answered a later frame of the same
// length, then binds its body and echoes it. Over TCP the next line is
// always read into the same buffer; over WebSocket the pooled buffer comes
// back to this reader only when the pool hands it back on the same P, so
// that half catches the aliasing only now and then (and -race then).
func TestDeferredRequestKeepsItsBody(t *testing.T) {
	type echo struct {
		Text string `json:"text"`
	}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	extra := []node.Node{
		{Path: "test/later-echo", Name: "Echoes its body once released (test only)", Methods: node.WebSocket | node.TCP, Auth: node.Public,
			Do: func(c *node.Context) (any, error) {
				entered <- struct{}{}
				return node.Later(func() (any, error) {
					<-release
					var req echo
					if err := c.Bind(&req); err != nil {
						return nil, err
					}
					return req, nil
				}), nil
			}},
	}
	s := servertest.StartConfig(t, servertest.Config(t), boot.Options{ExtraNodes: extra})
	for _, transport := range []string{"websocket", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			var c *servertest.Client
			if transport == "websocket" {
				c = s.DialWS(t, "", nil)
			} else {
				c = s.DialTCP(t)
			}
			text := strings.Repeat("a", 200)
			replied := make(chan servertest.Frame, 1)
			go func() {
				f, err := c.TryRequest("test/later-echo", echo{text}, servertest.DefaultTimeout)
				if err != nil {
					t.Error(err)
				}
				replied <- f
			}()
			select {
			case <-entered:
			case <-time.After(servertest.DefaultTimeout):
				t.Fatal("the node never ran")
			}
			// The same length again, other bytes: read into the buffer the
			// first frame came in, while its Later waits.
			c.OK("ping", map[string]string{"text": strings.Repeat("Z", 200)}, nil)
			release <- struct{}{}
			f := <-replied
			var got echo
			if f.ErrorCode() != "" {
				t.Fatalf("the deferred request failed: %s", f.Body)
			}
			f.Decode(t, &got)
			if got.Text != text {
				t.Fatalf("the deferred request saw %q, want its own body's %q", got.Text, text)
			}
		})
	}
}
