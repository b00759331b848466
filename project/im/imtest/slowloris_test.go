package imtest

import (
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// TestF7Slowloris: connections that trickle a byte a second and never finish
// a line (TCP) or a request head (HTTP, the WebSocket upgrade) are closed at
// the frame or header timeout, and a normal client is served promptly
// meanwhile.
func TestF7Slowloris(t *testing.T) {
	const (
		perTransport = 150
		timeout      = 2 * time.Second
	)
	s := servertest.Start(t, func(c *config.Config) {
		c.Transport.FrameTimeout = config.Duration{Duration: timeout}
		c.Transport.HTTPReadTimeout = config.Duration{Duration: timeout}
		c.Limits.AnonConnectionsPerIP = 1000
	})
	fdsBefore := openFDs(t)
	normal := s.DialTCP(t)
	normal.OK("ping", nil, nil)

	type victim struct {
		conn   net.Conn
		closed chan time.Duration
	}
	var victims []victim
	start := time.Now()
	for i := 0; i < 2*perTransport; i++ {
		addr, head := s.TCPAddr, "im/send:1;{\"to\":\"room:lobby\""
		if i%2 == 1 {
			addr, head = s.HTTPURL[len("http://"):], "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		}
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		v := victim{conn: conn, closed: make(chan time.Duration, 1)}
		victims = append(victims, v)
		go func() { // a byte a second, never the end of the line or head
			for j := 0; ; j = (j + 1) % len(head) {
				if _, err := conn.Write([]byte{head[j]}); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := conn.Read(buf); err != nil {
					v.closed <- time.Since(start)
					return
				}
			}
		}()
	}

	// Meanwhile a normal client pings.
	var latencies []time.Duration
	deadline := time.Now().Add(timeout + 1500*time.Millisecond)
	for time.Now().Before(deadline) {
		t0 := time.Now()
		normal.OK("ping", nil, nil)
		latencies = append(latencies, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	open := 0
	for _, v := range victims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case d := <-v.closed:
				mu.Lock()
				worst = max(worst, d)
				mu.Unlock()
			case <-time.After(timeout + 3*time.Second):
				mu.Lock()
				open++
				mu.Unlock()
			}
			v.conn.Close()
		}()
	}
	wg.Wait()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p99 := latencies[len(latencies)*99/100]
	t.Logf("F7: victims=%d still_open=%d slowest_close=%v ping_p99=%v pings=%d", len(victims), open, worst, p99, len(latencies))
	if open > 0 {
		t.Fatalf("%d trickling connections were not closed within the timeout", open)
	}
	if p99 > 50*time.Millisecond && !raceEnabled {
		t.Errorf("a normal client's ping p99 = %v during the attack, want <= 50ms", p99)
	}
	normal.Close()
	servertest.Eventually(t, 5*time.Second, "fds back to baseline", func() bool { return openFDs(t) <= fdsBefore+5 })
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(entries)
}
