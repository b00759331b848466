package hub_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"dce/app/hub"
	"dce/app/node"
)

// heatFrames make a connection hot (see hub.hot): 2 frames per delay over
// a window of 4 delays.
const heatFrames = 8

// heatUp sends heatFrames one at a time, each written before the next.
// Until the last is written the connection is not hot, so none waits.
func heatUp(t *testing.T, c *hub.Conn, s *fakeSink) {
	t.Helper()
	const frames = heatFrames
	before := len(s.Events())
	for i := range frames {
		c.Enqueue(fmt.Appendf(nil, "heat %d", i))
		waitFor(t, "a heating frame written", func() bool { return len(s.Events()) == before+i+1 })
	}
}

// TestWriteDelayBatchesAHotConnection: a quiet connection's frame goes out
// at once; once frames reach a connection fast, the ones that follow a
// write wait for the delay and go out in one batch.
func TestWriteDelayBatchesAHotConnection(t *testing.T) {
	const delay = 100 * time.Millisecond
	h := hub.New(hub.Options{WriteDelay: delay, Log: quiet})
	s := newSink()
	c := register(t, h, s, "192.0.2.1")
	start := time.Now()
	c.Enqueue([]byte("first"))
	waitFor(t, "the first frame written", func() bool { return len(s.Events()) == 1 })
	if waited := time.Since(start); waited >= delay {
		t.Fatalf("a quiet connection's frame waited %s", waited)
	}
	heatUp(t, c, s)
	time.Sleep(delay / 10) // the last heating write's writer exits
	start = time.Now()
	for i := range 5 {
		c.Enqueue(fmt.Appendf(nil, "burst %d", i))
	}
	waitFor(t, "the burst written", func() bool { return len(s.Events()) == 1+heatFrames+5 })
	if waited := time.Since(start); waited < delay/2 {
		t.Errorf("a hot connection's burst went out after %s, before the delay", waited)
	}
	if batches := s.Batches(); batches[len(batches)-1] != 5 {
		t.Errorf("the burst went out in batches %v, want its 5 frames in one", batches[1+heatFrames:])
	}
	c.Close(node.CloseGoingAway, "")
	c.Finish()
}

// TestWriteDelaySparesASteadyTrickle: frames that come more often than the
// delay but too rarely for a delay to gather a batch (a busy chat room, not
// a storm) are each written at once.
func TestWriteDelaySparesASteadyTrickle(t *testing.T) {
	const delay = 50 * time.Millisecond
	h := hub.New(hub.Options{WriteDelay: delay, Log: quiet})
	s := newSink()
	c := register(t, h, s, "192.0.2.1")
	const frames = 20
	for i := range frames {
		c.Enqueue(fmt.Appendf(nil, "trickle %d", i))
		time.Sleep(2 * delay / 3) // 30 frames a second; a delay would gather 1.5
	}
	waitFor(t, "the trickle written", func() bool { return len(s.Events()) == frames })
	batched := 0
	for _, n := range s.Batches() {
		if n > 1 {
			batched++
		}
	}
	if batched > 2 { // a stalled test machine may batch one or two
		t.Errorf("%d of %d writes carried more than one frame: %v; a trickle must not wait", batched, len(s.Batches()), s.Batches())
	}
	c.Close(node.CloseGoingAway, "")
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
	heatUp(t, c, s)
	start := time.Now()
	for i := range 3 * frames {
		if !c.Enqueue(fmt.Appendf(nil, "burst %d", i)) {
			t.Fatalf("frame %d refused: %v", i, s.Events())
		}
		time.Sleep(100 * time.Microsecond) // a steady stream, faster than the delay
	}
	// Every frame but the last partial batch goes out without waiting
	// out the delay.
	waitFor(t, "most of the burst written", func() bool { return len(s.Events()) >= heatFrames+2*frames })
	if took := time.Since(start); took >= time.Second {
		t.Errorf("the burst took %s: the delay was not cut short", took)
	}
	waitFor(t, "the burst written", func() bool { return len(s.Events()) == heatFrames+3*frames })
	if st := h.Stats(); st.SlowClosed != 0 {
		t.Fatalf("%d connections closed as slow", st.SlowClosed)
	}
	for _, e := range s.Events() {
		if strings.HasPrefix(e, "close:") {
			t.Fatalf("closed: %v", s.Events())
		}
	}
	c.Close(node.CloseGoingAway, "")
	c.Finish()
}

// TestWriteDelaySkippedForAReply: on a hot connection a reply is written
// without waiting out the delay, and takes the pushes queued before it
// along, in order.
func TestWriteDelaySkippedForAReply(t *testing.T) {
	const delay = time.Second
	h := hub.New(hub.Options{WriteDelay: delay, Log: quiet})
	s := newSink()
	c := register(t, h, s, "192.0.2.1")
	heatUp(t, c, s)
	start := time.Now()
	c.Enqueue([]byte("push 1"))
	waitEntered(t, s) // drains the heating writes' signals below
	for len(s.entered) > 0 {
		<-s.entered
	}
	c.Enqueue([]byte("push 2"))
	c.Reply([]byte("reply"))
	waitFor(t, "the reply written", func() bool { return len(s.Events()) == heatFrames+3 })
	if took := time.Since(start); took >= delay/2 {
		t.Errorf("the reply waited %s behind the delay", took)
	}
	if got := s.Events()[heatFrames:]; !slices.Equal(got, []string{"frame:push 1", "frame:push 2", "frame:reply"}) {
		t.Errorf("written %v", got)
	}
	c.Close(node.CloseGoingAway, "")
	c.Finish()
}
