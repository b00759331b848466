package bench_test

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/bench"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

// startRelay serves a plain broadcast room, as the bare stack's probe
// does: every text message a client sends goes to every client, the
// sender included. Like the probe, it puts a connection in the room in
// its handler, after the upgrade; every other connection waits join
// first, so that a load tool that sends as soon as its upgrades returned
// misses the late ones.
func startRelay(t *testing.T, join time.Duration) string {
	t.Helper()
	var (
		mu     sync.Mutex
		conns  = map[*websocket.Conn]*sync.Mutex{}
		joined atomic.Int64
	)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/ws", websocket.New(func(c *websocket.Conn) {
		if c.Query("room") != "lobby" {
			return
		}
		if joined.Add(1)%2 == 0 {
			time.Sleep(join)
		}
		mu.Lock()
		conns[c] = &sync.Mutex{}
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			mu.Lock()
			for other, wmu := range conns {
				wmu.Lock()
				_ = other.WriteMessage(kind, msg)
				wmu.Unlock()
			}
			mu.Unlock()
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	return "ws://" + ln.Addr().String() + "/ws"
}

func TestBenchFanoutPlainDrivesABroadcastServer(t *testing.T) {
	// Every other connection joins the room 200 ms after its upgrade: the
	// tool must wait for all of them before it sends a message it counts.
	o := bench.Options{URL: startRelay(t, 200*time.Millisecond), Timeout: 30 * time.Second, Server: bench.ProcessFigures(os.Getpid())}
	res, err := bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 50, Pubs: 2, Msgs: 400, Size: 64, Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Workload != "fanout-plain" || res.Acked != 400 || res.Failed != 0 {
		t.Fatalf("%s: acked %d of 400, %d failed (%s)", res.Workload, res.Acked, res.Failed, res.FirstError)
	}
	if res.Lost != 0 || res.Duplicated != 0 || res.OutOfOrder != 0 || res.Delivered != 50*400 {
		t.Fatalf("delivered %d of %d: lost %d, duplicated %d, out of order %d", res.Delivered, res.Expected,
			res.Lost, res.Duplicated, res.OutOfOrder)
	}
	if res.Latency.P99 <= 0 || res.Ack.P99 <= 0 || res.ServerCPUS <= 0 || res.Server.RSSBytes == 0 {
		t.Errorf("no latency, CPU or memory measured: %+v", res)
	}
}

func TestProcessFiguresNamesAMissingProcess(t *testing.T) {
	if _, err := bench.ProcessFigures(1 << 30)(); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
