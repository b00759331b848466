package imtest

// Pipelined sends over a real server: a WebSocket or TCP connection writes
// im/send after im/send without waiting for replies (the deferred-result
// path: the reader queues each message for the store in order and goes on;
// the commit wait, the push and the reply follow on the connection's own
// deferred queue).

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// pipeWait bounds the wait for a whole pipeline's replies and pushes.
const pipeWait = 20 * time.Second

// pipeMessage is the part of an im/message push or an im/load message the
// pipeline tests look at.
type pipeMessage struct {
	ID   int64  `json:"id"`
	Text string `json:"text"`
	CID  string `json:"cid"`
	Conv string `json:"conv"`
	From struct {
		ID int64 `json:"id"`
	} `json:"from"`
}

// pipeReply is an im/send reply.
type pipeReply struct {
	ID   int64  `json:"id"`
	TS   int64  `json:"ts"`
	CID  string `json:"cid"`
	Conv string `json:"conv"`
}

// pipeStart runs a server whose send rate limit a pipeline does not reach.
func pipeStart(t *testing.T) *servertest.Server {
	return servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 100000, 100000
	})
}

// pipeText is the text of a pipeline's i-th message.
func pipeText(tag string, i int) string { return fmt.Sprintf("%s pipelined %d", tag, i) }

// pipeSend writes n im/send requests with ids 1..n to room:lobby, one
// frame each, without waiting for any reply.
func pipeSend(t *testing.T, c *servertest.Client, tag string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		frame := fmt.Sprintf(`im/send:%d;{"to":"room:lobby","text":%q,"cid":"%s-%d"}`, i, pipeText(tag, i), tag, i)
		if err := c.Raw(frame); err != nil {
			t.Fatalf("write send %d: %v", i, err)
		}
	}
}

// pipeFrames waits until c has received n frames with path (not taken by a
// waiter) and returns them in arrival order; it fails if more arrive within
// a short quiet period after.
func pipeFrames(t *testing.T, c *servertest.Client, path string, n int) []servertest.Frame {
	t.Helper()
	matching := func() []servertest.Frame {
		var out []servertest.Frame
		for _, f := range c.Pushes() {
			if f.Path == path {
				out = append(out, f)
			}
		}
		return out
	}
	deadline := time.Now().Add(pipeWait)
	for len(matching()) < n {
		if time.Now().After(deadline) || c.Closed() {
			got := matching()
			t.Fatalf("%d of %d %s frames arrived (closed: %v); the last: %v", len(got), n, path, c.Closed(), pipeTail(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(protoQuiet) // a duplicate would come now
	got := matching()
	if len(got) != n {
		t.Fatalf("%d %s frames arrived, want exactly %d", len(got), path, n)
	}
	return got
}

func pipeTail(frames []servertest.Frame) []string {
	var out []string
	for _, f := range frames[max(0, len(frames)-3):] {
		out = append(out, protoShort(f.String()))
	}
	return out
}

// pipeCheckReplies: every reply is a success, in send order (ids 1..n), with
// message ids increasing; it returns the message ids.
func pipeCheckReplies(t *testing.T, replies []servertest.Frame, tag string) []int64 {
	t.Helper()
	ids := make([]int64, len(replies))
	for i, f := range replies {
		if f.ID != strconv.Itoa(i+1) {
			t.Fatalf("reply %d has id %q: replies came out of send order", i+1, f.ID)
		}
		if code := f.ErrorCode(); code != "" {
			t.Fatalf("send %d failed: %s", i+1, protoShort(f.String()))
		}
		var r pipeReply
		f.Decode(t, &r)
		if r.CID != fmt.Sprintf("%s-%d", tag, i+1) || r.Conv != "room:lobby" || r.TS == 0 {
			t.Fatalf("reply %d: %s", i+1, f.Body)
		}
		if i > 0 && r.ID <= ids[i-1] {
			t.Fatalf("reply %d: message id %d after %d; ids must increase in send order", i+1, r.ID, ids[i-1])
		}
		ids[i] = r.ID
	}
	return ids
}

// pipeCheckMessages: the reader got the sender's n messages once each, in
// send order, with the ids the replies named (when ids is not nil).
func pipeCheckMessages(t *testing.T, pushes []servertest.Frame, sender int64, tag string, n int, ids []int64) {
	t.Helper()
	var msgs []pipeMessage
	for _, f := range pushes {
		var m pipeMessage
		f.Decode(t, &m)
		if m.From.ID == sender {
			msgs = append(msgs, m)
		}
	}
	pipeCheckOrder(t, "im/message push", msgs, sender, tag, n, ids)
}

// pipeCheckOrder: msgs are the sender's n messages of the pipeline tag, in
// send order, with increasing ids, and the ids given when ids is not nil.
func pipeCheckOrder(t *testing.T, what string, msgs []pipeMessage, sender int64, tag string, n int, ids []int64) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("%d %ss from the sender, want %d", len(msgs), what, n)
	}
	for i, m := range msgs {
		if m.Text != pipeText(tag, i+1) || m.From.ID != sender || m.Conv != "room:lobby" {
			t.Fatalf("%s %d: %+v, want text %q", what, i+1, m, pipeText(tag, i+1))
		}
		if ids != nil && m.ID != ids[i] {
			t.Fatalf("%s %d has id %d; its reply said %d", what, i+1, m.ID, ids[i])
		}
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Fatalf("%s %d: id %d after %d", what, i+1, m.ID, msgs[i-1].ID)
		}
	}
}

// pipeLogin logs c in and returns the user id.
func pipeLogin(t *testing.T, c *servertest.Client, nickname string) int64 {
	t.Helper()
	var r struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	c.OK("im/login", map[string]string{"nickname": nickname, "password": "password1"}, &r)
	return r.User.ID
}

// pipeLoad is the sender's messages in room:lobby, oldest first, read back
// page by page from the newest.
func pipeLoad(t *testing.T, c *servertest.Client, sender int64) []pipeMessage {
	t.Helper()
	var all []pipeMessage
	body := map[string]any{"with": "room:lobby", "limit": 100}
	for {
		var page struct {
			Messages []pipeMessage `json:"messages"`
			More     bool          `json:"more"`
		}
		c.OK("im/load", body, &page)
		var mine []pipeMessage
		for _, m := range page.Messages {
			if m.From.ID == sender {
				mine = append(mine, m)
			}
		}
		all = append(mine, all...)
		if !page.More || len(page.Messages) == 0 {
			return all
		}
		body["before"] = page.Messages[0].ID
	}
}

// TestPipelinedSends: one connection fires n im/send without waiting; all
// n replies come, each a success, in send order with increasing message
// ids; another user's connection gets the n im/message pushes once each,
// in send order; the sending connection gets none of its own.
func TestPipelinedSends(t *testing.T) {
	s := pipeStart(t)
	for _, tc := range []struct {
		transport string
		n         int
		dial      func() *servertest.Client
	}{
		{"websocket", 200, func() *servertest.Client { return s.DialWS(t, "", nil) }},
		{"tcp", 100, func() *servertest.Client { return s.DialTCP(t) }},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			reader := s.DialWS(t, "", nil)
			pipeLogin(t, reader, "pipe-reader-"+tc.transport)
			sender := tc.dial()
			senderID := pipeLogin(t, sender, "pipe-sender-"+tc.transport)
			sender.Drain()
			reader.Drain()

			pipeSend(t, sender, tc.transport, tc.n)
			replies := pipeFrames(t, sender, "im/send", tc.n)
			ids := pipeCheckReplies(t, replies, tc.transport)
			pipeCheckMessages(t, pipeFrames(t, reader, "im/message", tc.n), senderID, tc.transport, tc.n, ids)
			for _, f := range sender.Pushes() {
				if f.Path == "im/message" {
					t.Fatalf("the sending connection got its own message: %s", protoShort(f.String()))
				}
			}
			pipeCheckOrder(t, "stored message", pipeLoad(t, reader, senderID), senderID, tc.transport, tc.n, ids)
		})
	}
}

// TestPipelinedSendsThenClose: a connection that writes n sends and leaves
// at once, before any reply (a WebSocket close frame, a TCP half-close):
// every message is still stored and pushed to a reader, in order. (An
// abrupt close is different: the server's first reply meets a reset, and
// the kernel drops whatever the server had not read yet; those messages
// were never acknowledged.)
func TestPipelinedSendsThenClose(t *testing.T) {
	s := pipeStart(t)
	const n = 50
	for _, tc := range []struct {
		transport string
		dial      func() *servertest.Client
	}{
		{"websocket", func() *servertest.Client { return s.DialWS(t, "", nil) }},
		{"tcp", func() *servertest.Client { return s.DialTCP(t) }},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			reader := s.DialWS(t, "", nil)
			pipeLogin(t, reader, "pipe-close-reader-"+tc.transport)
			sender := tc.dial()
			senderID := pipeLogin(t, sender, "pipe-close-sender-"+tc.transport)
			reader.Drain()
			tag := "close-" + tc.transport
			pipeSend(t, sender, tag, n)
			if err := sender.Leave(); err != nil {
				t.Fatal(err)
			}

			pipeCheckMessages(t, pipeFrames(t, reader, "im/message", n), senderID, tag, n, nil)
			pipeCheckOrder(t, "stored message", pipeLoad(t, reader, senderID), senderID, tag, n, nil)
			// The connection is gone from the hub once its deferred sends are done.
			servertest.Eventually(t, pipeWait, "the closed sender to leave", func() bool {
				places, _ := s.Hub.Places(senderID)
				return places == 0
			})
		})
	}
}
