package hub_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/hub"
)

// inlineSink is a fakeSink that can also write without blocking, the way
// each call's mode says: "whole", "part" (half now, the rest kept for the
// next WriteFrames), "full" (nothing: the socket buffer is full) or "err".
// stream is every byte "written", in order.
type inlineSink struct {
	*fakeSink
	smu    sync.Mutex
	modes  []string
	tries  int
	rest   string
	stream strings.Builder
	hold   chan struct{} // when set, TryWrite waits on it after entering
	inTry  chan struct{}
}

func newInlineSink(modes ...string) *inlineSink {
	return &inlineSink{fakeSink: newSink(), modes: modes, inTry: make(chan struct{}, 16)}
}

func (s *inlineSink) TryWrite(frame []byte) (taken, more bool, err error) {
	s.inTry <- struct{}{}
	if s.hold != nil {
		<-s.hold
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	mode := "whole"
	if s.tries < len(s.modes) {
		mode = s.modes[s.tries]
	}
	s.tries++
	switch mode {
	case "part":
		half := len(frame) / 2
		s.stream.Write(frame[:half])
		s.rest = string(frame[half:])
		return true, true, nil
	case "full":
		return false, false, nil
	case "err":
		return false, false, errors.New("the socket is gone")
	}
	s.stream.Write(frame)
	return true, false, nil
}

func (s *inlineSink) WriteFrames(frames [][]byte) error {
	s.smu.Lock()
	s.stream.WriteString(s.rest)
	s.rest = ""
	for _, f := range frames {
		s.stream.Write(f)
	}
	s.smu.Unlock()
	return s.fakeSink.WriteFrames(frames)
}

func (s *inlineSink) written() (string, int) {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.stream.String(), s.tries
}

// attached registers an inline connection logged in as user.
func attached(t *testing.T, h *hub.Hub, s *inlineSink, user int64) *hub.Conn {
	t.Helper()
	c, err := h.Register(s, 0, "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSession(session(user, "sid")); err != nil {
		t.Fatal(err)
	}
	return c
}

// An idle connection's push is written by the delivering goroutine with
// one TryWrite: no writer runs, so WriteFrames is never called.
func TestIdlePushIsWrittenInline(t *testing.T) {
	h := hub.New(hub.Options{Log: quiet})
	s := newInlineSink()
	attached(t, h, s, 1)
	h.Broadcast(frame("one;"), 0, 0)
	waitFor(t, "the broadcast", func() bool { got, _ := s.written(); return got == "one;" })
	h.Deliver([]int64{1}, frame("two;"), 0)
	if got, tries := s.written(); got != "one;two;" || tries != 2 {
		t.Fatalf("written %q in %d tries, want one;two; in 2", got, tries)
	}
	if b := s.Batches(); len(b) != 0 {
		t.Errorf("WriteFrames was called: %v", b)
	}
}

// A partial write's rest, a frame the full socket did not take, and frames
// queued while an inline write was under way all go out, in order.
func TestInlineWritesKeepOrder(t *testing.T) {
	h := hub.New(hub.Options{Log: quiet})
	s := newInlineSink("part", "full", "whole")
	c := attached(t, h, s, 1)
	h.Broadcast(frame("alpha;"), 0, 0) // half now, the writer sends the rest
	waitFor(t, "the rest of alpha", func() bool { got, _ := s.written(); return got == "alpha;" })
	waitFor(t, "the writer to exit", func() bool { return h.Stats().Connections == 1 && len(s.Batches()) == 1 })
	h.Broadcast(frame("beta;"), 0, 0) // the socket takes nothing: queued
	waitFor(t, "beta", func() bool { got, _ := s.written(); return got == "alpha;beta;" })

	time.Sleep(10 * time.Millisecond) // the writer exits; the connection is idle again
	for len(s.inTry) > 0 {
		<-s.inTry
	}
	s.hold = make(chan struct{})
	done := make(chan struct{})
	go func() { h.Broadcast(frame("gamma;"), 0, 0); close(done) }()
	<-s.inTry
	c.Reply(frame("reply;")) // during the inline write: queued behind it
	close(s.hold)
	<-done
	waitFor(t, "gamma, then the reply", func() bool { got, _ := s.written(); return got == "alpha;beta;gamma;reply;" })
}

// A failed inline write closes the connection as a failed write does.
func TestInlineWriteErrorCloses(t *testing.T) {
	h := hub.New(hub.Options{Log: quiet})
	s := newInlineSink("err")
	c := attached(t, h, s, 1)
	h.Broadcast(frame("lost;"), 0, 0)
	waitFor(t, "the close", func() bool { n, _ := s.closed(); return n == 1 })
	if !c.Closing() {
		t.Error("the connection is not closing")
	}
	if n, code := s.closed(); n != 1 || code != 0 {
		t.Errorf("closed %d times with %d, want once with no close frame", n, code)
	}
}

// Frames sent fast go to the connection's writer, which gathers them, even
// when its last write is longer ago than the write delay (a big inline
// sweep takes that long); once the connection has been quiet, pushes are
// written inline again.
func TestFastConnectionsAreLeftToTheirWriter(t *testing.T) {
	const delay = 50 * time.Millisecond
	h := hub.New(hub.Options{WriteDelay: delay, QueueFrames: 1000, QueueBytes: 1 << 20, Log: quiet})
	s := newInlineSink()
	attached(t, h, s, 1)
	var want strings.Builder
	for i := range 12 {
		f := fmt.Sprintf("f%d;", i)
		want.WriteString(f)
		h.Deliver([]int64{1}, frame(f), 0)
	}
	waitFor(t, "every frame", func() bool { got, _ := s.written(); return got == want.String() })
	_, tries := s.written()
	if tries > 8 || len(s.Batches()) == 0 {
		t.Errorf("%d inline writes and %d writer batches for 12 fast frames; want at most 8 inline, the rest gathered", tries, len(s.Batches()))
	}

	// Longer ago than the write delay, within the rate window: still fast.
	time.Sleep(delay + 10*time.Millisecond)
	batches := len(s.Batches())
	want.WriteString("late;")
	h.Deliver([]int64{1}, frame("late;"), 0)
	waitFor(t, "the late frame", func() bool { got, _ := s.written(); return got == want.String() })
	if _, after := s.written(); after != tries || len(s.Batches()) != batches+1 {
		t.Errorf("a fast connection's frame after a pause: %d inline writes (want %d), %d batches (want %d)",
			after, tries, len(s.Batches()), batches+1)
	}

	time.Sleep(2*4*delay + 10*time.Millisecond) // two rate windows of quiet
	batches = len(s.Batches())
	tries++
	want.WriteString("quiet;")
	h.Deliver([]int64{1}, frame("quiet;"), 0)
	waitFor(t, "the quiet frame", func() bool { got, _ := s.written(); return got == want.String() })
	if _, after := s.written(); after != tries || len(s.Batches()) != batches {
		t.Errorf("after a quiet while: %d inline writes (want %d), %d batches (want %d)", after, tries, len(s.Batches()), batches)
	}
}

// A broadcast that comes while another is still writing inline marks a
// storm: for a while every delivery is queued for the writers, which
// gather them, instead of being written one by one.
func TestOverlappingBroadcastsAreQueued(t *testing.T) {
	const delay = 50 * time.Millisecond
	h := hub.New(hub.Options{WriteDelay: delay, QueueFrames: 1000, QueueBytes: 1 << 20, Log: quiet})
	slow, other := newInlineSink(), newInlineSink()
	attached(t, h, slow, 1)
	attached(t, h, other, 2)
	slow.hold = make(chan struct{})
	done := make(chan struct{})
	go func() { h.Broadcast(frame("first;"), 0, 0); close(done) }() // sweeps; held in slow's write
	<-slow.inTry
	h.Broadcast(frame("second;"), 0, 0) // overlaps the first: a storm
	close(slow.hold)
	<-done
	waitFor(t, "the second broadcast", func() bool { b, _ := other.written(); return b == "first;second;" })
	time.Sleep(5 * time.Millisecond)          // the other connection's writer exits: it is idle
	h.Deliver([]int64{2}, frame("third;"), 0) // during the storm: queued all the same
	waitFor(t, "every frame", func() bool {
		a, _ := slow.written()
		b, _ := other.written()
		return a == "first;second;" && b == "first;second;third;"
	})
	if _, n := other.written(); n != 1 {
		t.Errorf("%d inline writes to the other connection, want 1 (the first broadcast's)", n)
	}
}
