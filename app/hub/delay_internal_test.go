package hub

import (
	"testing"
	"time"

	"dce/app/node"
)

// The write delay grows with the hot connections: the base for up to
// 1,000, in proportion above, at most ten times the base.
func TestWriteDelayScalesWithHotConnections(t *testing.T) {
	h := New(Options{WriteDelay: 30 * time.Millisecond})
	for _, tc := range []struct {
		hot  int64
		want time.Duration
	}{
		{0, 30 * time.Millisecond},
		{999, 30 * time.Millisecond},
		{2000, 60 * time.Millisecond},
		{4500, 135 * time.Millisecond},
		{10_000, 300 * time.Millisecond},
		{50_000, 300 * time.Millisecond},
	} {
		h.pace.hot.Store(tc.hot)
		if got := h.pace.writeDelay(); got != tc.want {
			t.Errorf("%d hot connections: delay %s, want %s", tc.hot, got, tc.want)
		}
	}
}

type nullSink struct{}

func (nullSink) WriteFrames([][]byte) error   { return nil }
func (nullSink) Ping() error                  { return nil }
func (nullSink) Close(node.CloseCode, string) {}
func (nullSink) Abort()                       {}

// A connection counts as hot while its writer is busy with a stream of
// frames, and stops counting when the stream ends: a storm that is over
// leaves no inflated delay behind.
func TestHotConnectionsCountedWhileBusy(t *testing.T) {
	h := New(Options{WriteDelay: 10 * time.Millisecond})
	c, err := h.Register(nullSink{}, node.TCP, "192.0.2.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.pace.hot.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a connection sent a frame every millisecond never counted as hot")
		}
		c.Enqueue([]byte("frame"))
		time.Sleep(time.Millisecond)
	}
	for h.pace.hot.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection still counts as hot after its stream ended")
		}
		time.Sleep(time.Millisecond)
	}
	c.Close(node.CloseGoingAway, "")
	c.Finish()
	if n := h.pace.hot.Load(); n != 0 {
		t.Errorf("%d hot connections after the connection finished", n)
	}
}
