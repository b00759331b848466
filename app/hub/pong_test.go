package hub_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"dce/app/hub"
	"dce/app/node"
)

// pongSink is an inlineSink whose transport answers pings.
type pongSink struct{ *inlineSink }

func (s pongSink) Pong(payload string) error {
	s.record("pong:" + payload)
	return nil
}

// A peer's pings are answered by the connection's writer, never by the
// caller of Pong: with the writer stuck on a socket that takes nothing,
// Pong returns at once and a delivery to the connection is queued, not
// written inline. Pings that come meanwhile are coalesced into one pending
// pong carrying the latest payload, written once the socket moves.
func TestPongsAreTheWritersAndCoalesced(t *testing.T) {
	h := hub.New(hub.Options{Log: quiet})
	s := pongSink{newInlineSink()}
	s.block = make(chan struct{})
	c, err := h.Register(s, 0, "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSession(session(1, "sid")); err != nil {
		t.Fatal(err)
	}
	c.Reply(frame("stuck;")) // the writer takes it and blocks
	waitEntered(t, s.fakeSink)

	start := time.Now()
	for i := range 10_000 {
		if !c.Pong(fmt.Sprint(i)) {
			t.Fatal("Pong refused on an open connection")
		}
	}
	h.Deliver([]int64{1}, frame("private;"), 0)
	h.Broadcast(frame("lobby;"), 0, 0)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("10,000 pongs and two deliveries to a stuck connection took %v", d)
	}
	if _, tries := s.written(); tries != 0 {
		t.Fatalf("a delivery tried an inline write while the writer held the connection (%d tries)", tries)
	}

	close(s.block)
	waitFor(t, "the pong", func() bool { return strings.Contains(strings.Join(s.Events(), " "), "pong:") })
	waitFor(t, "the deliveries", func() bool { got, _ := s.written(); return got == "stuck;private;lobby;" })
	var pongs []string
	for _, ev := range s.Events() {
		if strings.HasPrefix(ev, "pong:") {
			pongs = append(pongs, ev)
		}
	}
	if len(pongs) != 1 || pongs[0] != "pong:9999" {
		t.Fatalf("pongs written: %v; want one, for the last ping", pongs)
	}

	// A ping's payload is capped at 125 bytes, as a control frame's is.
	c.Pong(strings.Repeat("p", 300))
	waitFor(t, "the long pong", func() bool { return len(s.Events()) > 0 && strings.HasPrefix(s.Events()[len(s.Events())-1], "pong:pp") })
	if ev := s.Events()[len(s.Events())-1]; len(ev) != len("pong:")+125 {
		t.Fatalf("pong of %d bytes, want 125", len(ev)-len("pong:"))
	}
	c.Close(node.ClosePolicy, "")
}
