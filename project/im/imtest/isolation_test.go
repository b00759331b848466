package imtest

// Isolation (TESTPLAN F12): no client's socket delays anyone else's
// delivery or a sender's acknowledgement. A client that floods WebSocket
// pings and never reads the pongs is the hostile case: every ping asks the
// server to write to a socket that takes nothing.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"

	"github.com/fasthttp/websocket"
	"github.com/gobwas/ws"
)

// isoSmallReceiveBuffer is a dialer's NetDial that sets SO_RCVBUF to size
// before connecting, so that the window the socket advertises stays small.
func isoSmallReceiveBuffer(size int) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
			}); err != nil {
				return err
			}
			return serr
		}}
		return d.Dial(network, addr)
	}
}

// isoFloodPings writes masked WebSocket pings to conn, 32 at a time about
// every millisecond (some 30,000 a second), until stop is closed or the
// socket fails, and never reads. It returns how many pings went out once
// it has stopped.
func isoFloodPings(conn net.Conn, stop <-chan struct{}) <-chan int64 {
	done := make(chan int64, 1)
	go func() {
		var sent int64
		defer func() { done <- sent }()
		var batch bytes.Buffer
		for {
			select {
			case <-stop:
				return
			default:
			}
			batch.Reset()
			for range 32 {
				var payload [16]byte
				binary.BigEndian.PutUint64(payload[:], uint64(sent))
				sent++
				if err := ws.WriteFrame(&batch, ws.MaskFrameInPlace(ws.NewPingFrame(payload[:]))); err != nil {
					return
				}
			}
			_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := conn.Write(batch.Bytes()); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue // the server is not reading: keep pushing
				}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return done
}

// F12: logged-in clients whose sockets have a 2 KiB receive buffer flood
// WebSocket pings and never read. WebSocket and TCP readers that attached
// after them get every lobby message with push p99 ≤ 150 ms, the lobby
// sender's acks stay ≤ 100 ms, and private messages to a flooder are
// acknowledged to their sender within 100 ms; the flood does not grow the
// server's memory, and the flooders, whose writers cannot write, are
// closed by the write timeout (10 s), the others never.
//
// Two flooders, so that each kind of delivery meets one whose socket is
// full while it looks idle: the first is sent the private messages from
// the start, the second only the lobby's, which begin halfway. Neither
// watches presence, so nothing else is ever sent to them.
func TestF12PingFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped in -short mode")
	}
	const (
		flooders   = 2
		wsReaders  = 5
		tcpReaders = 5
		duration   = 8 * time.Second
		every      = 250 * time.Millisecond
	)
	s := servertest.Start(t, func(c *config.Config) {
		// As in F5: a stray fsync of this VM's disk is not what F12
		// measures, and a bounded send buffer fills the flooders' sockets
		// within the first second instead of after 4 MiB of pongs.
		c.Store.Synchronous = "NORMAL"
		c.Transport.SendBufferBytes = 64 << 10
	})
	// Users 0 and 1 flood, 2 sends to the lobby, 3 sends to user 0, the rest read.
	const lobbyUser, privateUser, firstReader = flooders, flooders + 1, flooders + 2
	n := firstReader + wsReaders + tcpReaders
	sids, ids := make([]string, n), make([]int64, n)
	loadParallel(t, n, 4, func(i int) (err error) {
		sids[i], ids[i], err = loadLogin(s, fmt.Sprintf("f12-%d", i))
		return err
	})

	slowBefore := s.Status().SlowClosed
	stopFlood := make(chan struct{})
	var floodDone []<-chan int64
	defer func() {
		select {
		case <-stopFlood:
		default:
			close(stopFlood)
		}
	}()
	dialer := websocket.Dialer{NetDial: isoSmallReceiveBuffer(2048), HandshakeTimeout: 5 * time.Second}
	for i := range flooders {
		flooder, _, err := dialer.Dial(s.WSURL+"?presence=0&sid="+sids[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer flooder.Close()
		servertest.Eventually(t, 5*time.Second, "the flooder logged in", func() bool { return len(s.Hub.UserConns(ids[i])) == 1 })
		floodDone = append(floodDone, isoFloodPings(flooder.NetConn(), stopFlood))
	}
	time.Sleep(time.Second) // the pongs fill the flooders' sockets

	// Everyone else attaches after the flooders, so a broadcast reaches
	// them after the flooders.
	var sentAt sync.Map
	var pushLatency, ackLatency, privateAck servertest.Latencies
	readers := make([]*loadReader, 0, wsReaders+tcpReaders)
	var clients []*servertest.Client
	for i := lobbyUser; i < n; i++ {
		r := &loadReader{self: ids[i], seen: map[int64]bool{}, last: map[int64]int64{}}
		onPush := func(f servertest.Frame) { r.onPush(f, &sentAt, &pushLatency) }
		var c *servertest.Client
		var err error
		if i < firstReader+wsReaders {
			c, err = s.DialWSPushes(t, "sid="+sids[i], onPush)
		} else if c, err = s.DialTCPPushes(t, onPush); err == nil {
			var f servertest.Frame
			if f, err = c.Call("im/resume", map[string]string{"sid": sids[i]}, 10*time.Second); err == nil && f.ErrorCode() != "" {
				err = fmt.Errorf("im/resume: %s", f.Body)
			}
		}
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		clients = append(clients, c)
		if i >= firstReader {
			readers = append(readers, r)
		}
	}
	servertest.Eventually(t, 5*time.Second, "every reader attached", func() bool {
		for i := range n {
			if len(s.Hub.UserConns(ids[i])) != 1 {
				return false
			}
		}
		return true
	})

	// The flood goes on from here to the end: what the server keeps for it
	// must not grow (the heap is this process's, clients included).
	heapBefore := servertest.HeapInUse()

	var wg sync.WaitGroup
	var acked, failed atomic.Int64
	end := time.Now().Add(duration)
	send := func(c *servertest.Client, to, prefix string, lat *servertest.Latencies, lobby bool) {
		defer wg.Done()
		if lobby {
			time.Sleep(duration / 2)
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for m := 0; time.Now().Before(end); m++ {
			cid := fmt.Sprintf("%s-%d", prefix, m)
			sent := time.Now()
			sentAt.Store(cid, sent)
			f, err := c.Call("im/send", map[string]string{"to": to, "text": "isolation " + cid, "cid": cid}, 30*time.Second)
			if err != nil || f.ErrorCode() != "" {
				failed.Add(1)
				t.Errorf("send %s: %v %s", cid, err, f.Body)
			} else {
				lat.Add(time.Since(sent))
				if lobby {
					acked.Add(1)
				}
			}
			<-tick.C
		}
	}
	wg.Add(2)
	go send(clients[0], "room:lobby", "f12-lobby", &ackLatency, true)
	go send(clients[1], "user:"+strconv.FormatInt(ids[0], 10), "f12-private", &privateAck, false)
	wg.Wait()
	heapGrowth := int64(servertest.HeapInUse()) - int64(heapBefore)
	close(stopFlood)
	var pings int64
	for _, done := range floodDone {
		pings += <-done
	}

	total := int(acked.Load())
	lost := servertest.Settle(5*time.Second, 0, func() int {
		lost := 0
		for _, r := range readers {
			lost += max(0, total-r.count())
		}
		return lost
	})
	floodersGone := func() int {
		gone := 0
		for i := range flooders {
			if len(s.Hub.UserConns(ids[i])) == 0 {
				gone++
			}
		}
		return gone
	}
	servertest.Settle(time.Duration(s.Config.Transport.WriteTimeout.Duration), 0, func() int { return flooders - floodersGone() })
	slow := s.Status().SlowClosed - slowBefore
	closedOthers := 0
	for _, c := range clients {
		if c.Closed() {
			closedOthers++
		}
	}
	t.Logf("F12: pings=%d lobby_sends=%d failed=%d lost=%d push %v lobby ack %v private ack %v flooders_closed=%d slow_closed=%d heap_growth=%dB",
		pings, total, failed.Load(), lost, &pushLatency, &ackLatency, &privateAck, floodersGone(), slow, heapGrowth)
	if failed.Load() != 0 || lost != 0 {
		t.Errorf("%d sends failed; the readers lost %d pushes", failed.Load(), lost)
	}
	if closedOthers != 0 {
		t.Errorf("%d connections other than the flooders were closed", closedOthers)
	}
	if gone := floodersGone(); gone != flooders || slow != flooders {
		t.Errorf("%d of %d flooders closed, SlowClosed up by %d; want every flooder closed as slow, and nobody else", gone, flooders, slow)
	}
	// A flooder's pongs are one pending answer, not a growing queue; its
	// send queue holds a few dozen small frames.
	if heapGrowth > 2<<20 {
		t.Errorf("the heap grew by %d bytes under the ping flood", heapGrowth)
	}
	if !raceEnabled {
		if p99 := pushLatency.Percentile(99); p99 > 150*time.Millisecond {
			t.Errorf("readers' push p99 %v, over 150 ms", p99)
		}
		if p99 := ackLatency.Percentile(99); p99 > 100*time.Millisecond {
			t.Errorf("lobby sender's ack p99 %v, over 100 ms", p99)
		}
		if p99 := privateAck.Percentile(99); p99 > 100*time.Millisecond {
			t.Errorf("acks of private messages to a flooder: p99 %v, over 100 ms", p99)
		}
	}
}
