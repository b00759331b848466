package imtest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// TestJunkSIDDoesNotBypassAnonCap: a WebSocket may pass the per-address cap
// on anonymous connections by bringing a sid, but a sid that logs nobody in
// is closed as soon as that shows, so junk sids are no way around the cap.
func TestJunkSIDDoesNotBypassAnonCap(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.AnonConnectionsPerIP = 2 })
	var open []*servertest.Client
	for i := 0; i < 2; i++ {
		c := s.DialWS(t, "", nil)
		c.OK("ping", nil, nil) // answered, so the server has registered it
		open = append(open, c)
	}
	junk := s.DialWS(t, "sid=AAAAAAAAAAAAAAAAAAAAAA", nil)
	if !junk.WaitClosed(5 * time.Second) {
		t.Fatal("a connection with a junk sid beyond the anonymous cap stayed open")
	}
	if code := junk.WSCloseCode(); code != 1008 {
		t.Fatalf("close code %d, want 1008", code)
	}
	// A real sid still gets in past the cap.
	sid := open[0].Login("capowner", "password1")
	real := s.DialWS(t, "sid="+sid, nil)
	var who struct {
		User *struct{ Nickname string } `json:"user"`
	}
	real.OK("im/signer", nil, &who)
	if who.User == nil || who.User.Nickname != "capowner" {
		t.Fatalf("resumed connection is %+v", who.User)
	}
	for _, c := range open[1:] {
		c.OK("ping", nil, nil)
	}
}

// TestLoginCSRF: a cross-site page cannot log its visitor in (which would
// plant its own session cookie); same-origin JSON and plain clients can.
func TestLoginCSRF(t *testing.T) {
	s := servertest.Start(t)
	body := `{"nickname":"csrfvictim","password":"password1"}`
	cases := []struct {
		name    string
		headers []string
		want    int
	}{
		{"cross-site origin", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{"sec-fetch-site cross-site", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"browser form", []string{"Origin", s.HTTPURL, "Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"text/plain from a browser", []string{"Sec-Fetch-Site", "same-origin", "Content-Type", "text/plain"}, http.StatusUnsupportedMediaType},
		{"same-origin JSON", []string{"Origin", s.HTTPURL}, http.StatusOK},
		{"plain client, form content type", []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusOK},
	}
	for _, tc := range cases {
		resp, out := s.Post(t, "im/login", body, tc.headers...)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, resp.StatusCode, tc.want, out)
		}
		if tc.want != http.StatusOK && resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s: a refused login set a cookie", tc.name)
		}
	}
}

// TestNicknameNotLockedOutFromElsewhere: failures against a nickname from
// many other addresses exceed the overall per-nickname limit, yet the owner's
// address, which has no failures of its own, still logs in.
func TestNicknameNotLockedOutFromElsewhere(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.FailedLoginsPerNickname = 10 })
	owner := servertest.HTTPClientFrom("127.0.0.1", 1)
	login := func(client *http.Client, password string) int {
		req, _ := http.NewRequest(http.MethodPost, s.HTTPURL+"/im/login",
			strings.NewReader(fmt.Sprintf(`{"nickname":"target","password":%q}`, password)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := login(owner, "the right one"); got != http.StatusOK {
		t.Fatalf("register: %d", got)
	}
	limited := 0
	for a := 2; a <= 4; a++ { // 3 addresses x 5 tries = 15 > 10
		attacker := servertest.HTTPClientFrom(fmt.Sprintf("127.0.0.%d", a), 1)
		for i := 0; i < 5; i++ {
			switch got := login(attacker, "wrong password"); got {
			case http.StatusUnauthorized:
			case http.StatusTooManyRequests: // the overall limit binds addresses that failed themselves
				limited++
			default:
				t.Fatalf("attacker %d try %d: %d", a, i, got)
			}
		}
	}
	if limited == 0 {
		t.Fatal("the overall per-nickname limit never bound the failing addresses")
	}
	if got := login(servertest.HTTPClientFrom("127.0.0.5", 1), "wrong password"); got != http.StatusUnauthorized {
		t.Fatalf("a fresh address's first try: %d, want 401", got)
	}
	if got := login(owner, "the right one"); got != http.StatusOK {
		t.Fatalf("the owner is locked out: %d", got)
	}
}

// TestTrustedProxyAddress: behind a trusted proxy the client address is the
// right-most X-Forwarded-For entry the proxy added; entries the client wrote
// itself cannot make each request look like a new address.
func TestTrustedProxyAddress(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Server.TrustedProxies = []string{"127.0.0.0/8"} })
	s.Post(t, "im/login", `{"nickname":"proxied","password":"password1"}`)
	got := 0
	for i := 0; i < 6; i++ {
		spoof := fmt.Sprintf("10.1.%d.%d, 203.0.113.9", i, i) // the client's own claim, then the proxy's
		resp, _ := s.Post(t, "im/login", `{"nickname":"proxied","password":"wrong password"}`, "X-Forwarded-For", spoof)
		got = resp.StatusCode
	}
	if got != http.StatusTooManyRequests {
		t.Fatalf("6th failure through the proxy: %d, want 429 (the spoofed left-most entries rotated the address)", got)
	}
	// Another real client behind the proxy is another address.
	resp, _ := s.Post(t, "im/login", `{"nickname":"proxied","password":"password1"}`, "X-Forwarded-For", "203.0.113.10")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another client behind the proxy: %d", resp.StatusCode)
	}
}

// TestUpdatesRateLimited: read marks and profile changes push to other
// users, so a burst of them is rate-limited like sends.
func TestUpdatesRateLimited(t *testing.T) {
	s := servertest.Start(t)
	c := s.DialTCP(t)
	c.Login("flooder", "password1")
	limited := 0
	for i := 0; i < 40; i++ {
		if c.Request("im/profile", map[string]string{"brief": fmt.Sprint(i)}).ErrorCode() == "rate_limited" {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("40 profile changes at once were all accepted")
	}
	t.Logf("updates: %d of 40 profile changes rate_limited", limited)
}

// TestSIDsNeverLogged: with debug logging, a session's whole life (login on
// every transport, resume by ?sid=, Bearer, a bad sid, logout) leaves
// neither the sid nor the password in the logs.
func TestSIDsNeverLogged(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Server.LogLevel = "debug" })
	const password = "a secret password"
	tcp := s.DialTCP(t)
	sid := tcp.Login("quiet", password)
	ws := s.DialWS(t, "sid="+sid, nil)
	ws.OK("im/signer", nil, nil)
	udp := s.DialUDP(t)
	udp.OK("im/resume", map[string]string{"sid": sid}, nil)
	s.Post(t, "im/send", `{"to":"room:lobby","text":"hi"}`, "Authorization", "Bearer "+sid)
	tcp.Request("im/resume", map[string]string{"sid": "not-a-real-session-id!"})
	tcp.Request("im/login", map[string]string{"nickname": "quiet", "password": "wrong " + password})
	ws.OK("im/logout", nil, nil)
	s.Close()
	logs := s.Logs.String()
	if logs == "" {
		t.Fatal("nothing was logged at debug level; the check would prove nothing")
	}
	for _, secret := range []string{sid, password} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret appears in the logs: %q", secret)
		}
	}
}
