package imtest

// Authorization and abuse limits: cross-site WebSocket hijacking (A1),
// per-user rate limits across connections (A11), connection caps (A12),
// CSRF on HTTP (A15), private conversations end to end, and the cid race
// (TESTPLAN pitfall 15).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"

	"github.com/gobwas/ws"
)

// A1: an upgrade carrying a valid dce_sid cookie is refused with 403 (no
// 101) unless its Origin is this server's own origin (in any letter case),
// absent, or allowlisted.
func TestA1CrossSiteWebSocketHijacking(t *testing.T) {
	const trusted = "https://trusted.example"
	s := servertest.Start(t, func(c *config.Config) { c.Server.AllowedOrigins = []string{trusted} })
	sid := s.LoginHTTP(t, "cswsh", "password-1")
	hostPort := strings.TrimPrefix(s.HTTPURL, "http://")
	_, port, _ := strings.Cut(hostPort, ":")
	otherPort := strconv.Itoa(servertest.FreePort(t))

	type upgrade struct {
		name   string
		origin string // "" sends none
		host   string // "" sends the dialled host:port
	}
	refused := []upgrade{
		{"evil site", "http://evil.example", ""},
		{"same host, other port", "http://127.0.0.1:" + otherPort, ""},
		{"null", "null", ""},
		{"host as a prefix", "http://" + hostPort + ".evil.example", ""},
		{"other scheme", "ftp://" + hostPort, ""},
		{"allowlisted origin with another port", trusted + ":8443", ""},
	}
	accepted := []upgrade{
		{"same origin", "http://" + hostPort, ""},
		{"same origin, other letter case", "HTTP://Chat.Example:" + port, "chat.example:" + port},
		{"no Origin", "", ""},
		{"allowlisted", trusted, ""},
	}
	for _, path := range []string{"/ws", "/"} { // the bare host takes upgrades too
		servertest.Eventually(t, 5*time.Second, "no connections left", func() bool { return s.Hub.Stats().Connections == 0 })
		before := 0
		for _, u := range refused {
			hdr := http.Header{"Cookie": {"dce_sid=" + sid}, "Origin": {u.origin}}
			c, resp, err := s.DialWSWith(t, servertest.WSDial{Path: path, Header: hdr})
			if err == nil {
				c.Close()
				t.Errorf("%s %s: Origin %q was upgraded", path, u.name, u.origin)
				continue
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				status := 0
				if resp != nil {
					status = resp.StatusCode
				}
				t.Errorf("%s %s: Origin %q got status %d (%v), want 403", path, u.name, u.origin, status, err)
			}
		}
		if after := s.Hub.Stats().Connections; after != before {
			t.Errorf("%s: refused upgrades left %d connections behind", path, after-before)
		}
		for _, u := range accepted {
			hdr := http.Header{"Cookie": {"dce_sid=" + sid}}
			if u.origin != "" {
				hdr.Set("Origin", u.origin)
			}
			if u.host != "" {
				hdr.Set("Host", u.host)
			}
			c, resp, err := s.DialWSWith(t, servertest.WSDial{Path: path, Header: hdr})
			if err != nil {
				status := 0
				if resp != nil {
					status = resp.StatusCode
				}
				t.Errorf("%s %s: Origin %q refused with %d (%v), want 101", path, u.name, u.origin, status, err)
				continue
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Errorf("%s %s: status %d, want 101", path, u.name, resp.StatusCode)
			}
			if who := authSigner(t, c); who != "cswsh" {
				t.Errorf("%s %s: the cookie's session was not resumed (signer %q)", path, u.name, who)
			}
			c.Close()
		}
	}
}

// A11: the message rate is per user, whatever the number of connections:
// 100 sends at once from 5 connections are accepted only as far as the
// bucket allows (burst 20, 10/s), the rest rate_limited with a wait after
// which a retry succeeds; typing over its rate is dropped without errors.
func TestA11PerUserRateLimitAcrossConnections(t *testing.T) {
	s := servertest.Start(t)
	first := s.DialWS(t, "", nil)
	sid, _ := authLogin(t, first, "rapid", "password-1")
	conns := []*servertest.Client{first, s.DialWS(t, "sid="+sid, nil), s.DialWS(t, "sid="+sid, nil), s.DialTCP(t), s.DialTCP(t)}
	for _, c := range conns[3:] {
		c.OK("im/resume", map[string]string{"sid": sid}, nil)
	}
	peer := s.DialWS(t, "", nil)
	_, peerID := authLogin(t, peer, "watcher", "password-2")
	lim := s.Config.Limits
	before, err := s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	const sends = 100
	frames := make([]servertest.Frame, sends)
	errs := make([]error, sends)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range sends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			frames[i], errs[i] = conns[i%len(conns)].TryRequest("im/send",
				map[string]string{"to": "room:lobby", "text": fmt.Sprintf("burst %d", i)}, servertest.DefaultTimeout)
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	elapsed := time.Since(start)

	accepted, limited := 0, 0
	for i, f := range frames {
		switch {
		case errs[i] != nil:
			t.Fatalf("send %d: %v", i, errs[i])
		case f.ErrorCode() == "":
			accepted++
		case f.ErrorCode() == "rate_limited":
			limited++
			if ms := retryAfterMS(t, f); ms <= 0 {
				t.Errorf("send %d: rate_limited without retry_after_ms: %s", i, f.Body)
			}
		default:
			t.Errorf("send %d: %s", i, f.Body)
		}
	}
	most := lim.MessageBurst + int(float64(lim.MessagesPerSecond)*elapsed.Seconds()) + 1
	t.Logf("%d sends from %d connections in %v: %d accepted (at most %d allowed), %d rate_limited",
		sends, len(conns), elapsed.Round(time.Millisecond), accepted, most, limited)
	if accepted > most || accepted < lim.MessageBurst {
		t.Errorf("accepted %d; want between the burst %d and %d", accepted, lim.MessageBurst, most)
	}
	if accepted+limited != sends {
		t.Errorf("accepted %d + rate_limited %d != %d", accepted, limited, sends)
	}
	after, err := s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if int(after-before) != accepted {
		t.Errorf("the store gained %d messages for %d accepted sends", after-before, accepted)
	}

	// Empty the bucket, then wait exactly the time the refusal names.
	var wait int64
	for i := 0; wait == 0; i++ {
		if i == 3*lim.MessageBurst {
			t.Fatal("could not get a rate_limited send to read its retry_after_ms")
		}
		f := first.Request("im/send", map[string]string{"to": "room:lobby", "text": "drain"})
		if f.ErrorCode() == "rate_limited" {
			wait = retryAfterMS(t, f)
		}
	}
	time.Sleep(time.Duration(wait) * time.Millisecond)
	if f := conns[3].Request("im/send", map[string]string{"to": "room:lobby", "text": "after the wait"}); f.ErrorCode() != "" {
		t.Fatalf("send after retry_after_ms=%d: %s", wait, f.Body)
	}

	// Typing: 30 fire-and-forget and 10 requests, far over 2/s. None is an
	// error; the peer sees only what the rate allows.
	sender := conns[1]
	sender.Drain()
	peer.Drain()
	to := map[string]string{"to": "user:" + strconv.FormatInt(peerID, 10)}
	tstart := time.Now()
	for range 30 {
		if err := sender.Fire("im/typing", to); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if f := sender.Request("im/typing", to); f.ErrorCode() != "" {
			t.Fatalf("typing request over the rate: %s, want success (dropped silently)", f.Body)
		}
	}
	sender.OK("ping", nil, nil) // every typing frame before it has been handled
	telapsed := time.Since(tstart)
	peer.OK("ping", nil, nil) // every push caused by them has reached the peer
	for _, f := range sender.Pushes() {
		if f.Path == "error" {
			t.Errorf("typing over the rate produced an error frame: %s", f)
		}
	}
	typings := 0
	for _, f := range peer.Pushes() {
		if f.Path == "im/typing" {
			typings++
		}
	}
	mostTyping := lim.TypingPerSecond + int(float64(lim.TypingPerSecond)*telapsed.Seconds()) + 1
	if typings < 1 || typings > mostTyping {
		t.Errorf("peer got %d im/typing for 40 typing frames in %v; want 1..%d", typings, telapsed, mostTyping)
	}
}

// A12: the 17th connection of one user is closed with 4509 and a reason,
// so that the client tells its user instead of reconnecting; the others
// keep working.
func TestA12PerUserConnectionCap(t *testing.T) {
	s := servertest.Start(t)
	limit := s.Config.Limits.ConnectionsPerUser
	first := s.DialWS(t, "", nil)
	sid, _ := authLogin(t, first, "many", "password-1")
	conns := []*servertest.Client{first}
	for len(conns) < limit {
		c := s.DialWS(t, "sid="+sid, nil)
		if who := authSigner(t, c); who != "many" {
			t.Fatalf("connection %d: signer %q", len(conns)+1, who)
		}
		conns = append(conns, c)
	}
	over := s.DialWS(t, "sid="+sid, nil)
	if !over.WaitClosed(5 * time.Second) {
		t.Fatalf("connection %d of one user was not closed", limit+1)
	}
	if code, reason := over.WSCloseCode(), over.ServerCloseReason(); code != 4509 || !strings.Contains(reason, "too many connections") {
		t.Fatalf("connection %d closed with %d %q; want 4509 with the reason", limit+1, code, reason)
	}
	// Over TCP the resume is refused with forbidden; the connection stays, anonymous.
	tcp := s.DialTCP(t)
	if f := tcp.Request("im/resume", map[string]string{"sid": sid}); f.ErrorCode() != "forbidden" {
		t.Fatalf("im/resume as connection %d: %s, want forbidden", limit+1, f.Body)
	}
	if who := authSigner(t, tcp); who != "" {
		t.Fatalf("the refused TCP resume left the connection as %q", who)
	}
	for i, c := range conns {
		if f := c.Request("ping", nil); f.ErrorCode() != "" || c.Closed() {
			t.Fatalf("connection %d after the refusal: %s closed=%v", i+1, f.Body, c.Closed())
		}
	}
	var users struct {
		Users []struct {
			Nickname string `json:"nickname"`
			Places   int    `json:"places"`
		} `json:"users"`
	}
	first.OK("im/users", nil, &users)
	if len(users.Users) != 1 || users.Users[0].Places != limit {
		t.Fatalf("im/users: %+v; want many with %d places", users.Users, limit)
	}
}

// secDialRefused dials a WebSocket and fails unless the upgrade is
// refused with status.
func secDialRefused(t *testing.T, s *servertest.Server, d servertest.WSDial, status int, what string) {
	t.Helper()
	c, resp, err := s.DialWSWith(t, d)
	if err == nil {
		c.Close()
		t.Fatalf("%s: upgraded, want %d", what, status)
	}
	if resp == nil || resp.StatusCode != status {
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		t.Fatalf("%s: status %d (%v), want %d", what, got, err, status)
	}
	if status == http.StatusServiceUnavailable {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 {
			t.Fatalf("%s: 503 with Retry-After %q, want a number of seconds", what, resp.Header.Get("Retry-After"))
		}
	}
}

// secTCPRefused fails unless a TCP connection is told no and closed.
func secTCPRefused(t *testing.T, c *servertest.Client, what string) {
	t.Helper()
	if !c.WaitClosed(5 * time.Second) {
		t.Fatalf("%s: the TCP connection was not closed", what)
	}
	pushes := c.Pushes()
	var body struct {
		Path string `json:"path"`
	}
	if len(pushes) != 1 || pushes[0].Path != "error" || pushes[0].ErrorCode() != "rate_limited" ||
		json.Unmarshal(pushes[0].Body, &body) != nil || body.Path != "" {
		t.Fatalf("%s: TCP got %v; want one rate_limited error frame with an empty path", what, pushes)
	}
}

// A12: 64 connections without a login from one address; the 65th is
// refused at the upgrade with 503 (and on TCP), another address is not.
func TestA12AnonymousPerAddressCap(t *testing.T) {
	s := servertest.Start(t)
	limit := s.Config.Limits.AnonConnectionsPerIP
	anon := make([]*servertest.Client, 0, limit)
	for range limit {
		c := s.DialWS(t, "", nil)
		c.OK("ping", nil, nil) // registered: the hub counts it from here
		anon = append(anon, c)
	}
	secDialRefused(t, s, servertest.WSDial{}, http.StatusServiceUnavailable, fmt.Sprintf("anonymous WebSocket %d", limit+1))
	secTCPRefused(t, s.DialTCP(t), fmt.Sprintf("anonymous TCP %d", limit+1))
	// Another address has its own allowance.
	other, _, err := s.DialWSWith(t, servertest.WSDial{LocalIP: "127.0.0.2"})
	if err != nil {
		t.Fatalf("a WebSocket from 127.0.0.2: %v", err)
	}
	other.OK("ping", nil, nil)
	for i, c := range anon {
		if f := c.Request("ping", nil); f.ErrorCode() != "" {
			t.Fatalf("anonymous connection %d after the refusals: %s", i+1, f.Body)
		}
	}
	// A connection that logs in stops counting as anonymous.
	anon[0].Login("named", "password-1")
	servertest.Eventually(t, 5*time.Second, "a free anonymous place after a login", func() bool {
		c, _, err := s.DialWSWith(t, servertest.WSDial{})
		if err == nil {
			c.OK("ping", nil, nil)
			return true
		}
		return false
	})
}

// A12: limits.max_connections caps the node: one more is refused at the
// upgrade with 503; the existing ones keep working; a closed one frees a
// place.
func TestA12NodeConnectionCap(t *testing.T) {
	const limit = 6
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MaxConnections = limit })
	conns := []*servertest.Client{s.DialTCP(t), s.DialTCP(t)}
	for len(conns) < limit {
		conns = append(conns, s.DialWS(t, "", nil))
	}
	for _, c := range conns {
		c.OK("ping", nil, nil) // every one is registered
	}
	secDialRefused(t, s, servertest.WSDial{}, http.StatusServiceUnavailable, "one WebSocket over the node cap")
	secDialRefused(t, s, servertest.WSDial{LocalIP: "127.0.0.2"}, http.StatusServiceUnavailable, "over the node cap from another address")
	secTCPRefused(t, s.DialTCP(t), "one TCP connection over the node cap")
	for i, c := range conns {
		if f := c.Request("ping", nil); f.ErrorCode() != "" {
			t.Fatalf("connection %d after the refusals: %s", i+1, f.Body)
		}
	}
	// Upgrades that race for the last place: each passes the check before
	// the upgrade, and all but one find the node full once they have a
	// WebSocket. Those are closed with 4509 and a reason; the rest were
	// refused before the upgrade with 503.
	conns[len(conns)-1].Close()
	servertest.Eventually(t, 5*time.Second, "the closed connection gone", func() bool { return s.Hub.Stats().Connections == limit-1 })
	racers := secRaceUpgrades(t, s.HTTPURL, 16)
	in, refused, closed := 0, 0, 0
	for i, r := range racers {
		switch {
		case r.status == http.StatusServiceUnavailable:
			refused++
			if secs, err := strconv.Atoi(r.retryAfter); err != nil || secs < 1 {
				t.Fatalf("racing upgrade %d: 503 with Retry-After %q", i, r.retryAfter)
			}
		case r.status != http.StatusSwitchingProtocols:
			t.Fatalf("racing upgrade %d: status %d", i, r.status)
		case r.closed:
			closed++
			if r.code != 4509 || r.reason == "" {
				t.Fatalf("racing upgrade %d over the node cap was closed with %d %q; want 4509 with a reason", i, r.code, r.reason)
			}
		default:
			in++
		}
	}
	t.Logf("racing upgrades: %d in, %d refused with 503, %d closed with 4509", in, refused, closed)
	if in != 1 {
		t.Fatalf("%d of %d racing upgrades got the one free place", in, len(racers))
	}
	for _, r := range racers {
		r.conn.Close()
	}
	servertest.Eventually(t, 5*time.Second, "a free place after a close", func() bool {
		c, _, err := s.DialWSWith(t, servertest.WSDial{})
		if err == nil {
			c.OK("ping", nil, nil)
			return true
		}
		return false
	})
}

// secRace is how one of secRaceUpgrades' upgrades ended.
type secRace struct {
	conn       net.Conn
	status     int
	retryAfter string
	closed     bool // a close frame came within half a second of the upgrade
	code       int
	reason     string
}

// secRaceUpgrades opens n TCP connections to the HTTP server, then writes
// a WebSocket upgrade request on each as close together as it can, so that
// the server checks its caps for all of them before it registers any; it
// reads each one's answer, and after a 101 whether a close frame follows.
func secRaceUpgrades(t *testing.T, httpURL string, n int) []*secRace {
	t.Helper()
	addr := strings.TrimPrefix(httpURL, "http://")
	races := make([]*secRace, n)
	for i := range races {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		races[i] = &secRace{conn: conn}
	}
	req := []byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	for _, r := range races {
		if _, err := r.conn.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, r := range races {
		wg.Go(func() {
			_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(r.conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			r.status, r.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
			if r.status != http.StatusSwitchingProtocols {
				return
			}
			_ = r.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			f, err := ws.ReadFrame(br)
			if err == nil && f.Header.OpCode == ws.OpClose {
				r.closed = true
				code, reason := ws.ParseCloseFrameData(f.Payload)
				r.code, r.reason = int(code), reason
			}
		})
	}
	wg.Wait()
	return races
}

// A15: a cookie-carrying POST is refused unless it comes from this origin
// and says it is JSON; nothing it asked for happens. A Bearer request is
// not ambient and needs neither.
func TestA15CrossSiteRequestForgery(t *testing.T) {
	s := servertest.Start(t)
	sid := s.LoginHTTP(t, "csrf", "password-1")
	self := s.HTTPURL
	before, err := s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	send := func(text string) map[string]string { return map[string]string{"to": "room:lobby", "text": text} }
	cookie := "dce_sid=" + sid

	refused := []struct {
		name    string
		headers []string
		want    []int
	}{
		{"evil Origin", []string{"Cookie", cookie, "Origin", "http://evil.example"}, []int{403}},
		{"Sec-Fetch-Site: cross-site", []string{"Cookie", cookie, "Sec-Fetch-Site", "cross-site"}, []int{403}},
		{"Sec-Fetch-Site: cross-site with our Origin", []string{"Cookie", cookie, "Origin", self, "Sec-Fetch-Site", "cross-site"}, []int{403}},
		{"text/plain", []string{"Cookie", cookie, "Origin", self, "Content-Type", "text/plain"}, []int{403, 415}},
		{"text/plain, no Origin", []string{"Cookie", cookie, "Content-Type", "text/plain;charset=UTF-8"}, []int{403, 415}},
		{"form", []string{"Cookie", cookie, "Origin", self, "Content-Type", "application/x-www-form-urlencoded"}, []int{403, 415}},
		{"multipart", []string{"Cookie", cookie, "Origin", self, "Content-Type", "multipart/form-data; boundary=x"}, []int{403, 415}},
		{"no Content-Type", []string{"Cookie", cookie, "Origin", self, "Content-Type", ""}, []int{403, 415}},
	}
	for _, r := range refused {
		text := "forged: " + r.name
		var payload any = send(text)
		if strings.HasPrefix(r.name, "multipart") { // a well-formed form, so the server's own parser lets it through
			payload = "--x\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nroom:lobby\r\n" +
				"--x\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n" + text + "\r\n--x--\r\n"
		}
		resp, body := s.Post(t, "im/send", payload, r.headers...)
		ok := false
		for _, w := range r.want {
			ok = ok || resp.StatusCode == w
		}
		if !ok {
			t.Errorf("%s: %d %s, want %v", r.name, resp.StatusCode, body, r.want)
		}
	}
	after, err := s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("refused requests stored %d messages", after-before)
	}

	// Same-origin JSON with the cookie, and Bearer with no Origin (and any
	// content type, as curl -d sends a form type).
	allowed := []struct {
		name    string
		headers []string
	}{
		{"same-origin JSON", []string{"Cookie", cookie, "Origin", self}},
		{"same-origin JSON with a charset", []string{"Cookie", cookie, "Origin", self, "Content-Type", "application/json; charset=utf-8"}},
		{"Bearer, no Origin", []string{"Authorization", "Bearer " + sid}},
		{"Bearer, form content type", []string{"Authorization", "Bearer " + sid, "Content-Type", "application/x-www-form-urlencoded"}},
	}
	for _, a := range allowed {
		resp, body := s.Post(t, "im/send", send("allowed: "+a.name), a.headers...)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s, want 200", a.name, resp.StatusCode, body)
		}
	}
	after, err = s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if int(after-before) != len(allowed) {
		t.Errorf("allowed requests stored %d messages, want %d", after-before, len(allowed))
	}
	var page struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	resp, body := s.Post(t, "im/load", map[string]any{"with": "room:lobby", "limit": 100}, "Authorization", "Bearer "+sid)
	if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil {
		t.Fatalf("im/load: %d %s", resp.StatusCode, body)
	}
	for _, m := range page.Messages {
		if strings.HasPrefix(m.Text, "forged") {
			t.Errorf("a refused request's message is in the lobby: %q", m.Text)
		}
	}
}

// secMessage is the part of an im/message push these tests read.
type secMessage struct {
	ID   int64  `json:"id"`
	Conv string `json:"conv"`
	Text string `json:"text"`
	CID  string `json:"cid"`
	From struct {
		ID int64 `json:"id"`
	} `json:"from"`
}

// secMessages are the im/message pushes c has received with text, taken.
func secMessages(t *testing.T, c *servertest.Client, text string) []secMessage {
	t.Helper()
	var out []secMessage
	for {
		f, ok := c.WaitMatch(0, func(f servertest.Frame) bool {
			return f.Path == "im/message" && strings.Contains(string(f.Body), text)
		})
		if !ok {
			return out
		}
		var m secMessage
		f.Decode(t, &m)
		out = append(out, m)
	}
}

// A private message reaches both parties' connections, each seeing the
// conversation as the other party, and nobody else, by any route.
func TestPrivateChatEndToEnd(t *testing.T) {
	s := servertest.Start(t)
	aWS, aTCP := s.DialWS(t, "", nil), s.DialTCP(t)
	aSID, aID := authLogin(t, aWS, "alice", "password-a")
	aTCP.OK("im/resume", map[string]string{"sid": aSID}, nil)
	bWS, bTCP := s.DialWS(t, "", nil), s.DialTCP(t)
	bSID, bID := authLogin(t, bWS, "bob", "password-b")
	bTCP.OK("im/resume", map[string]string{"sid": bSID}, nil)
	cWS := s.DialWS(t, "", nil)
	authLogin(t, cWS, "carol", "password-c")
	userA, userB := "user:"+strconv.FormatInt(aID, 10), "user:"+strconv.FormatInt(bID, 10)

	const canary = "canary-7f3a-private-to-bob"
	var sent struct {
		ID   int64  `json:"id"`
		Conv string `json:"conv"`
	}
	aWS.OK("im/send", map[string]string{"to": userB, "text": canary, "cid": "p1"}, &sent)
	if sent.Conv != userB {
		t.Fatalf("sender's reply conv %q, want %q", sent.Conv, userB)
	}
	for _, r := range []struct {
		name string
		c    *servertest.Client
		conv string
	}{{"bob ws", bWS, userA}, {"bob tcp", bTCP, userA}, {"alice tcp", aTCP, userB}} {
		f := r.c.MustPush("im/message")
		var m secMessage
		f.Decode(t, &m)
		if m.ID != sent.ID || m.Text != canary || m.Conv != r.conv || m.From.ID != aID {
			t.Errorf("%s: push %s; want id %d conv %q from %d", r.name, f.Body, sent.ID, r.conv, aID)
		}
	}
	for _, c := range []*servertest.Client{aWS, bWS, bTCP, aTCP, cWS} {
		c.OK("ping", nil, nil) // everything the send caused has arrived
	}
	if n := len(secMessages(t, aWS, canary)); n != 0 {
		t.Errorf("the sending connection got %d pushes of its own message", n)
	}
	for _, f := range cWS.Pushes() {
		if strings.Contains(string(f.Body), canary) {
			t.Errorf("carol received %s", f)
		}
	}
	// Carol's "user:B" is her own conversation with Bob: empty.
	for _, with := range []string{userB, userA} {
		var page struct {
			Messages []json.RawMessage `json:"messages"`
		}
		cWS.OK("im/load", map[string]any{"with": with}, &page)
		if len(page.Messages) != 0 {
			t.Errorf("carol's im/load with %s: %d messages, want none", with, len(page.Messages))
		}
	}
	for _, path := range []string{"im/sync", "im/conversations"} {
		f := cWS.Request(path, map[string]any{"since": 0})
		if f.ErrorCode() != "" || strings.Contains(string(f.Body), canary) {
			t.Errorf("carol's %s: %s", path, f.Body)
		}
	}
	// Both parties find it in their history, as their own view.
	for _, r := range []struct {
		c    *servertest.Client
		with string
	}{{bWS, userA}, {aTCP, userB}} {
		var page struct {
			Messages []secMessage `json:"messages"`
		}
		r.c.OK("im/load", map[string]any{"with": r.with}, &page)
		if len(page.Messages) != 1 || page.Messages[0].Text != canary || page.Messages[0].Conv != r.with {
			t.Errorf("im/load with %s: %+v", r.with, page.Messages)
		}
	}
}

// Pitfall 15: 50 sends with one cid at once from 5 connections of one user
// store one message, get 50 identical replies, and push it once to each
// reader connection (the sender's other connections included, the one whose
// send won excepted).
func TestCIDRace(t *testing.T) {
	// The per-user rate would refuse most of 50 sends at once; this test is
	// about idempotency, so the rate is raised out of the way.
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 1000, 1000 })
	first := s.DialWS(t, "", nil)
	aSID, _ := authLogin(t, first, "racer", "password-a")
	senders := []*servertest.Client{first, s.DialWS(t, "sid="+aSID, nil), s.DialWS(t, "sid="+aSID, nil), s.DialTCP(t), s.DialTCP(t)}
	for _, c := range senders[3:] {
		c.OK("im/resume", map[string]string{"sid": aSID}, nil)
	}
	bWS, bTCP := s.DialWS(t, "", nil), s.DialTCP(t)
	bSID, bID := authLogin(t, bWS, "target", "password-b")
	bTCP.OK("im/resume", map[string]string{"sid": bSID}, nil)
	outsider := s.DialWS(t, "", nil)
	authLogin(t, outsider, "outsider", "password-c")
	before, err := s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	const n, cid, text = 50, "race-cid-1", "one and only"
	body := map[string]string{"to": "user:" + strconv.FormatInt(bID, 10), "text": text, "cid": cid}
	replies := make([]servertest.Frame, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			replies[i], errs[i] = senders[i%len(senders)].TryRequest("im/send", body, servertest.DefaultTimeout)
		}()
	}
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || replies[i].ErrorCode() != "" {
			t.Fatalf("send %d: %v %s", i, errs[i], replies[i].Body)
		}
		if string(replies[i].Body) != string(replies[0].Body) {
			t.Fatalf("replies differ:\n%s\n%s", replies[0].Body, replies[i].Body)
		}
	}
	var r struct {
		ID  int64  `json:"id"`
		CID string `json:"cid"`
	}
	replies[0].Decode(t, &r)
	if r.ID == 0 || r.CID != cid {
		t.Fatalf("reply %s", replies[0].Body)
	}
	after, err := s.Store.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after-before != 1 {
		t.Fatalf("the store gained %d messages for one cid", after-before)
	}

	all := append(append([]*servertest.Client{}, senders...), bWS, bTCP, outsider)
	for _, c := range all {
		c.OK("ping", nil, nil) // every push the sends caused has arrived
	}
	counts := make([]int, len(all))
	for i, c := range all {
		for _, m := range secMessages(t, c, text) {
			if m.ID != r.ID {
				t.Errorf("connection %d: a push with id %d, want %d", i, m.ID, r.ID)
			}
			counts[i]++
		}
	}
	zeros := 0
	for i := range senders {
		switch counts[i] {
		case 0:
			zeros++
		case 1:
		default:
			t.Errorf("sender connection %d got %d pushes", i, counts[i])
		}
	}
	if zeros != 1 {
		t.Errorf("sender connections' pushes %v; want 1 each but the winner's", counts[:len(senders)])
	}
	if counts[len(senders)] != 1 || counts[len(senders)+1] != 1 {
		t.Errorf("recipient connections got %v pushes; want exactly 1 each", counts[len(senders):len(senders)+2])
	}
	if counts[len(all)-1] != 0 {
		t.Errorf("an outsider got %d pushes of a private message", counts[len(all)-1])
	}
	var page struct {
		Messages []secMessage `json:"messages"`
	}
	first.OK("im/load", map[string]any{"with": "user:" + strconv.FormatInt(bID, 10)}, &page)
	if len(page.Messages) != 1 || page.Messages[0].CID != cid {
		t.Errorf("history with the recipient: %+v; want the one message", page.Messages)
	}
}
