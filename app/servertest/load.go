package servertest

// Helpers for load, fault and leak tests: clients that hand their pushes to
// a function instead of keeping them (a lobby of 500 readers receives
// hundreds of thousands of pushes), latency percentiles, the process's own
// resource figures, and a Server value for a server in another process.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/wire"

	"github.com/fasthttp/websocket"
)

// Remote is a Server for a server that runs in another process (the real
// binary): only its addresses are set, so the Dial*, Post and Do methods
// work and nothing else does.
func Remote(httpAddr, tcpAddr, udpAddr string) *Server {
	return &Server{HTTPURL: "http://" + httpAddr, WSURL: "ws://" + httpAddr + "/ws", TCPAddr: tcpAddr, UDPAddr: udpAddr}
}

// DialWSPushes opens a WebSocket like TryDialWS, but every frame that is not
// the reply to a waiting request goes to onPush, on the client's reader
// goroutine, instead of being kept (onPush may be nil to drop them). The
// frame's bytes are its own.
func (s *Server) DialWSPushes(tb testing.TB, query string, onPush func(Frame)) (*Client, error) {
	url := s.WSURL
	if query != "" {
		url += "?" + query
	}
	dialer := websocket.Dialer{HandshakeTimeout: DefaultTimeout}
	conn, _, err := dialer.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	return wsClient(tb, conn, onPush), nil
}

// DialTCPPushes is DialWSPushes over TCP.
func (s *Server) DialTCPPushes(tb testing.TB, onPush func(Frame)) (*Client, error) {
	conn, err := net.DialTimeout("tcp", s.TCPAddr, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return tcpClient(tb, conn, onPush), nil
}

// ErrClosed is returned by Call when the connection closed before the reply.
var ErrClosed = errors.New("the connection closed before the reply")

// Call sends a request and waits for its reply, for at most timeout; unlike
// TryRequest it returns ErrClosed as soon as the connection is closed (a
// killed server), instead of waiting out the timeout.
func (c *Client) Call(path string, body any, timeout time.Duration) (Frame, error) {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	key := path + ":" + id
	ch := make(chan Frame, 1)
	c.mu.Lock()
	c.waiters[key] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.waiters, key)
		c.mu.Unlock()
	}
	if err := c.write(c.prepare(wire.AppendFrame(nil, path, id, encodeBody(body)))); err != nil {
		forget()
		return Frame{}, err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case f := <-ch:
			return f, nil
		case <-deadline.C:
			forget()
			return Frame{}, fmt.Errorf("%s: no reply in %v", path, timeout)
		case <-poll.C:
			if c.Closed() {
				forget()
				select { // the reply may have come just before the close
				case f := <-ch:
					return f, nil
				default:
				}
				return Frame{}, ErrClosed
			}
		}
	}
}

// LoginHTTP logs nickname in (registering it if new) over HTTP and returns
// the sid. No connection is attached, so nobody is told of presence.
func (s *Server) LoginHTTP(tb testing.TB, nickname, password string) string {
	tb.Helper()
	resp, body := s.Post(tb, "im/login", map[string]string{"nickname": nickname, "password": password})
	var r struct {
		SID string `json:"sid"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || r.SID == "" {
		tb.Fatalf("login %s over HTTP: %d %s", nickname, resp.StatusCode, body)
	}
	return r.SID
}

// Latencies collects durations from many goroutines and reports percentiles.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Len is how many durations were recorded.
func (l *Latencies) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// Percentile is the p-th percentile (0 < p <= 100), nearest rank; 0 when
// nothing was recorded.
func (l *Latencies) Percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	rank := int(float64(len(l.d))*p/100+0.999999) - 1
	return l.d[min(max(rank, 0), len(l.d)-1)]
}

// String is "n=N p50=… p99=… max=…".
func (l *Latencies) String() string {
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", l.Len(), l.Percentile(50).Round(10*time.Microsecond),
		l.Percentile(99).Round(10*time.Microsecond), l.Percentile(100).Round(10*time.Microsecond))
}

// OpenFDs is how many file descriptors this process has open, leaving out
// those whose target starts with one of ignore (pass the store's path to
// leave out its pool of SQLite handles, which is bounded and grows with
// concurrent reads).
func OpenFDs(tb testing.TB, ignore ...string) int {
	tb.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
next:
	for _, e := range entries {
		if len(ignore) > 0 {
			target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
			for _, prefix := range ignore {
				if strings.HasPrefix(target, prefix) {
					continue next
				}
			}
		}
		n++
	}
	return n
}

// RSS is this process's resident set size in bytes.
func RSS(tb testing.TB) uint64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skipf("no /proc/self/statm: %v", err)
	}
	var size, resident uint64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		tb.Fatalf("statm: %v", err)
	}
	return resident * uint64(os.Getpagesize())
}

// HeapInUse is the Go heap in use after two collections (sync.Pool keeps
// its objects through the first).
func HeapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Settle polls measure every 20 ms until it is at most limit or timeout
// passes, and returns the last value (so a caller can report it).
func Settle(timeout time.Duration, limit int, measure func() int) int {
	deadline := time.Now().Add(timeout)
	for {
		n := measure()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
