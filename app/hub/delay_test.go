package hub_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"dce/app/hub"
)

// TestWriteDelayBatchesABusyConnection: after a write, frames that follow
// within the busy window wait for the delay and go out in one batch; a
// quiet connection's frame goes out at once.
func TestWriteDelayBatchesABusyConnection(t *testing.T) {
	const delay = 50 * time.Millisecond
	h := hub.New(hub.Options{WriteDelay: delay, Log: quiet})
	s := newSink()
	c := register(t, h, s, "192.0.2.1")
	start := time.Now()
	c.Enqueue([]byte("first"))
	waitEntered(t, s)
	if waited := time.Since(start); waited >= delay {
		t.Fatalf("a quiet connection's frame waited %s", waited)
	}
	for i := range 5 {
		c.Enqueue(fmt.Appendf(nil, "burst %d", i))
	}
	waitEntered(t, s)
	waitFor(t, "the burst written", func() bool { return len(s.Events()) == 6 })
	c.Close(hub.CloseGoingAway, "")
	c.Finish()
}

// TestWriteDelayNeverMakesAReaderSlow: a burst bigger than the frame bound
// arriving while the writer waits cuts the wait short instead of closing
// the connection as too slow.
func TestWriteDelayNeverMakesAReaderSlow(t *testing.T) {
	const frames = 16
	h := hub.New(hub.Options{WriteDelay: time.Second, QueueFrames: frames, Log: quiet})
	s := newSink()
	c := register(t, h, s, "192.0.2.1")
	c.Enqueue([]byte("first")) // makes the connection busy
	waitEntered(t, s)
	waitFor(t, "the first frame written", func() bool { return len(s.Events()) == 1 })
	start := time.Now()
	for i := range 3 * frames {
		if !c.Enqueue(fmt.Appendf(nil, "burst %d", i)) {
			t.Fatalf("frame %d refused: %v", i, s.Events())
		}
		time.Sleep(100 * time.Microsecond) // a steady stream, faster than the delay
	}
	waitFor(t, "the burst written", func() bool { return len(s.Events()) == 1+3*frames })
	if took := time.Since(start); took >= time.Second {
		t.Errorf("the burst took %s: the delay was not cut short", took)
	}
	if st := h.Stats(); st.SlowClosed != 0 {
		t.Fatalf("%d connections closed as slow", st.SlowClosed)
	}
	for _, e := range s.Events() {
		if strings.HasPrefix(e, "close:") {
			t.Fatalf("closed: %v", s.Events())
		}
	}
	c.Close(hub.CloseGoingAway, "")
	c.Finish()
}
