package imtest

// Faults survived (TESTPLAN section 2) that need no second process: F5 slow
// consumer and F6 dead peer. F1 and F3 run the real binary, in
// app/boot/process_test.go.

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"

	"github.com/fasthttp/websocket"
)

// faultTinyReceiveBuffer dials TCP with SO_RCVBUF = 4096, set before
// connect so that the window it advertises stays small.
func faultTinyReceiveBuffer(network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	return d.Dial(network, addr)
}

// F5: a logged-in reader whose socket has a 4 KiB receive buffer and who
// never reads, while 5 senders push 4,000-character lobby messages at 2/s
// each (queue 16 frames, write timeout 2 s, server send buffer 64 KiB). It
// must be closed within the write timeout + 1 s of its queue filling (the
// moment SlowClosed counts it), with 4008 or a reset (1006 once read: the
// close frame cannot pass a full socket), and shown offline; the other
// readers and senders must not notice.
func TestF5SlowConsumer(t *testing.T) { faultSlowConsumer(t, false) }

// F5 with the F12 flooder: the stalled reader also floods pings, which the
// server must answer through the reader's own writer; the figures are F5's.
func TestF5SlowConsumerPingFlood(t *testing.T) { faultSlowConsumer(t, true) }

func faultSlowConsumer(t *testing.T, flood bool) {
	if testing.Short() {
		t.Skip("fault test: skipped in -short mode")
	}
	const (
		senders      = 5
		readers      = 20
		writeTimeout = 2 * time.Second
	)
	s := servertest.Start(t, func(c *config.Config) {
		c.Transport.QueueFrames = 16
		c.Transport.WriteTimeout = config.Duration{Duration: writeTimeout}
		// Without a bound the kernel grows the server's send buffer to
		// 4 MiB, which these senders take about 100 s to fill before the
		// queue sees anything (the pong wait closes the reader first).
		c.Transport.SendBufferBytes = 64 << 10
		// What F5 measures is whether one stalled reader slows the others.
		// On this VM a single fsync now and then takes 100-600 ms, and with
		// ~50 acks that one commit is the p99; NORMAL (no fsync per commit)
		// keeps the disk out of a figure that is not about the disk. L2 and
		// F1 keep FULL.
		c.Store.Synchronous = "NORMAL"
	})
	n := 1 + senders + readers // user 0 is the slow one
	sids, ids := make([]string, n), make([]int64, n)
	loadParallel(t, n, 4, func(i int) (err error) {
		sids[i], ids[i], err = loadLogin(s, fmt.Sprintf("f5-%d", i))
		return err
	})
	var sentAt sync.Map
	var pushLatency, ackLatency servertest.Latencies
	watcher := &loadWatcher{events: map[int64][]loadPresence{}}
	clients := make([]*servertest.Client, n)
	others := make([]*loadReader, 0, n-1)
	for i := 1; i < n; i++ {
		r := &loadReader{self: ids[i], seen: map[int64]bool{}, last: map[int64]int64{}}
		others = append(others, r)
		c, err := s.DialWSPushes(t, "sid="+sids[i], func(f servertest.Frame) {
			r.onPush(f, &sentAt, &pushLatency)
			if i == 1 {
				watcher.onPush(f)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}

	dialer := websocket.Dialer{NetDial: faultTinyReceiveBuffer, HandshakeTimeout: 5 * time.Second}
	slow, _, err := dialer.Dial(s.WSURL+"?sid="+sids[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	servertest.Eventually(t, 5*time.Second, "the slow reader online", func() bool { on, _ := watcher.seen(ids[0]); return on == 1 })
	slowBefore := s.Status().SlowClosed
	rssBefore := servertest.RSS(t)
	if flood {
		stopFlood := make(chan struct{})
		floodDone := isoFloodPings(slow.NetConn(), stopFlood)
		defer func() { close(stopFlood); <-floodDone }()
	}

	// Senders run until told to stop.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked, failed atomic.Int64
	ackedBy := make([]atomic.Int64, senders)
	text := strings.Repeat("x", 4000)
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[1+k]
			time.Sleep(time.Duration(k) * 100 * time.Millisecond)
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for m := 0; ; m++ {
				cid := fmt.Sprintf("f5-%d-%d", k, m)
				sent := time.Now()
				sentAt.Store(cid, sent)
				f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "text": text, "cid": cid}, 10*time.Second)
				if err != nil || f.ErrorCode() != "" {
					failed.Add(1)
					t.Errorf("send %s: %v %s", cid, err, f.Body)
				} else {
					acked.Add(1)
					ackedBy[k].Add(1)
					ackLatency.Add(time.Since(sent))
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}

	// Watch the server: when the slow reader's queue overflows, SlowClosed
	// counts it; then the connection must be gone within the write timeout
	// + 1 s.
	start := time.Now()
	var filled, closed time.Time
	for time.Since(start) < 60*time.Second && closed.IsZero() {
		if filled.IsZero() && s.Hub.Stats().SlowClosed > slowBefore {
			filled = time.Now()
		}
		if len(s.Hub.UserConns(ids[0])) == 0 {
			closed = time.Now()
			// The overflow is counted before the close begins, but the whole
			// close can fit between two polls: then it filled just now.
			if filled.IsZero() && s.Hub.Stats().SlowClosed > slowBefore {
				filled = closed
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if closed.IsZero() {
		close(stop)
		wg.Wait()
		t.Fatalf("the slow reader was not closed in 60 s (slow_closed %d)", s.Status().SlowClosed-slowBefore)
	}
	rssGrowth := int64(servertest.RSS(t)) - int64(rssBefore)
	servertest.Eventually(t, 5*time.Second, "the slow reader shown offline", func() bool { _, off := watcher.seen(ids[0]); return off == 1 })
	time.Sleep(time.Second) // the others keep chatting after the close
	close(stop)
	wg.Wait()

	// The stalled socket ends with a close or a reset once it is read.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	var readErr error
	delivered := 0
	for readErr == nil {
		_, _, readErr = slow.ReadMessage()
		if readErr == nil {
			delivered++
		}
	}
	closeCode := 0
	var ce *websocket.CloseError
	if errors.As(readErr, &ce) {
		closeCode = ce.Code
	}
	var ne net.Error
	if errors.As(readErr, &ne) && ne.Timeout() {
		t.Errorf("the slow reader's socket was still open 10 s after the server dropped it")
	}

	// Every other reader got every message but its own.
	total := int(acked.Load())
	lost := servertest.Settle(5*time.Second, 0, func() int {
		lost := 0
		for i, r := range others { // others[i] is user i+1; users 1..senders send
			want := total
			if i < senders {
				want -= int(ackedBy[i].Load())
			}
			lost += max(0, want-r.count())
		}
		return lost
	})
	fillToClose := time.Duration(-1)
	if !filled.IsZero() {
		fillToClose = closed.Sub(filled)
	}
	slowClosed := s.Status().SlowClosed - slowBefore
	t.Logf("F5 (ping flood %v): closed_after=%v fill_to_close=%v slow_closed=%d close_code=%d delivered_before_close=%d sends=%d failed=%d lost=%d push %v ack %v rss_growth=%dB",
		flood, closed.Sub(start).Round(time.Millisecond), fillToClose.Round(time.Millisecond), slowClosed, closeCode, delivered,
		total, failed.Load(), lost, &pushLatency, &ackLatency, rssGrowth)
	if slowClosed != 1 {
		t.Errorf("SlowClosed went up by %d, want 1", slowClosed)
	}
	if filled.IsZero() || fillToClose > writeTimeout+time.Second {
		t.Errorf("closed %v after its queue filled, want ≤ write timeout + 1 s", fillToClose)
	}
	if closeCode != 0 && closeCode != 4008 && closeCode != websocket.CloseAbnormalClosure {
		t.Errorf("the slow reader was closed with %d, want 4008 or a reset", closeCode)
	}
	if failed.Load() != 0 || lost != 0 {
		t.Errorf("%d sends failed; the other readers lost %d pushes", failed.Load(), lost)
	}
	if !raceEnabled {
		if p99 := pushLatency.Percentile(99); p99 > 150*time.Millisecond {
			t.Errorf("other readers' push p99 %v, over 150 ms", p99)
		}
		if p99 := ackLatency.Percentile(99); p99 > 100*time.Millisecond {
			t.Errorf("senders' ack p99 %v, over 100 ms", p99)
		}
	}
}

// faultRawHandshake opens a TCP connection to addr and completes a
// WebSocket handshake on path by hand; it then reads and writes nothing
// more, like a peer whose process has stopped (the kernel still ACKs).
func faultRawHandshake(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, base64.StdEncoding.EncodeToString(key))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		t.Fatalf("handshake: %q %v", status, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake headers: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}

// F6: a logged-in peer completes the handshake and then answers nothing,
// not even pings (ping every 1 s, dead after 3 s): closed within 4 s, shown
// offline within 4.5 s, and every goroutine it had is gone.
func TestF6DeadPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped in -short mode")
	}
	s := servertest.Start(t, func(c *config.Config) {
		c.Transport.PingInterval = config.Duration{Duration: time.Second}
		c.Transport.PongWait = config.Duration{Duration: 3 * time.Second}
	})
	deadSID, deadID, err := loadLogin(s, "f6-dead")
	if err != nil {
		t.Fatal(err)
	}
	watchSID, _, err := loadLogin(s, "f6-watcher")
	if err != nil {
		t.Fatal(err)
	}
	watcher := &loadWatcher{events: map[int64][]loadPresence{}}
	if _, err := s.DialWSPushes(t, "sid="+watchSID, watcher.onPush); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 5*time.Second, "the watcher online", func() bool { return s.Hub.Stats().Online == 1 })
	base := loadMeasure(t, s)

	conn := faultRawHandshake(t, strings.TrimPrefix(s.HTTPURL, "http://"), "/ws?sid="+deadSID)
	start := time.Now()
	servertest.Eventually(t, 2*time.Second, "the dead peer online", func() bool { on, _ := watcher.seen(deadID); return on == 1 })
	var closed, offline time.Time
	for time.Since(start) < 10*time.Second && (closed.IsZero() || offline.IsZero()) {
		if closed.IsZero() && len(s.Hub.UserConns(deadID)) == 0 {
			closed = time.Now()
		}
		if _, off := watcher.seen(deadID); offline.IsZero() && off > 0 {
			offline = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if closed.IsZero() || offline.IsZero() {
		t.Fatalf("after 10 s the dead peer is closed: %v, offline: %v", !closed.IsZero(), !offline.IsZero())
	}

	// The socket really is closed: reading it now ends (after the pings
	// that were sent) with EOF or a reset, not a timeout.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var readErr error
	for readErr == nil {
		_, readErr = conn.Read(buf)
	}
	var ne net.Error
	socketClosed := !(errors.As(readErr, &ne) && ne.Timeout())
	conn.Close()
	g := servertest.Settle(5*time.Second, base.goroutines, runtime.NumGoroutine)
	t.Logf("F6: closed_after=%v offline_after=%v socket_closed=%v goroutines=%d (baseline %d)",
		closed.Sub(start).Round(time.Millisecond), offline.Sub(start).Round(time.Millisecond), socketClosed, g, base.goroutines)
	if closed.Sub(start) > 4*time.Second {
		t.Errorf("the dead peer was closed after %v, want ≤ 4 s", closed.Sub(start))
	}
	if closed.Sub(start) < 2*time.Second {
		t.Errorf("the dead peer was closed after %v, before its 3 s pong wait could have run out", closed.Sub(start))
	}
	if offline.Sub(start) > 4500*time.Millisecond {
		t.Errorf("the dead peer went offline after %v, want ≤ 4.5 s", offline.Sub(start))
	}
	if !socketClosed {
		t.Errorf("the server dropped the dead peer but its socket stays open: %v", readErr)
	}
	if g > base.goroutines {
		t.Errorf("goroutines %d after the dead peer was dropped, baseline %d", g, base.goroutines)
	}
}
