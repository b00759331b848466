package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/servertest/syncbuf"
	"dce/common/model"
)

var errAborted = errors.New("fake sink: write aborted")

// quiet is a logger for tests that provoke warnings on purpose.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeSink records what the hub asks of a transport. With block set, each
// WriteFrames waits until block is closed or the sink is aborted.
type fakeSink struct {
	block   chan struct{}
	entered chan struct{} // gets a value each time WriteFrames starts
	onClose func()        // run in a new goroutine after Close (a transport's Finish)

	mu       sync.Mutex
	events   []string // "frame:...", "ping", "close:CODE:REASON"
	batches  []int    // the number of frames of each WriteFrames
	closes   int
	code     node.CloseCode
	sealed   bool // set once Finish has returned: any call after it is a bug
	late     []string
	abort    chan struct{}
	abortOne sync.Once
}

func newSink() *fakeSink {
	return &fakeSink{entered: make(chan struct{}, 1024), abort: make(chan struct{})}
}

func (s *fakeSink) record(ev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealed {
		s.late = append(s.late, ev)
	}
	s.events = append(s.events, ev)
}

func (s *fakeSink) WriteFrames(frames [][]byte) error {
	s.entered <- struct{}{}
	if s.block != nil {
		select {
		case <-s.block:
		case <-s.abort:
			return errAborted
		}
	}
	s.mu.Lock()
	s.batches = append(s.batches, len(frames))
	s.mu.Unlock()
	for _, f := range frames {
		s.record("frame:" + string(f))
	}
	return nil
}

func (s *fakeSink) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

func (s *fakeSink) Ping() error { s.record("ping"); return nil }

func (s *fakeSink) Close(code node.CloseCode, reason string) {
	s.record(fmt.Sprintf("close:%d:%s", code, reason))
	s.mu.Lock()
	s.closes++
	s.code = code
	s.mu.Unlock()
	if s.onClose != nil {
		go s.onClose()
	}
}

func (s *fakeSink) Abort() { s.abortOne.Do(func() { close(s.abort) }) }

func (s *fakeSink) Events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func (s *fakeSink) closed() (int, node.CloseCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes, s.code
}

// seal marks the connection finished; the hub must not touch the sink again.
func (s *fakeSink) seal() {
	s.mu.Lock()
	s.sealed = true
	s.mu.Unlock()
}

func (s *fakeSink) lateCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.late...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitEntered(t *testing.T, s *fakeSink) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never started a write")
	}
}

func register(t *testing.T, h *hub.Hub, s *fakeSink, ip string) *hub.Conn {
	t.Helper()
	c, err := h.Register(s, node.TCP, ip, 0)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return c
}

func session(user int64, sid string) *model.Session {
	return &model.Session{SID: sid, UserID: user, Created: time.Now(), Expires: time.Now().Add(time.Hour)}
}

func frame(s string) []byte { return []byte(s) }

// A reader that takes nothing: once the queue is over its frame bound,
// Enqueue says no, the blocked write is aborted and the connection closes
// with 4008; nothing waits for the reader.
func TestQueueBoundInFrames(t *testing.T) {
	h := hub.New(hub.Options{QueueFrames: 4, QueueBytes: 1 << 20, Log: quiet})
	s := newSink()
	s.block = make(chan struct{}) // never released: a peer that never reads
	c := register(t, h, s, "10.0.0.1")
	if !c.Enqueue(frame("f0")) {
		t.Fatal("first frame refused")
	}
	waitEntered(t, s) // f0 is being written, and stuck
	for i := 1; i <= 4; i++ {
		if !c.Enqueue(frame(fmt.Sprintf("f%d", i))) {
			t.Fatalf("frame %d refused with %d queued; the bound is 4", i, i-1)
		}
	}
	start := time.Now()
	if c.Enqueue(frame("f5")) {
		t.Fatal("a 5th queued frame was accepted over a bound of 4")
	}
	if !c.Closing() {
		t.Fatal("an overflowing connection is not closing")
	}
	waitFor(t, "the close", func() bool { n, _ := s.closed(); return n == 1 })
	if _, code := s.closed(); code != node.CloseTooSlow {
		t.Fatalf("close code %d, want %d", code, node.CloseTooSlow)
	}
	t.Logf("closed %v after the overflow", time.Since(start))
	if got := h.Stats().SlowClosed; got != 1 {
		t.Fatalf("SlowClosed = %d, want 1", got)
	}
	if c.Enqueue(frame("late")) {
		t.Fatal("Enqueue after the close was accepted")
	}
	c.Finish()
	s.seal()
	if n := h.Stats().Connections; n != 0 {
		t.Fatalf("%d connections after Finish", n)
	}
	for _, ev := range s.Events() {
		if strings.HasPrefix(ev, "frame:") {
			t.Fatalf("a frame was written to a peer that never read: %s", ev)
		}
	}
}

// The byte bound counts what is queued and not yet being written.
func TestQueueBoundInBytes(t *testing.T) {
	var logs syncbuf.Buffer
	h := hub.New(hub.Options{QueueFrames: 1000, QueueBytes: 1000, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	s := newSink()
	s.block = make(chan struct{})
	c := register(t, h, s, "10.0.0.1")
	big := make([]byte, 300)
	c.Enqueue(big)
	waitEntered(t, s)
	for i := range 3 {
		if !c.Enqueue(big) {
			t.Fatalf("frame %d refused at %d bytes queued; the bound is 1000", i+1, 300*i)
		}
	}
	if c.Enqueue(big) {
		t.Fatal("1200 queued bytes accepted over a bound of 1000")
	}
	waitFor(t, "the close", func() bool { n, code := s.closed(); return n == 1 && code == node.CloseTooSlow })
	c.Finish()
	if !strings.Contains(logs.String(), "slow connection closed") || !strings.Contains(logs.String(), "queued_bytes=900") {
		t.Fatalf("the slow close is not logged with the 900 bytes queued: %q", logs.String())
	}
}

// A close after frames were queued sends those frames, in order, then the
// close code; Enqueue after it is refused; after Finish the sink is never
// touched again.
func TestCloseFlushesQueuedFramesFirst(t *testing.T) {
	h := hub.New(hub.Options{})
	s := newSink()
	s.block = make(chan struct{})
	c := register(t, h, s, "10.0.0.1")
	c.Enqueue(frame("a"))
	waitEntered(t, s)
	c.Enqueue(frame("b"))
	c.Enqueue(frame("c"))
	c.Close(node.CloseKicked, "kicked")
	if c.Enqueue(frame("d")) {
		t.Fatal("Enqueue after Close was accepted")
	}
	close(s.block)
	waitFor(t, "the close", func() bool { n, _ := s.closed(); return n == 1 })
	c.Finish()
	s.seal()
	want := []string{"frame:a", "frame:b", "frame:c", "close:4001:kicked"}
	if got := s.Events(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %q, want %q", got, want)
	}
	c.Close(node.CloseGoingAway, "again")
	c.Enqueue(frame("e"))
	c.Abort()
	time.Sleep(20 * time.Millisecond)
	if late := s.lateCalls(); len(late) > 0 {
		t.Fatalf("the sink was used after Finish: %q", late)
	}
}

// A graceful close that cannot flush (the peer takes nothing) is aborted
// after the write timeout: Finish never hangs.
func TestGracefulCloseIsBoundedByWriteTimeout(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	h := hub.New(hub.Options{WriteTimeout: writeTimeout})
	s := newSink()
	s.block = make(chan struct{})
	c := register(t, h, s, "10.0.0.1")
	c.Enqueue(frame("stuck"))
	waitEntered(t, s)
	c.Close(node.CloseGoingAway, "bye")
	start := time.Now()
	done := make(chan struct{})
	go func() { c.Finish(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Finish hung on a peer that takes nothing")
	}
	took := time.Since(start)
	if took < writeTimeout/2 {
		t.Errorf("Finish returned after %v, before the write timeout %v", took, writeTimeout)
	}
	if n, code := s.closed(); n != 1 || code != node.CloseGoingAway {
		t.Fatalf("closes %d with code %d, want one with %d", n, code, node.CloseGoingAway)
	}
}

// Finish without a close first closes with no code, and only once.
func TestFinishClosesOnce(t *testing.T) {
	h := hub.New(hub.Options{})
	s := newSink()
	c := register(t, h, s, "10.0.0.1")
	c.Enqueue(frame("x"))
	c.Finish()
	c.Finish()
	s.seal()
	if n, code := s.closed(); n != 1 || code != 0 {
		t.Fatalf("closes %d code %d, want one close with no code", n, code)
	}
	if h.Stats().Connections != 0 {
		t.Fatal("the connection is still registered")
	}
}

// A kick queues its frame, then closes each of the user's connections.
func TestKickSendsFrameThenCloses(t *testing.T) {
	h := hub.New(hub.Options{})
	var sinks []*fakeSink
	for range 2 {
		s := newSink()
		c := register(t, h, s, "10.0.0.1")
		if err := c.SetSession(session(42, "sid")); err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, s)
	}
	bystander := newSink()
	if err := register(t, h, bystander, "10.0.0.2").SetSession(session(43, "other")); err != nil {
		t.Fatal(err)
	}
	if n := h.Kick(42, frame(`im/kicked;{"reason":"x"}`), node.CloseKicked, "kicked"); n != 2 {
		t.Fatalf("Kick reached %d connections, want 2", n)
	}
	for i, s := range sinks {
		waitFor(t, "the kick's close", func() bool { n, _ := s.closed(); return n == 1 })
		want := `frame:im/kicked;{"reason":"x"} close:4001:kicked`
		if got := strings.Join(s.Events(), " "); got != want {
			t.Fatalf("connection %d: %q, want %q", i, got, want)
		}
	}
	if n, _ := bystander.closed(); n != 0 || len(bystander.Events()) != 0 {
		t.Fatalf("another user's connection was touched: %q", bystander.Events())
	}
}

// presenceLog records OnPresence calls.
type presenceLog struct {
	mu     sync.Mutex
	events []string
}

func (p *presenceLog) record(user int64, online bool, places int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("%d:%v:%d", user, online, places))
}

func (p *presenceLog) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

// Presence: every change of places is told in order; the last connection
// closing starts the grace, a connection coming back within it is
// invisible, and the user goes offline exactly once when it runs out.
func TestPresenceGraceAndDedupe(t *testing.T) {
	const grace = 80 * time.Millisecond
	var log presenceLog
	h := hub.New(hub.Options{PresenceGrace: grace, OnPresence: log.record})
	attach := func() *hub.Conn {
		c := register(t, h, newSink(), "10.0.0.1")
		if err := c.SetSession(session(7, "s")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := attach()
	c2 := attach()
	c2.Finish()
	c1.Finish()
	if places, online := h.Places(7); places != 0 || !online {
		t.Fatalf("in the grace: places %d online %v, want 0 and online", places, online)
	}
	c3 := attach() // a page reload within the grace
	want := []string{"7:true:1", "7:true:2", "7:true:1"}
	if got := log.get(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %q, want %q (the reload within the grace must be invisible)", got, want)
	}
	time.Sleep(2 * grace) // the first grace's timer has fired by now, and must have done nothing
	if got := log.get(); len(got) != len(want) {
		t.Fatalf("a stale grace timer reported presence: %q", got)
	}
	c3.Finish()
	waitFor(t, "offline", func() bool { return len(log.get()) == 4 })
	time.Sleep(2 * grace)
	want = append(want, "7:false:0")
	if got := log.get(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %q, want %q", got, want)
	}
	if _, online := h.Places(7); online || len(h.Online()) != 0 {
		t.Fatal("the user is still online after the grace")
	}
}

// Without a grace the user goes offline at once; a logout detaches like a
// close.
func TestPresenceWithoutGraceAndLogout(t *testing.T) {
	var log presenceLog
	h := hub.New(hub.Options{OnPresence: log.record})
	c1 := register(t, h, newSink(), "10.0.0.1")
	c2 := register(t, h, newSink(), "10.0.0.1")
	for _, c := range []*hub.Conn{c1, c2} {
		if err := c.SetSession(session(9, "s")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c1.SetSession(nil); err != nil { // logout on one
		t.Fatal(err)
	}
	c2.Finish()
	want := "9:true:1 9:true:2 9:true:1 9:false:0"
	if got := strings.Join(log.get(), " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if c1.Session() != nil {
		t.Fatal("a logged-out connection still has its session")
	}
	if err := c1.SetSession(session(9, "s2")); err != nil { // and it may log in again
		t.Fatal(err)
	}
	if places, online := h.Places(9); places != 1 || !online {
		t.Fatalf("after logging in again: places %d online %v", places, online)
	}
}

// Admission: anonymous connections per address, connections per user, and
// connections on the node.
func TestAdmissionCaps(t *testing.T) {
	t.Run("anonymous per address", func(t *testing.T) {
		h := hub.New(hub.Options{MaxAnonPerIP: 2})
		a1 := register(t, h, newSink(), "10.0.0.1")
		register(t, h, newSink(), "10.0.0.1")
		if _, err := h.Register(newSink(), node.TCP, "10.0.0.1", 0); !errors.Is(err, hub.ErrTooManyAnon) {
			t.Fatalf("3rd anonymous from one address: %v, want ErrTooManyAnon", err)
		}
		if err := h.Admit("10.0.0.1", true); !errors.Is(err, hub.ErrTooManyAnon) {
			t.Fatalf("Admit: %v", err)
		}
		if err := h.Admit("10.0.0.1", false); err != nil {
			t.Fatalf("Admit for a connection bringing a sid: %v", err)
		}
		register(t, h, newSink(), "10.0.0.2") // another address has its own allowance
		if err := a1.SetSession(session(1, "s")); err != nil {
			t.Fatal(err)
		}
		register(t, h, newSink(), "10.0.0.1") // a login freed an anonymous place
		if err := a1.SetSession(nil); err != nil {
			t.Fatal(err)
		}
		if err := h.Admit("10.0.0.1", true); !errors.Is(err, hub.ErrTooManyAnon) {
			t.Fatalf("after a logout the connection counts as anonymous again: Admit %v", err)
		}
	})
	t.Run("per user", func(t *testing.T) {
		h := hub.New(hub.Options{MaxConnsPerUser: 2})
		for range 2 {
			if err := register(t, h, newSink(), "10.0.0.1").SetSession(session(5, "s")); err != nil {
				t.Fatal(err)
			}
		}
		third := register(t, h, newSink(), "10.0.0.1")
		if err := third.SetSession(session(5, "s")); !errors.Is(err, hub.ErrTooManyForUser) {
			t.Fatalf("3rd connection of one user: %v, want ErrTooManyForUser", err)
		}
		if third.Session() != nil {
			t.Fatal("the refused connection holds the session")
		}
		if places, _ := h.Places(5); places != 2 {
			t.Fatalf("places %d, want 2", places)
		}
		if err := third.SetSession(session(6, "t")); err != nil {
			t.Fatalf("another user on it: %v", err)
		}
	})
	t.Run("node", func(t *testing.T) {
		h := hub.New(hub.Options{MaxConns: 3})
		conns := []*hub.Conn{register(t, h, newSink(), "a"), register(t, h, newSink(), "b"), register(t, h, newSink(), "c")}
		if _, err := h.Register(newSink(), node.TCP, "d", 0); !errors.Is(err, hub.ErrServerFull) {
			t.Fatalf("4th connection: %v, want ErrServerFull", err)
		}
		if err := h.Admit("d", false); !errors.Is(err, hub.ErrServerFull) {
			t.Fatalf("Admit: %v", err)
		}
		conns[0].Finish()
		register(t, h, newSink(), "d")
	})
}

// EndSession logs out exactly the connections holding that sid.
func TestEndSession(t *testing.T) {
	h := hub.New(hub.Options{})
	a1, a2, b := register(t, h, newSink(), "x"), register(t, h, newSink(), "x"), register(t, h, newSink(), "x")
	for c, sid := range map[*hub.Conn]string{a1: "a", a2: "a", b: "b"} {
		if err := c.SetSession(session(3, sid)); err != nil {
			t.Fatal(err)
		}
	}
	h.EndSession(3, "a")
	if a1.Session() != nil || a2.Session() != nil {
		t.Fatal("a connection holding the ended sid is still logged in")
	}
	if s := b.Session(); s == nil || s.SID != "b" {
		t.Fatal("a connection holding another sid was logged out")
	}
	if places, _ := h.Places(3); places != 1 {
		t.Fatalf("places %d, want 1", places)
	}
}

// Deliver reaches every connection of the users named but the one
// excepted; Broadcast reaches every logged-in connection but the excepted
// ones, and never an anonymous one.
func TestDeliverAndBroadcast(t *testing.T) {
	h := hub.New(hub.Options{})
	mk := func(user int64) (*hub.Conn, *fakeSink) {
		s := newSink()
		c := register(t, h, s, "x")
		if user != 0 {
			if err := c.SetSession(session(user, "s")); err != nil {
				t.Fatal(err)
			}
		}
		return c, s
	}
	c1a, s1a := mk(1)
	_, s1b := mk(1)
	_, s2 := mk(2)
	_, s3 := mk(3)
	_, anon := mk(0)
	h.Deliver([]int64{1, 2}, frame("d"), c1a.ID())
	h.Broadcast(frame("b"), 0, 2)
	wantFrames := map[*fakeSink]string{s1a: "frame:b", s1b: "frame:d frame:b", s2: "frame:d", s3: "frame:b", anon: ""}
	for s, want := range wantFrames {
		waitFor(t, "the frames", func() bool { return strings.Join(s.Events(), " ") == want })
	}
}

// A Deliver to many users (a big group) reaches exactly the connections
// its users hold at the time, however the list is passed: the same slice
// again, an equal one, a changed one, and after connections come and go
// (the hub reuses what it resolved a list to only while nothing changed).
func TestDeliverToManyUsersFollowsConnections(t *testing.T) {
	h := hub.New(hub.Options{})
	const n = 100 // over the size at which a delivery is a sweep
	var (
		users []int64
		sinks []*fakeSink
		conns []*hub.Conn
	)
	for i := range n {
		s := newSink()
		c := register(t, h, s, "x")
		s.onClose = c.Finish
		if err := c.SetSession(session(int64(i+1), "s")); err != nil {
			t.Fatal(err)
		}
		users, sinks, conns = append(users, int64(i+1)), append(sinks, s), append(conns, c)
	}
	want := make([][]string, n)
	deliver := func(to []int64, f string, except uint64) {
		t.Helper()
		h.Deliver(to, frame(f), except)
		for _, id := range to {
			if c := conns[id-1]; c != nil && c.ID() != except {
				want[id-1] = append(want[id-1], "frame:"+f)
			}
		}
	}
	deliver(users, "1", 0)
	deliver(users, "2", conns[0].ID())
	deliver(slices.Clone(users), "3", 0)
	odd := slices.DeleteFunc(slices.Clone(users), func(id int64) bool { return id%2 == 0 })
	odd = append(odd, users[:25]...) // 75 users, some of them twice
	deliver(odd, "4", 0)
	users[5] = 7 // the same slice, changed: user 6 left out, user 7 twice
	deliver(users, "5", 0)
	users[5] = 6

	// A connection goes, another comes for user 3, a user logs out.
	conns[9].Close(4000, "bye")
	waitFor(t, "the close", func() bool { return slices.Contains(sinks[9].Events(), "close:4000:bye") })
	conns[9] = nil
	s := newSink()
	c := register(t, h, s, "x")
	if err := c.SetSession(session(3, "s")); err != nil {
		t.Fatal(err)
	}
	if err := conns[20].SetSession(nil); err != nil {
		t.Fatal(err)
	}
	conns[20] = nil
	deliver(users, "6", 0)
	waitFor(t, "the new connection's frame", func() bool { return strings.Join(s.Events(), " ") == "frame:6" })
	for i, sink := range sinks {
		waitFor(t, "the frames", func() bool {
			got := slices.DeleteFunc(sink.Events(), func(e string) bool { return !strings.HasPrefix(e, "frame:") })
			return slices.Equal(got, want[i])
		})
	}
}

// Shutdown closes every connection with the code given, waits until the
// transports have finished them, and refuses new ones.
func TestShutdown(t *testing.T) {
	h := hub.New(hub.Options{})
	var sinks []*fakeSink
	for i := range 5 {
		s := newSink()
		c := register(t, h, s, "x")
		s.onClose = c.Finish // as a transport's reader does when its socket closes
		if i%2 == 0 {
			if err := c.SetSession(session(int64(i+1), "s")); err != nil {
				t.Fatal(err)
			}
		}
		sinks = append(sinks, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.Shutdown(ctx, node.CloseGoingAway, "server shutting down")
	if ctx.Err() != nil {
		t.Fatal("Shutdown ran into its deadline")
	}
	for i, s := range sinks {
		if n, code := s.closed(); n != 1 || code != node.CloseGoingAway {
			t.Fatalf("connection %d: %d closes, code %d", i, n, code)
		}
	}
	if n := h.Stats().Connections; n != 0 {
		t.Fatalf("%d connections after Shutdown", n)
	}
	if _, err := h.Register(newSink(), node.TCP, "x", 0); !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("Register after Shutdown: %v", err)
	}
}

// The keep-alive ping runs on its interval and stops with the connection.
func TestPingStopsWithTheConnection(t *testing.T) {
	h := hub.New(hub.Options{})
	s := newSink()
	c, err := h.Register(s, node.WebSocket, "x", 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	pings := func() int {
		n := 0
		for _, ev := range s.Events() {
			if ev == "ping" {
				n++
			}
		}
		return n
	}
	waitFor(t, "three pings", func() bool { return pings() >= 3 })
	c.Close(node.CloseGoingAway, "")
	c.Finish()
	s.seal()
	time.Sleep(30 * time.Millisecond)
	if late := s.lateCalls(); len(late) > 0 {
		t.Fatalf("the sink was used after Finish: %q", late)
	}
}

// Many goroutines register, log in and out, deliver, broadcast, kick, end
// sessions and finish at once, while the presence callback calls back into
// the hub as the chat service does. Under -race this proves the lock order
// (presenceMu, then mu, then Conn.mu) holds and no index is touched
// unguarded; a deadlock fails the test with every goroutine's stack.
func TestConcurrentUseIsDeadlockFree(t *testing.T) {
	var h *hub.Hub
	var told atomic.Int64
	var plog presenceLog
	h = hub.New(hub.Options{
		PresenceGrace: 5 * time.Millisecond,
		QueueFrames:   64,
		Log:           quiet,
		OnPresence: func(user int64, online bool, places int) {
			plog.record(user, online, places)
			told.Add(1)
			// As service.PresenceChanged does: read and push from inside the callback.
			_ = h.Online()
			h.Places(user)
			h.Broadcast(frame(fmt.Sprintf("im/presence;%d", user)), 0, 0)
		},
	})
	const workers, users = 8, 5
	deadline := time.Now().Add(400 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []*hub.Conn
			for time.Now().Before(deadline) {
				switch op := rng.IntN(12); {
				case op < 3 || len(mine) == 0:
					s := newSink()
					c, err := h.Register(s, node.Method(1<<rng.IntN(3)), fmt.Sprintf("10.0.0.%d", w), 0)
					if err == nil {
						s.onClose = c.Finish
						mine = append(mine, c)
					}
				case op == 3:
					c := mine[rng.IntN(len(mine))]
					_ = c.SetSession(session(int64(1+rng.IntN(users)), fmt.Sprint("sid", rng.IntN(2))))
				case op == 4:
					_ = mine[rng.IntN(len(mine))].SetSession(nil)
				case op == 5:
					mine[rng.IntN(len(mine))].Enqueue(frame("direct"))
				case op == 6:
					h.Deliver([]int64{int64(1 + rng.IntN(users)), int64(1 + rng.IntN(users))}, frame("deliver"), 0)
				case op == 7:
					h.Broadcast(frame("broadcast"), mine[0].ID(), int64(rng.IntN(users)))
				case op == 8 && rng.IntN(8) == 0:
					h.Kick(int64(1+rng.IntN(users)), frame("im/kicked;{}"), node.CloseKicked, "kicked")
				case op == 9:
					h.EndSession(int64(1+rng.IntN(users)), fmt.Sprint("sid", rng.IntN(2)))
				case op == 10:
					_ = h.Stats()
					_ = h.UserConns(int64(1 + rng.IntN(users)))
				default:
					i := rng.IntN(len(mine))
					mine[i].Finish()
					mine = append(mine[:i], mine[i+1:]...)
				}
			}
			for _, c := range mine {
				c.Finish()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		t.Fatal("deadlock: the workers did not finish (stacks above)")
	}
	waitFor(t, "every connection gone", func() bool { return h.Stats().Connections == 0 })
	waitFor(t, "everyone offline after the grace", func() bool { return len(h.Online()) == 0 })
	time.Sleep(20 * time.Millisecond) // let any last grace timer report
	if told.Load() == 0 {
		t.Fatal("no presence change was reported at all")
	}
	// Per user, presence must read as a consistent story: never offline
	// twice in a row, never a repeated place count, and offline at the end.
	last := map[string]string{}
	for _, ev := range plog.get() {
		user, state, _ := strings.Cut(ev, ":")
		prev, seen := last[user]
		if seen && prev == state {
			t.Fatalf("user %s told %q twice in a row", user, state)
		}
		if !seen && strings.HasPrefix(state, "false") {
			t.Fatalf("user %s told offline before ever online", user)
		}
		last[user] = state
	}
	for user, state := range last {
		if state != "false:0" {
			t.Fatalf("user %s ended as %q, want offline", user, state)
		}
	}
}
