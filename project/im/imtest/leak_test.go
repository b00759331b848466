package imtest

// Leaks (TESTPLAN R1): a thousand short sessions over each transport must
// leave no goroutine, file or heap behind. The clients here are bare (no
// servertest.Client, whose test cleanups would keep every client alive and
// count against the heap figure).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/app/wire"
	"dce/common/config"

	"github.com/fasthttp/websocket"
)

// leakCycle is one connect, log in or resume, send, load, close on one
// transport. sid is "" on the first cycle, which logs in and returns the sid.
type leakCycle func(s *servertest.Server, n int, sid string) (string, error)

// leakExchange sends frame PATH:ID;BODY with next and reads frames with
// read until the reply to it comes (pushes are skipped), and checks it is
// not an error.
func leakExchange(path, id string, body any, write func([]byte) error, read func() ([]byte, error)) (json.RawMessage, error) {
	b, _ := json.Marshal(body)
	if err := write(wire.AppendFrame(nil, path, id, b)); err != nil {
		return nil, err
	}
	for {
		raw, err := read()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		f, err := wire.Parse(raw, 0)
		if err != nil || f.Path != path || f.ID != id {
			continue // a push
		}
		if bytes.Contains(f.Body, []byte(`"error":{`)) {
			return nil, fmt.Errorf("%s: %s", path, f.Body)
		}
		return append(json.RawMessage(nil), f.Body...), nil
	}
}

// leakChat is the part of a cycle every frame transport shares.
func leakChat(n int, sid string, login bool, write func([]byte) error, read func() ([]byte, error)) (string, error) {
	var reply json.RawMessage
	var err error
	if login {
		reply, err = leakExchange("im/login", "1", map[string]string{"nickname": fmt.Sprintf("r1-%d", n), "password": "password1"}, write, read)
		if err != nil {
			return "", err
		}
		var r struct {
			SID string `json:"sid"`
		}
		if err := json.Unmarshal(reply, &r); err != nil {
			return "", err
		}
		sid = r.SID
	} else if sid != "" {
		if reply, err = leakExchange("im/resume", "1", map[string]string{"sid": sid}, write, read); err != nil {
			return "", err
		}
	}
	// Over UDP the address proves it receives before the session attaches.
	var proof struct {
		Verify string `json:"verify"`
	}
	if json.Unmarshal(reply, &proof) == nil && proof.Verify != "" {
		if _, err := leakExchange("im/verify", "v", map[string]string{"token": proof.Verify}, write, read); err != nil {
			return "", err
		}
	}
	if _, err := leakExchange("im/send", "2", map[string]string{"to": "room:lobby", "text": fmt.Sprintf("cycle %d", n)}, write, read); err != nil {
		return "", err
	}
	if _, err := leakExchange("im/load", "3", map[string]any{"with": "room:lobby", "limit": 5}, write, read); err != nil {
		return "", err
	}
	return sid, nil
}

func leakWebSocket(s *servertest.Server, n int, sid string) (string, error) {
	url := s.WSURL
	if sid != "" {
		url += "?sid=" + sid
	}
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := dialer.Dial(url, nil)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	write := func(b []byte) error { return conn.WriteMessage(websocket.TextMessage, b) }
	read := func() ([]byte, error) { _, m, err := conn.ReadMessage(); return m, err }
	// ?sid= resumed the session already.
	return leakChat(n, "", sid == "", write, read)
}

func leakTCP(s *servertest.Server, n int, sid string) (string, error) {
	conn, err := net.DialTimeout("tcp", s.TCPAddr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	write := func(b []byte) error { _, err := conn.Write(append(b, '\n')); return err }
	read := func() ([]byte, error) {
		line, err := r.ReadBytes('\n')
		return bytes.TrimSuffix(line, []byte("\n")), err
	}
	got, err := leakChat(n, sid, sid == "", write, read)
	if got == "" {
		got = sid
	}
	return got, err
}

func leakUDP(s *servertest.Server, n int, sid string) (string, error) {
	conn, err := net.Dial("udp", s.UDPAddr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	write := func(b []byte) error { _, err := conn.Write(servertest.PadUDPLogin(b)); return err }
	read := func() ([]byte, error) {
		k, err := conn.Read(buf)
		return buf[:k], err
	}
	got, err := leakChat(n, sid, sid == "", write, read)
	if got == "" {
		got = sid
	}
	return got, err
}

func leakHTTP(s *servertest.Server, n int, sid string) (string, error) {
	transport := &http.Transport{}
	defer transport.CloseIdleConnections() // the cycle's close
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	post := func(path string, body any) ([]byte, error) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, s.HTTPURL+"/"+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if sid != "" {
			req.Header.Set("Authorization", "Bearer "+sid)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out bytes.Buffer
		_, _ = out.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s: %d %s", path, resp.StatusCode, out.Bytes())
		}
		return out.Bytes(), nil
	}
	if sid == "" {
		reply, err := post("im/login", map[string]string{"nickname": fmt.Sprintf("r1-%d", n), "password": "password1"})
		if err != nil {
			return "", err
		}
		var r struct {
			SID string `json:"sid"`
		}
		if err := json.Unmarshal(reply, &r); err != nil {
			return "", err
		}
		sid = r.SID
	}
	if _, err := post("im/send", map[string]string{"to": "room:lobby", "text": fmt.Sprintf("cycle %d", n)}); err != nil {
		return "", err
	}
	if _, err := post("im/load", map[string]any{"with": "room:lobby", "limit": 5}); err != nil {
		return "", err
	}
	return sid, nil
}

// R1: 1,000 × (connect, log in or resume, send, load, close) over each of
// WebSocket, TCP, UDP and HTTP; the first cycle of each logs in, the others
// resume the session (?sid=, im/resume, Bearer) so that the run is not a
// thousand password hashes. Afterwards: goroutines ≤ baseline + 10, open
// files ≤ baseline + 5, heap in use ≤ baseline + 5 MiB after two GCs.
func TestR1ShortSessionsLeakNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("leak test: skipped in -short mode")
	}
	cycles := 1000
	if raceEnabled {
		cycles = 250 // the race detector makes each cycle about ten times slower
	}
	loadQuiesce(t)
	const udpPeerTimeout = time.Second
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 100000, 100000
		// A UDP peer has no close: it ends when it has been quiet this long.
		c.Transport.UDPPeerTimeout = config.Duration{Duration: udpPeerTimeout}
	})
	transports := []struct {
		name  string
		cycle leakCycle
		users int
	}{
		{"websocket", leakWebSocket, 1}, {"tcp", leakTCP, 1}, {"http", leakHTTP, 1},
		// A UDP peer stays connected until it has been quiet for the peer
		// timeout, so fast cycles from fresh ports would pass the per-user
		// connection cap (16) with one user; they take turns among 100.
		{"udp", leakUDP, 100},
	}
	sids := make([][]string, len(transports))
	done := make([]int, len(transports))
	for i, tr := range transports {
		sids[i] = make([]string, tr.users)
	}
	run := func(count int) {
		t.Helper()
		for i, tr := range transports {
			for range count {
				u := done[i] % tr.users
				sid, err := tr.cycle(s, i*1000+u, sids[i][u])
				if err != nil {
					t.Fatalf("%s cycle %d: %v", tr.name, done[i], err)
				}
				sids[i][u] = sid
				done[i]++
			}
		}
	}
	quiet := func() { // every connection gone, UDP peers included, and the presence grace over
		t.Helper()
		servertest.Eventually(t, udpPeerTimeout+5*time.Second, "every connection to end", func() bool {
			st := s.Hub.Stats()
			return st.Connections == 0 && st.Online == 0
		})
	}

	run(100) // warm up: every UDP user logged in, pools, caches, the store's readers
	quiet()
	baseGoroutines, baseFDs, baseHeap := runtime.NumGoroutine(), loadFDs(t, s), servertest.HeapInUse()

	start := time.Now()
	run(cycles)
	elapsed := time.Since(start)
	quiet()
	g := servertest.Settle(5*time.Second, baseGoroutines+10, runtime.NumGoroutine)
	fds := servertest.Settle(5*time.Second, baseFDs+5, func() int { return loadFDs(t, s) })
	heap := servertest.HeapInUse()
	t.Logf("R1: cycles=%d×%d in %v goroutines=%d (baseline %d) fds=%d (baseline %d) heap_inuse=%dKiB (baseline %dKiB, %+dKiB)",
		cycles, len(transports), elapsed.Round(time.Millisecond), g, baseGoroutines, fds, baseFDs, heap>>10, baseHeap>>10,
		(int64(heap)-int64(baseHeap))>>10)
	if g > baseGoroutines+10 {
		t.Errorf("goroutines %d after the cycles, over baseline %d + 10", g, baseGoroutines)
	}
	if fds > baseFDs+5 {
		t.Errorf("open files %d after the cycles, over baseline %d + 5", fds, baseFDs)
	}
	if heap > baseHeap+5<<20 {
		t.Errorf("heap in use %d KiB after the cycles, over baseline %d KiB + 5 MiB", heap>>10, baseHeap>>10)
	}
	if stored, err := s.Store.CountMessages(context.Background()); err != nil || stored != int64((100+cycles)*len(transports)) {
		t.Errorf("the store holds %d messages (%v), want one per cycle: %d", stored, err, (100+cycles)*len(transports))
	}
}
