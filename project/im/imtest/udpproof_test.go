package imtest

// TESTPLAN A17: a UDP source address is trusted only once it has proved it
// receives (PROTOCOL.md section 1: "verify" in the reply to im/login or
// im/resume, then im/verify).

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/app/wire"
)

// forgedSource is a UDP socket bound to a loopback address that sends as a
// forger would and never answers what comes back; it only counts it.
type forgedSource struct {
	conn     *net.UDPConn
	server   *net.UDPAddr
	sent     atomic.Int64
	received atomic.Int64
	mu       sync.Mutex
	paths    map[string]int // path of every frame received -> count
	wg       sync.WaitGroup
}

func newForgedSource(t *testing.T, s *servertest.Server, ip string) *forgedSource {
	t.Helper()
	server, err := net.ResolveUDPAddr("udp", s.UDPAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("bind a UDP socket to %s: %v", ip, err)
	}
	f := &forgedSource{conn: conn, server: server, paths: map[string]int{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			f.received.Add(int64(n))
			frame, _ := wire.Parse(buf[:n], 0)
			f.mu.Lock()
			f.paths[frame.Path]++
			f.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); f.wg.Wait() })
	return f
}

func (f *forgedSource) send(t *testing.T, frame string) {
	t.Helper()
	n, err := f.conn.WriteToUDP([]byte(frame), f.server)
	if err != nil {
		t.Fatalf("send from %s: %v", f.conn.LocalAddr(), err)
	}
	f.sent.Add(int64(n))
}

// seen is a copy of the paths received so far.
func (f *forgedSource) seen() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.paths)
}

func (f *forgedSource) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paths[path]
}

// TestA17ForgedUDPSource: an im/resume with a valid sid and 20 im/loads
// from an address that never sends im/verify get back no more than 3 times
// the bytes sent, and none of the lobby messages sent meanwhile; 100 pings
// from as many ports of another address do not use up that address's
// connection allowance, so a browser there still connects.
func TestA17ForgedUDPSource(t *testing.T) {
	s := servertest.Start(t)
	owner := s.DialWS(t, "", nil)
	sid, _ := authLogin(t, owner, "a17-owner", "password17")
	// Enough history that a load reply is large: each is several KiB.
	text := strings.Repeat("history ", 120)
	for i := range 10 {
		owner.OK("im/send", map[string]string{"to": "room:lobby", "text": fmt.Sprintf("%d %s", i, text)}, nil)
	}
	other := s.DialWS(t, "", nil)
	other.Login("a17-other", "password17")

	forged := newForgedSource(t, s, "127.0.0.66")
	forged.send(t, `im/resume:r;{"sid":"`+sid+`"}`)
	time.Sleep(100 * time.Millisecond)
	for i := range 20 {
		forged.send(t, fmt.Sprintf(`im/load:%d;{"with":"room:lobby","limit":5}`, i))
		other.OK("im/send", map[string]string{"to": "room:lobby", "text": fmt.Sprintf("live %d", i)}, nil)
	}
	time.Sleep(500 * time.Millisecond)
	sent, received := forged.sent.Load(), forged.received.Load()
	t.Logf("A17: the unproven address sent %d bytes and was sent %d (%.2fx); paths %v",
		sent, received, float64(received)/float64(sent), forged.seen())
	if received > 3*sent {
		t.Errorf("the unproven address was sent %d bytes for %d received: over 3x", received, sent)
	}
	if n := forged.count("im/message"); n > 0 {
		t.Errorf("%d lobby messages were pushed to an address that never proved it receives", n)
	}
	if places, _ := s.Hub.Places(userIDOf(t, owner)); places != 1 {
		t.Errorf("the owner holds %d places; the unproven address must not be one", places)
	}

	// 100 pings from 100 ports of 127.0.0.77, then a browser there.
	for i := range 100 {
		p := newForgedSource(t, s, "127.0.0.77")
		p.send(t, fmt.Sprintf("ping:%d", i))
	}
	time.Sleep(200 * time.Millisecond)
	c, resp, err := s.DialWSWith(t, servertest.WSDial{LocalIP: "127.0.0.77"})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket upgrade from 127.0.0.77 after 100 forged pings from it: %v (status %d), want 101", err, status)
	}
	c.OK("ping", nil, nil)
}

// userIDOf is the id of the user c is logged in as.
func userIDOf(t *testing.T, c *servertest.Client) int64 {
	t.Helper()
	var r struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	c.OK("im/signer", nil, &r)
	return r.User.ID
}

// TestA17VerifiedUDPClient: a UDP client that sends back its token gets
// pushes and large replies; before it does, it is not logged in there;
// an absent or wrong token gets a clear error, and a repeated im/verify
// (its first reply lost) succeeds again.
func TestA17VerifiedUDPClient(t *testing.T) {
	s := servertest.Start(t)
	owner := s.DialWS(t, "", nil)
	sid, ownerID := authLogin(t, owner, "a17-real", "password17")
	text := strings.Repeat("history ", 120)
	for i := range 5 {
		owner.OK("im/send", map[string]string{"to": "room:lobby", "text": fmt.Sprintf("%d %s", i, text)}, nil)
	}

	u := s.DialUDPWith(t, servertest.UDPDial{NoVerify: true})
	var resumed struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
		Verify string `json:"verify"`
	}
	u.OK("im/resume", map[string]string{"sid": sid}, &resumed)
	if resumed.User.ID != ownerID || len(resumed.Verify) < 22 {
		t.Fatalf("im/resume over UDP: user %d, verify %q; want the owner and a token of at least 128 bits", resumed.User.ID, resumed.Verify)
	}
	if f := u.Request("im/load", map[string]any{"with": "room:lobby", "limit": 1}); f.ErrorCode() != "unauthorized" ||
		!strings.Contains(string(f.Body), "im/verify") {
		t.Fatalf("im/load before im/verify: %s, want unauthorized naming im/verify", protoShort(f.String()))
	}
	if places, _ := s.Hub.Places(ownerID); places != 1 {
		t.Fatalf("before im/verify the owner holds %d places, want 1 (the WebSocket)", places)
	}
	if f := u.Request("im/verify", map[string]string{}); f.ErrorCode() != "bad_request" {
		t.Fatalf("im/verify without a token: %s, want bad_request", f.Body)
	}
	if f := u.Request("im/verify", map[string]string{"token": "AAAAAAAAAAAAAAAAAAAAAA"}); f.ErrorCode() != "unauthorized" {
		t.Fatalf("im/verify with a wrong token: %s, want unauthorized", f.Body)
	}
	u.OK("im/verify", map[string]string{"token": resumed.Verify}, nil)
	u.OK("im/verify", map[string]string{"token": resumed.Verify}, nil) // a retry: the first reply may be lost
	if places, _ := s.Hub.Places(ownerID); places != 2 {
		t.Fatalf("after im/verify the owner holds %d places, want 2", places)
	}
	var loaded struct {
		Messages []json.RawMessage `json:"messages"`
	}
	u.OK("im/load", map[string]any{"with": "room:lobby", "limit": 5}, &loaded)
	if len(loaded.Messages) != 5 {
		t.Fatalf("im/load after im/verify: %d messages, want 5", len(loaded.Messages))
	}
	owner.OK("im/send", map[string]string{"to": "room:lobby", "text": "to every place"}, nil)
	if f := u.MustPush("im/message"); !strings.Contains(string(f.Body), "to every place") {
		t.Fatalf("push to the verified UDP place: %s", f.Body)
	}

	// The harness's own UDP client verifies by itself, for login too.
	auto := s.DialUDP(t)
	auto.Login("a17-auto", "password17")
	owner.OK("im/send", map[string]string{"to": "room:lobby", "text": "hello auto"}, nil)
	auto.MustPush("im/message")

	// A stranger's im/verify, with nothing logged in from its address.
	stranger := s.DialUDPWith(t, servertest.UDPDial{NoVerify: true})
	if f := stranger.Request("im/verify", map[string]string{"token": resumed.Verify}); f.ErrorCode() != "unauthorized" {
		t.Fatalf("im/verify from another address with the owner's token: %s, want unauthorized", f.Body)
	}
}

// TestA17UnpaddedLogin: an unproven address whose login reply would pass
// 3 times what it sent gets a short too_large saying to pad, never
// silence; padded, the same login is answered in full.
func TestA17UnpaddedLogin(t *testing.T) {
	s := servertest.Start(t)
	owner := s.DialTCP(t)
	owner.Login("a17-brief", "password17")
	owner.OK("im/profile", map[string]string{"brief": strings.Repeat("b", 128)}, nil)

	raw := newForgedSource(t, s, "127.0.0.88")
	raw.send(t, `im/login:1;{"nickname":"a17-brief","password":"password17"}`)
	servertest.Eventually(t, 5*time.Second, "an answer to the unpadded login", func() bool { return raw.count("im/login") == 1 })
	if sent, received := raw.sent.Load(), raw.received.Load(); received > 3*sent {
		t.Fatalf("the unpadded login was answered with %d bytes for %d", received, sent)
	}

	u := s.DialUDPWith(t, servertest.UDPDial{LocalIP: "127.0.0.89", NoVerify: true})
	if err := u.Raw(`im/login:2;{"nickname":"a17-brief","password":"password17"}`); err != nil {
		t.Fatal(err)
	}
	f, ok := u.WaitMatch(5*time.Second, func(f servertest.Frame) bool { return f.Path == "im/login" && f.ID == "2" })
	if !ok || f.ErrorCode() != "too_large" || !strings.Contains(string(f.Body), "pad") {
		t.Fatalf("unpadded login over an unproven address: %s, want too_large saying to pad", f.Body)
	}
	var r struct {
		SID    string `json:"sid"`
		Verify string `json:"verify"`
	}
	u.OK("im/login", map[string]string{"nickname": "a17-brief", "password": "password17"}, &r) // padded by the client
	if r.SID == "" || r.Verify == "" {
		t.Fatalf("padded login: sid %q verify %q", r.SID, r.Verify)
	}
}
