package hub_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/hub"
	"dce/app/node"
)

// maxLater is the hub's bound on a connection's unfinished deferred
// requests (later.go).
const maxLater = 128

// laterWait bounds each wait for something that must happen; laterQuiet is
// how long a test watches to be sure that something does not.
const (
	laterWait  = 5 * time.Second
	laterQuiet = 200 * time.Millisecond
)

// heldFinishes makes finishes that each report when they start and then
// wait for a release, as requests waiting for their commit do.
type heldFinishes struct {
	started chan int      // each finish's number, as it starts
	release chan struct{} // one value lets one finish return

	mu      sync.Mutex
	order   []int
	running atomic.Int32
	overlap atomic.Bool // two finishes of one connection ran at once
}

func newHeldFinishes() *heldFinishes {
	return &heldFinishes{started: make(chan int, 1024), release: make(chan struct{}, 1024)}
}

// finish is the i-th request's finish; its reply is "reply:i".
func (h *heldFinishes) finish(i int) func() []byte {
	return func() []byte {
		if h.running.Add(1) > 1 {
			h.overlap.Store(true)
		}
		defer h.running.Add(-1)
		h.started <- i
		<-h.release
		h.mu.Lock()
		h.order = append(h.order, i)
		h.mu.Unlock()
		return []byte(fmt.Sprintf("reply:%d", i))
	}
}

func (h *heldFinishes) finished() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.order...)
}

// waitStarted waits for finish i to start.
func (h *heldFinishes) waitStarted(t *testing.T, i int) {
	t.Helper()
	select {
	case got := <-h.started:
		if got != i {
			t.Fatalf("finish %d started, want %d", got, i)
		}
	case <-time.After(laterWait):
		t.Fatalf("finish %d never started", i)
	}
}

// frames are the frames written to s, in order.
func frames(s *fakeSink) []string {
	var out []string
	for _, ev := range s.Events() {
		if f, ok := strings.CutPrefix(ev, "frame:"); ok {
			out = append(out, f)
		}
	}
	return out
}

// settleGoroutines waits for the goroutine count to come back to at most
// base and fails with every stack if it does not.
func settleGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(laterWait)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// Deferred requests finish one at a time in the order they were deferred,
// and their replies reach the sink in that order; a finish with no reply (a
// request without an id) sends nothing.
func TestDeferRunsInOrder(t *testing.T) {
	base := runtime.NumGoroutine()
	h := hub.New(hub.Options{Log: quiet})
	s := newSink()
	c := register(t, h, s, "10.0.0.1")
	const n = 3 * maxLater // past the bound, so the reader is held back on the way
	var (
		mu      sync.Mutex
		order   []int
		running atomic.Int32
		overlap atomic.Bool
	)
	var want []string
	for i := range n {
		if i%10 != 9 {
			want = append(want, fmt.Sprintf("reply:%d", i))
		}
		c.Defer(func() []byte {
			if running.Add(1) > 1 {
				overlap.Store(true)
			}
			defer running.Add(-1)
			if i%7 == 0 {
				time.Sleep(50 * time.Microsecond) // let the reader get ahead
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if i%10 == 9 {
				return nil
			}
			return []byte(fmt.Sprintf("reply:%d", i))
		})
	}
	waitFor(t, "every reply", func() bool { return len(frames(s)) == len(want) })
	if overlap.Load() {
		t.Error("two deferred requests of one connection ran at once")
	}
	mu.Lock()
	for i, got := range order {
		if got != i {
			t.Fatalf("finish %d ran in place %d; order %v", got, i, order)
		}
	}
	if len(order) != n {
		t.Fatalf("%d finishes ran, want %d", len(order), n)
	}
	mu.Unlock()
	if got := frames(s); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("replies out of order:\n got %q\nwant %q", got, want)
	}
	// More work after the queue ran dry starts a new runner, still in order.
	c.Defer(func() []byte { return []byte("after") })
	waitFor(t, "the reply after a pause", func() bool { return len(frames(s)) == len(want)+1 })
	c.Finish()
	s.seal()
	if late := s.lateCalls(); len(late) != 0 {
		t.Fatalf("the sink was used after Finish: %q", late)
	}
	settleGoroutines(t, base)
}

// The reader is held back while maxLater deferred requests are unfinished:
// the Defer past the bound blocks until one finishes, then returns.
func TestDeferBlocksPastTheBound(t *testing.T) {
	base := runtime.NumGoroutine()
	h := hub.New(hub.Options{Log: quiet})
	s := newSink()
	c := register(t, h, s, "10.0.0.1")
	held := newHeldFinishes()

	c.Defer(held.finish(0))
	held.waitStarted(t, 0) // the first is running: it is unfinished, not queued
	filled := make(chan struct{})
	go func() {
		for i := 1; i < maxLater; i++ {
			c.Defer(held.finish(i))
		}
		close(filled)
	}()
	select {
	case <-filled:
	case <-time.After(laterWait):
		t.Fatalf("Defer blocked before %d requests were unfinished", maxLater)
	}

	// maxLater are unfinished now: one running, the rest waiting.
	deferred := maxLater
	deferAsync := func(i int) chan struct{} {
		deferred++
		done := make(chan struct{})
		go func() { c.Defer(held.finish(i)); close(done) }()
		return done
	}
	over := deferAsync(maxLater)
	select {
	case <-over:
		// The bound is off by one: the running request is not counted.
		// Find out where the reader is held, to say so.
		beyond := deferAsync(maxLater + 1)
		select {
		case <-beyond:
			t.Errorf("Defer number %d and %d returned with %d and %d unfinished: nothing holds the reader back",
				maxLater+1, maxLater+2, maxLater, maxLater+1)
		case <-time.After(laterQuiet):
			t.Errorf("Defer number %d returned with %d requests unfinished; only number %d blocked "+
				"(the running request is not counted against maxLater = %d)", maxLater+1, maxLater, maxLater+2, maxLater)
			held.release <- struct{}{} // let the last one in, as below
			select {
			case <-beyond:
			case <-time.After(laterWait):
				t.Fatal("a blocked Defer did not return when a request finished")
			}
		}
	case <-time.After(laterQuiet):
		held.release <- struct{}{} // finish request 0: there is room for one
		select {
		case <-over:
		case <-time.After(laterWait):
			t.Fatal("a blocked Defer did not return when a request finished")
		}
		// Full again: the next Defer waits for the next finish, and only for it.
		next := deferAsync(maxLater + 1)
		select {
		case <-next:
			t.Fatalf("Defer number %d returned with %d requests unfinished", maxLater+2, maxLater)
		case <-time.After(laterQuiet):
		}
		held.release <- struct{}{}
		select {
		case <-next:
		case <-time.After(laterWait):
			t.Fatal("a blocked Defer did not return when a request finished")
		}
	}

	// Release everything; all finish, in order.
	for range deferred {
		held.release <- struct{}{}
	}
	waitFor(t, "every finish", func() bool { return len(held.finished()) == deferred })
	waitFor(t, "every reply", func() bool { return len(frames(s)) == deferred })
	for i, got := range held.finished() {
		if got != i {
			t.Fatalf("finish %d in place %d", got, i)
		}
	}
	if held.overlap.Load() {
		t.Error("two deferred requests of one connection ran at once")
	}
	c.Finish()
	settleGoroutines(t, base)
}

// Finish waits for the deferred requests to finish (a message queued for
// the store is stored and delivered whether or not its sender stays), and
// after it returns nothing touches the sink and no goroutine is left.
func TestFinishWaitsForDeferred(t *testing.T) {
	base := runtime.NumGoroutine()
	h := hub.New(hub.Options{Log: quiet})
	s := newSink()
	c := register(t, h, s, "10.0.0.1")
	held := newHeldFinishes()
	const n = 5
	for i := range n {
		c.Defer(held.finish(i))
	}
	held.waitStarted(t, 0)
	c.Close(node.CloseGoingAway, "bye") // the peer is going: replies may be dropped, the work is not
	finished := make(chan struct{})
	go func() { c.Finish(); close(finished) }()
	select {
	case <-finished:
		t.Fatalf("Finish returned with %d deferred requests unfinished", n-len(held.finished()))
	case <-time.After(laterQuiet):
	}
	for i := range n {
		held.release <- struct{}{}
		if i+1 < n {
			held.waitStarted(t, i+1)
		}
	}
	select {
	case <-finished:
	case <-time.After(laterWait):
		t.Fatal("Finish did not return after the deferred requests finished")
	}
	s.seal()
	if got := held.finished(); len(got) != n {
		t.Fatalf("Finish returned after %d of %d finishes", len(got), n)
	}
	if st := h.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections after Finish", st.Connections)
	}
	if nClose, code := s.closed(); nClose != 1 || code != node.CloseGoingAway {
		t.Fatalf("closed %d times with %d, want once with %d", nClose, code, node.CloseGoingAway)
	}
	// A connection with nothing deferred finishes at once.
	idle := register(t, h, newSink(), "10.0.0.2")
	start := time.Now()
	idle.Finish()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Finish with nothing deferred took %v", took)
	}
	settleGoroutines(t, base)
	if late := s.lateCalls(); len(late) != 0 {
		t.Fatalf("the sink was used after Finish: %q", late)
	}
}

// Many connections deferring at once, each in its own order, leave no
// goroutine behind once they finish.
func TestDeferLeavesNoGoroutine(t *testing.T) {
	base := runtime.NumGoroutine()
	h := hub.New(hub.Options{Log: quiet})
	const conns, perConn = 20, 300
	var wg sync.WaitGroup
	sinks := make([]*fakeSink, conns)
	for k := range conns {
		s := newSink()
		sinks[k] = s
		c := register(t, h, s, fmt.Sprintf("10.0.1.%d", k))
		wg.Add(1)
		go func() { // a connection's reader
			defer wg.Done()
			for i := range perConn {
				c.Defer(func() []byte { return []byte(fmt.Sprintf("%d", i)) })
				if i%50 == 0 {
					runtime.Gosched()
				}
			}
			c.Finish()
		}()
	}
	wg.Wait()
	for k, s := range sinks {
		got := frames(s)
		for i, f := range got { // a non-graceful Finish may drop the tail, never reorder
			if f != fmt.Sprint(i) {
				t.Fatalf("connection %d: reply %d is %q", k, i, f)
			}
		}
	}
	if st := h.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections left", st.Connections)
	}
	settleGoroutines(t, base)
}
