package bench

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// pollerPair is a client read by a poller, and the other end of its
// socket, which plays the server.
func pollerPair(t *testing.T, onPush func(path, body []byte, size int)) (*client, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	server := os.NewFile(uintptr(fds[1]), "server")
	t.Cleanup(func() { server.Close() })
	f := os.NewFile(uintptr(fds[0]), "client")
	nc, err := net.FileConn(f) // a duplicate: f is closed below, nc by newSock
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{onPush: onPush, waiting: map[uint64]chan reply{}, done: make(chan struct{})}
	if c.s, err = newSock(nc, c.consume, c.ended); err != nil {
		t.Fatal(err)
	}
	if err := c.s.start(nil); err != nil {
		t.Fatal(err)
	}
	return c, server
}

func serverFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, ws.NewFrame(op, fin, payload)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// The poller hands every frame over whole and in order however the bytes
// are split between reads: headers of every length form, fragments, a
// ping answered in the middle, and a close at the end.
func TestPollerReadsFramesSplitAnywhere(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	c, server := pollerPair(t, func(path, body []byte, _ int) {
		mu.Lock()
		got = append(got, string(path)+";"+string(body))
		mu.Unlock()
	})

	var stream []byte
	var want []string
	for i, size := range []int{0, 1, 100, 125, 126, 127, 65535, 65536, 200_000, 3} {
		body := strings.Repeat(string(rune('a'+i%26)), size)
		want = append(want, "im/message;"+body)
		stream = append(stream, serverFrame(ws.OpText, true, []byte("im/message;"+body))...)
		if i == 4 {
			stream = append(stream, serverFrame(ws.OpPing, true, []byte("are you there"))...)
		}
	}
	want = append(want, "im/typing;in three parts")
	stream = append(stream, serverFrame(ws.OpText, false, []byte("im/typing;in "))...)
	stream = append(stream, serverFrame(ws.OpContinuation, false, []byte("three "))...)
	stream = append(stream, serverFrame(ws.OpContinuation, true, []byte("parts"))...)
	stream = append(stream, serverFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))...)

	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for rest := stream; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(300))
			if rng.IntN(10) == 0 {
				n = min(len(rest), 1+rng.IntN(100_000))
			}
			if _, err := server.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			if rng.IntN(4) == 0 {
				time.Sleep(100 * time.Microsecond) // let the poller read what is there
			}
		}
	}()

	// The pong comes back masked, with the ping's payload; then the close.
	var frames []ws.Frame
	for len(frames) < 2 {
		f, err := ws.ReadFrame(server)
		if err != nil {
			t.Fatalf("reading the client's frames: %v", err)
		}
		frames = append(frames, ws.UnmaskFrameInPlace(f))
	}
	if frames[0].Header.OpCode != ws.OpPong || string(frames[0].Payload) != "are you there" || frames[1].Header.OpCode != ws.OpClose {
		t.Errorf("the client answered %v %q, then %v", frames[0].Header.OpCode, frames[0].Payload, frames[1].Header.OpCode)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the close frame did not end the client")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: %d bytes starting %.20q, want %d starting %.20q", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
	if c.closeCode != int(ws.StatusGoingAway) || c.alive() {
		t.Errorf("close code %d, alive %v", c.closeCode, c.alive())
	}
	if err := c.writeFrame(ws.OpText, []byte("ping")); err == nil {
		t.Error("a write after the close succeeded")
	}
}

// A request waiting for its reply fails when the peer goes away, a
// frame over the limit ends the connection, and close() returns even when
// the peer never answers the close.
func TestPollerEndsWithThePeer(t *testing.T) {
	c, server := pollerPair(t, nil)
	ch, err := c.start("im/signer", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.ReadFrame(server); err != nil { // the request
		t.Fatal(err)
	}
	server.Close()
	select {
	case r := <-ch:
		if r.err == nil {
			t.Errorf("the request got %q from a closed peer", r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request waited on after the peer closed")
	}

	c, server = pollerPair(t, nil)
	huge := serverFrame(ws.OpText, true, make([]byte, 2<<20))
	go server.Write(huge)
	select {
	case <-c.done:
		if c.err == nil || !strings.Contains(c.err.Error(), "frame of") {
			t.Errorf("ended with %v, want the frame's size named", c.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a 2 MiB frame did not end the connection")
	}

	c, server = pollerPair(t, nil)
	go io.Copy(io.Discard, server) // reads the close, never answers it
	start := time.Now()
	c.close()
	if c.alive() || time.Since(start) > 5*time.Second {
		t.Errorf("close: alive %v after %s", c.alive(), time.Since(start))
	}
}

// Many connections over the pollers, each a stream of numbered frames:
// every one arrives, in order, on the right connection.
func TestPollerKeepsConnectionsApart(t *testing.T) {
	const conns, msgs = 200, 50
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		next := 0
		wg.Add(1)
		_, server := pollerPair(t, func(path, body []byte, _ int) {
			if want := fmt.Sprintf("%d-%d", i, next); string(body) != want {
				errs <- fmt.Errorf("connection %d got %q, want %q", i, body, want)
			}
			next++
			if next == msgs {
				wg.Done()
			}
		})
		go func() {
			for m := range msgs {
				if _, err := server.Write(serverFrame(ws.OpText, true, fmt.Appendf(nil, "n;%d-%d", i, m))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("not every message arrived")
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// A connection whose socket is full does not hold up the others its
// poller reads: the pong to a ping is written without waiting.
func TestPollerNeverWaitsForAFullSocket(t *testing.T) {
	full, fullServer := pollerPair(t, nil)
	got := make(chan time.Time, 1)
	var otherServer *os.File
	for range 2 * len(pollers) { // pollers are handed out in turn: find one on full's
		c, s := pollerPair(t, func(path, body []byte, _ int) { got <- time.Now() })
		if c.s.p == full.s.p {
			otherServer = s
			break
		}
	}
	if otherServer == nil {
		t.Fatal("no second connection on the first one's poller")
	}
	junk := make([]byte, 64<<10)
	for {
		if _, err := rawWrite(full.s.fd, junk); err == unix.EAGAIN {
			break // the peer reads nothing: the socket is full
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fullServer.Write(serverFrame(ws.OpPing, true, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the poller has read the ping and queued the pong
	sent := time.Now()
	if _, err := otherServer.Write(serverFrame(ws.OpText, true, []byte("im/message;hello"))); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if d := at.Sub(sent); d > time.Second {
			t.Errorf("the other connection's message waited %s for the full socket", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the other connection's message never arrived")
	}
}
