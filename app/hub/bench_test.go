package hub_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/hub"
	"dce/app/node"
)

// Queue bounds far above anything a benchmark run can queue: the broadcaster
// may run ahead of the writers by b.N frames per connection, and a
// connection closed as slow would lose frames the benchmark waits for.
const (
	benchQueueBytes  = 1 << 40
	benchQueueFrames = 1 << 30
)

// benchPush is a typical push frame (106 bytes), encoded once and shared by
// every queue as the chat service's push does.
var benchPush = []byte(`im/message;{"id":81,"from":{"id":7,"name":"alice"},"to":"room:lobby","text":"hi there","ts":1763800000123}`)

// countingSink is a transport whose writes cost only an atomic add to a
// counter shared by every connection of the benchmark. Close finishes the
// connection from a new goroutine, as a transport's reader does when its
// socket closes.
type countingSink struct {
	written *atomic.Int64
	conn    *hub.Conn // set once registered, before any frame is queued
}

func (s *countingSink) WriteFrames(frames [][]byte) error {
	s.written.Add(int64(len(frames)))
	return nil
}

func (s *countingSink) Ping() error { return nil }

func (s *countingSink) Close(node.CloseCode, string) { go s.conn.Finish() }

func (s *countingSink) Abort() {}

// BenchmarkDeliver fans one pre-encoded frame per iteration out to every
// logged-in connection (each its own user), through Broadcast and through
// Deliver to the list of every user, and counts the time until every
// writer has handed every frame to its sink. ns/op is one fan-out to all
// the connections; ns/delivery and deliveries/s are per frame written.
func BenchmarkDeliver(b *testing.B) {
	fanOuts := []struct {
		name   string
		fanOut func(h *hub.Hub, users []int64)
	}{
		{"Broadcast", func(h *hub.Hub, _ []int64) { h.Broadcast(benchPush, 0, 0) }},
		{"Deliver", func(h *hub.Hub, users []int64) { h.Deliver(users, benchPush, 0) }},
	}
	for _, f := range fanOuts {
		for _, conns := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/conns=%d", f.name, conns), func(b *testing.B) {
				benchmarkFanOut(b, conns, f.fanOut)
			})
		}
	}
}

func benchmarkFanOut(b *testing.B, conns int, fanOut func(h *hub.Hub, users []int64)) {
	goroutinesBefore := runtime.NumGoroutine()
	var written atomic.Int64
	h := hub.New(hub.Options{QueueBytes: benchQueueBytes, QueueFrames: benchQueueFrames, Log: quiet})
	b.Cleanup(func() { shutdownBenchHub(b, h, goroutinesBefore) })
	users := make([]int64, conns)
	for i := range conns {
		s := &countingSink{written: &written}
		c, err := h.Register(s, node.WebSocket, "10.0.0.1", 0)
		if err != nil {
			b.Fatalf("register: %v", err)
		}
		s.conn = c
		users[i] = int64(i + 1)
		if err := c.SetSession(session(users[i], fmt.Sprint("sid-", i))); err != nil {
			b.Fatalf("log in: %v", err)
		}
	}
	if st := h.Stats(); st.Online != conns {
		b.Fatalf("%d users online, want %d", st.Online, conns)
	}

	want := int64(b.N) * int64(conns)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		fanOut(h, users)
	}
	waitWritten(b, h, &written, want)
	b.StopTimer()

	elapsed := b.Elapsed()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(want), "ns/delivery")
	st := h.Stats()
	if st.SlowClosed != 0 {
		b.Fatalf("%d connections were closed as slow: frames were lost", st.SlowClosed)
	}
	if st.Delivered != uint64(want) || written.Load() != want {
		b.Fatalf("delivered %d, written %d, want %d each", st.Delivered, written.Load(), want)
	}
}

// waitWritten spins until the sinks have been handed want frames. It yields
// rather than sleeps so that the writers get the processor at once; the
// clock is read only now and then, and a stall fails the benchmark.
func waitWritten(b *testing.B, h *hub.Hub, written *atomic.Int64, want int64) {
	deadline := time.Now().Add(time.Minute)
	for spins := 0; written.Load() < want; spins++ {
		runtime.Gosched()
		if spins%4096 == 0 && time.Now().After(deadline) {
			b.Fatalf("writers stalled: %d of %d frames written; %+v", written.Load(), want, h.Stats())
		}
	}
}

// shutdownBenchHub closes every connection through Shutdown and checks
// that the hub let go of all of them and that their goroutines have ended.
func shutdownBenchHub(b *testing.B, h *hub.Hub, goroutinesBefore int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.Shutdown(ctx, node.CloseGoingAway, "benchmark over")
	if ctx.Err() != nil {
		b.Errorf("Shutdown ran into its deadline with %d connections left", h.Stats().Connections)
		return
	}
	if n := h.Stats().Connections; n != 0 {
		b.Errorf("%d connections left after Shutdown", n)
	}
	// The Finish goroutines return just after the hub forgets their
	// connection: give them a moment to exit.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutinesBefore {
		if time.Now().After(deadline) {
			b.Errorf("%d goroutines still running after Shutdown, %d before the hub", runtime.NumGoroutine(), goroutinesBefore)
			return
		}
		time.Sleep(time.Millisecond)
	}
}
