package imtest

// Authentication: session fixation (A3), cookie flags (A4), logout and
// expiry on every transport (A5), brute-force thresholds (A6), a login
// flood against the hashing slots (A7) and password storage (A9).

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
	"dce/common/config"
	"dce/project/im/service"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", to read the store's file as an outsider would
)

// authLogin logs c in and returns the sid and the user's id.
func authLogin(t *testing.T, c *servertest.Client, nickname, password string) (string, int64) {
	t.Helper()
	var r struct {
		SID  string `json:"sid"`
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	c.OK("im/login", map[string]string{"nickname": nickname, "password": password}, &r)
	if r.SID == "" || r.User.ID == 0 {
		t.Fatalf("login %s: no sid or user in the reply", nickname)
	}
	return r.SID, r.User.ID
}

// authSigner is who im/signer says c is: the nickname, or "" for null.
func authSigner(t *testing.T, c *servertest.Client) string {
	t.Helper()
	var r struct {
		User *struct {
			Nickname string `json:"nickname"`
		} `json:"user"`
	}
	c.OK("im/signer", nil, &r)
	if r.User == nil {
		return ""
	}
	return r.User.Nickname
}

// authBearerSigner asks im/signer over HTTP with a Bearer sid.
func authBearerSigner(t *testing.T, s *servertest.Server, sid string) string {
	t.Helper()
	resp, body := s.Post(t, "im/signer", nil, "Authorization", "Bearer "+sid)
	if resp.StatusCode != 200 {
		t.Fatalf("im/signer over HTTP: %d %s", resp.StatusCode, body)
	}
	var r struct {
		User *struct {
			Nickname string `json:"nickname"`
		} `json:"user"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("im/signer body %s: %v", body, err)
	}
	if r.User == nil {
		return ""
	}
	return r.User.Nickname
}

// httpError is an HTTP error reply's body.
type httpError struct {
	Error struct {
		Code         string `json:"code"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	} `json:"error"`
}

func decodeHTTPError(t *testing.T, body []byte) httpError {
	t.Helper()
	var e httpError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e
}

// retryAfterMS is the retry_after_ms an error frame carries.
func retryAfterMS(t *testing.T, f servertest.Frame) int64 {
	t.Helper()
	var e struct {
		Error struct {
			RetryAfterMS int64 `json:"retry_after_ms"`
		} `json:"error"`
	}
	f.Decode(t, &e)
	return e.Error.RetryAfterMS
}

// sidCookie is the dce_sid cookie a response sets, or nil.
func sidCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "dce_sid" {
			return c
		}
	}
	return nil
}

// A3: a login always issues a new sid; a sid the client brought, whether
// made up by an attacker or issued before and since ended, never becomes a
// logged-in one, and neither does a live sid of another user.
func TestA3SessionFixation(t *testing.T) {
	s := servertest.Start(t)
	attacker := "AAAAAAAAAAAAAAAAAAAAAA" // the shape of a real sid (22 base64url characters), never issued

	// Over HTTP, with the attacker's value planted in the cookie.
	resp, body := s.Post(t, "im/login", map[string]string{"nickname": "fixme", "password": "password-1"},
		"Cookie", "dce_sid="+attacker)
	if resp.StatusCode != 200 {
		t.Fatalf("login with a planted cookie: %d %s", resp.StatusCode, body)
	}
	var r struct {
		SID string `json:"sid"`
	}
	_ = json.Unmarshal(body, &r)
	c := sidCookie(resp)
	if r.SID == "" || r.SID == attacker || c == nil || c.Value != r.SID {
		t.Fatalf("login kept or ignored the sid: reply sid %q, cookie %v", r.SID, c)
	}
	if who := authBearerSigner(t, s, attacker); who != "" {
		t.Fatalf("the planted sid became %q's session", who)
	}
	if who := authBearerSigner(t, s, r.SID); who != "fixme" {
		t.Fatalf("the issued sid is %q's, want fixme", who)
	}

	// Over WebSocket, with the planted value as ?sid= and as the cookie.
	for _, how := range []struct {
		name  string
		query string
		hdr   http.Header
	}{
		{"query", "sid=" + attacker, nil},
		{"cookie", "", http.Header{"Cookie": {"dce_sid=" + attacker}}},
	} {
		ws := s.DialWS(t, how.query, how.hdr)
		if who := authSigner(t, ws); who != "" {
			t.Fatalf("%s: an unknown sid was adopted as %q", how.name, who)
		}
		sid, _ := authLogin(t, ws, "fixme", "password-1")
		if sid == attacker {
			t.Fatalf("%s: the login adopted the planted sid", how.name)
		}
		fresh := s.DialWS(t, "sid="+attacker, nil)
		if who := authSigner(t, fresh); who != "" {
			t.Fatalf("%s: after the login, the planted sid is %q's session", how.name, who)
		}
		ws.Close()
	}

	// A sid issued before and ended by a logout stays dead after a login
	// on the connection that still presents it.
	old := s.DialWS(t, "", nil)
	oldSID, _ := authLogin(t, old, "fixme", "password-1")
	old.OK("im/logout", nil, nil)
	resp, body = s.Post(t, "im/login", map[string]string{"nickname": "fixme", "password": "password-1"},
		"Cookie", "dce_sid="+oldSID)
	if resp.StatusCode != 200 {
		t.Fatalf("login with an ended sid in the cookie: %d %s", resp.StatusCode, body)
	}
	if c := sidCookie(resp); c == nil || c.Value == oldSID {
		t.Fatalf("the login reissued the ended sid: %v", c)
	}
	if who := authBearerSigner(t, s, oldSID); who != "" {
		t.Fatalf("the ended sid came back to life as %q's", who)
	}

	// A connection holding another user's live sid that logs in as someone
	// else gets a new sid; the first user's sid still names the first user.
	ws := s.DialWS(t, "", nil)
	annSID, _ := authLogin(t, ws, "ann-fix", "password-2")
	bobSID, _ := authLogin(t, ws, "bob-fix", "password-3")
	if bobSID == annSID {
		t.Fatal("a second login on one connection reused the first sid")
	}
	if who := authBearerSigner(t, s, annSID); who != "ann-fix" {
		t.Fatalf("ann's sid now names %q", who)
	}
	if who := authBearerSigner(t, s, bobSID); who != "bob-fix" {
		t.Fatalf("bob's sid names %q", who)
	}
}

// A4: the login cookie's flags, with and without server.secure, and HSTS.
func TestA4CookieFlags(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			s := servertest.Start(t, func(c *config.Config) { c.Server.Secure = secure })
			resp, body := s.Post(t, "im/login", map[string]string{"nickname": "cookie", "password": "password-1"})
			if resp.StatusCode != 200 {
				t.Fatalf("login: %d %s", resp.StatusCode, body)
			}
			raw := resp.Header.Values("Set-Cookie")
			if len(raw) != 1 {
				t.Fatalf("Set-Cookie headers: %q, want exactly one", raw)
			}
			c := sidCookie(resp)
			if c == nil || c.Value == "" {
				t.Fatalf("no dce_sid cookie in %q", raw)
			}
			lower := strings.ToLower(raw[0])
			switch {
			case !c.HttpOnly:
				t.Errorf("cookie is not HttpOnly: %s", raw[0])
			case c.SameSite != http.SameSiteLaxMode:
				t.Errorf("cookie is not SameSite=Lax: %s", raw[0])
			case c.Path != "/":
				t.Errorf("cookie path %q, want /: %s", c.Path, raw[0])
			case c.Domain != "" || strings.Contains(lower, "domain="):
				t.Errorf("cookie has a Domain: %s", raw[0])
			case c.Secure != secure:
				t.Errorf("cookie Secure=%v with server.secure=%v: %s", c.Secure, secure, raw[0])
			case !c.Expires.After(time.Now()):
				t.Errorf("cookie expires %v, not in the future: %s", c.Expires, raw[0])
			}

			req, _ := http.NewRequest(http.MethodGet, s.HTTPURL+"/", nil)
			page, _ := s.Do(t, req)
			if page.StatusCode != 200 || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("GET /: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
			}
			hsts := page.Header.Get("Strict-Transport-Security")
			if secure {
				age, err := strconv.Atoi(strings.TrimPrefix(strings.Split(hsts, ";")[0], "max-age="))
				if err != nil || age < 180*24*3600 {
					t.Errorf("HSTS %q on GET /, want max-age of at least 180 days", hsts)
				}
			} else if hsts != "" {
				t.Errorf("HSTS %q sent over plain HTTP without server.secure", hsts)
			}
		})
	}
}

// authExpectUnauthorized fails unless a login-only node answers
// unauthorized on c.
func authExpectUnauthorized(t *testing.T, c *servertest.Client, who string) {
	t.Helper()
	if code := c.Request("im/users", nil).ErrorCode(); code != "unauthorized" {
		t.Fatalf("%s: im/users gave %q, want unauthorized", who, code)
	}
}

// authHolders is one sid held on WebSocket, TCP and UDP.
type authHolders struct {
	ws, tcp, udp *servertest.Client
	sid          string
}

func authHoldEverywhere(t *testing.T, s *servertest.Server, nickname string) authHolders {
	t.Helper()
	h := authHolders{ws: s.DialWS(t, "", nil), tcp: s.DialTCP(t), udp: s.DialUDP(t)}
	h.sid, _ = authLogin(t, h.ws, nickname, "password-1")
	h.tcp.OK("im/resume", map[string]string{"sid": h.sid}, nil)
	h.udp.OK("im/resume", map[string]string{"sid": h.sid}, nil)
	for _, c := range []*servertest.Client{h.ws, h.tcp, h.udp} {
		c.OK("im/users", nil, nil)
	}
	if resp, body := s.Post(t, "im/users", nil, "Authorization", "Bearer "+h.sid); resp.StatusCode != 200 {
		t.Fatalf("Bearer before the end: %d %s", resp.StatusCode, body)
	}
	return h
}

// authWaitAllUnauthorized polls every holder until each answers
// unauthorized on a login-only node, failing after deadline.
func authWaitAllUnauthorized(t *testing.T, s *servertest.Server, h authHolders, deadline time.Time) {
	t.Helper()
	pending := map[string]func() bool{
		"websocket": func() bool { return h.ws.Request("im/users", nil).ErrorCode() == "unauthorized" },
		"tcp":       func() bool { return h.tcp.Request("im/users", nil).ErrorCode() == "unauthorized" },
		"udp":       func() bool { return h.udp.Request("im/users", nil).ErrorCode() == "unauthorized" },
		"http": func() bool {
			resp, _ := s.Post(t, "im/users", nil, "Authorization", "Bearer "+h.sid)
			return resp.StatusCode == http.StatusUnauthorized
		},
	}
	for len(pending) > 0 {
		for name, done := range pending {
			if done() {
				delete(pending, name)
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still authorized after the deadline: %v", mapKeys(pending))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// authExpectSIDRefused fails unless sid is refused everywhere a new
// client could present it.
func authExpectSIDRefused(t *testing.T, s *servertest.Server, sid string) {
	t.Helper()
	fresh := s.DialWS(t, "sid="+sid, nil)
	if who := authSigner(t, fresh); who != "" {
		t.Fatalf("a new WebSocket with the old ?sid= is %q", who)
	}
	authExpectUnauthorized(t, fresh, "new websocket")
	for _, c := range []*servertest.Client{s.DialTCP(t), s.DialUDP(t)} {
		if code := c.Request("im/resume", map[string]string{"sid": sid}).ErrorCode(); code != "unauthorized" {
			t.Fatalf("im/resume with the old sid: %q, want unauthorized", code)
		}
		authExpectUnauthorized(t, c, "after a refused resume")
	}
	resp, body := s.Post(t, "im/users", nil, "Authorization", "Bearer "+sid)
	if resp.StatusCode != http.StatusUnauthorized || decodeHTTPError(t, body).Error.Code != "unauthorized" {
		t.Fatalf("Bearer with the old sid: %d %s, want 401 unauthorized", resp.StatusCode, body)
	}
}

// A5: a logout on one transport ends the session on every transport that
// holds it, and the sid is refused from then on; the same after the
// absolute lifetime runs out.
func TestA5LogoutAndExpiry(t *testing.T) {
	t.Run("logout", func(t *testing.T) {
		s := servertest.Start(t)
		h := authHoldEverywhere(t, s, "leaver")
		start := time.Now()
		h.ws.OK("im/logout", nil, nil)
		authWaitAllUnauthorized(t, s, h, start.Add(time.Second))
		t.Logf("every holder unauthorized %v after the logout", time.Since(start).Round(time.Millisecond))
		authExpectSIDRefused(t, s, h.sid)
	})
	t.Run("lifetime", func(t *testing.T) {
		const lifetime = 2 * time.Second
		s := servertest.Start(t, func(c *config.Config) { c.Session.Lifetime = config.Duration{Duration: lifetime} })
		h := authHoldEverywhere(t, s, "expirer")
		sess, err := s.Sessions.Get(context.Background(), h.sid)
		if err != nil {
			t.Fatal(err)
		}
		if d := sess.Expires.Sub(sess.Created); d != lifetime {
			t.Fatalf("session lifetime %v, want %v", d, lifetime)
		}
		// Still good shortly before the end (the check below must be able to fail).
		time.Sleep(time.Until(sess.Expires.Add(-500 * time.Millisecond)))
		for _, c := range []*servertest.Client{h.ws, h.tcp, h.udp} {
			c.OK("im/users", nil, nil)
		}
		time.Sleep(time.Until(sess.Expires))
		authWaitAllUnauthorized(t, s, h, sess.Expires.Add(time.Second))
		t.Logf("every holder unauthorized %v after expiry", time.Since(sess.Expires).Round(time.Millisecond))
		authExpectSIDRefused(t, s, h.sid)
	})
}

// A6: 5 failures for one nickname from one address are allowed; the 6th
// and even a correct 7th are rate_limited, whatever the transport. Failures
// from another address do not lock the owner out.
func TestA6BruteForceThresholds(t *testing.T) {
	s := servertest.Start(t)
	const nick, right, wrong = "victim", "correct-horse-1", "wrong-password"
	owner := s.DialWS(t, "", nil)
	authLogin(t, owner, nick, right)

	loginBody := func(pw string) map[string]string { return map[string]string{"nickname": nick, "password": pw} }

	// Another address (127.0.0.2, still loopback) fails 5 times, then is
	// throttled itself, on TCP and HTTP alike.
	other := s.DialTCPFrom(t, "127.0.0.2")
	for i := 1; i <= 5; i++ {
		if code := other.Request("im/login", loginBody(wrong)).ErrorCode(); code != "auth_failed" {
			t.Fatalf("failure %d from 127.0.0.2: %q, want auth_failed", i, code)
		}
	}
	if code := other.Request("im/login", loginBody(wrong)).ErrorCode(); code != "rate_limited" {
		t.Fatalf("6th failure from 127.0.0.2: %q, want rate_limited", code)
	}
	otherHTTP := servertest.HTTPClientFrom("127.0.0.2", 1)
	if status, code, _ := authPostLogin(t, s, otherHTTP, nick, right); status != 429 || code != "rate_limited" {
		t.Fatalf("correct password from 127.0.0.2 over HTTP: %d %s, want 429 rate_limited", status, code)
	}

	// The owner's address is not locked out by that.
	ws := s.DialWS(t, "", nil)
	authLogin(t, ws, nick, right)

	// From the owner's address: 5 failures spread over WS, TCP and HTTP.
	tcp := s.DialTCP(t)
	fail := []func() string{
		func() string { return ws.Request("im/login", loginBody(wrong)).ErrorCode() },
		func() string { return tcp.Request("im/login", loginBody(wrong)).ErrorCode() },
		func() string { _, code, _ := authPostLogin(t, s, nil, nick, wrong); return code },
		func() string { return ws.Request("im/login", loginBody(wrong)).ErrorCode() },
		func() string { return tcp.Request("im/login", loginBody(wrong)).ErrorCode() },
	}
	for i, f := range fail {
		if code := f(); code != "auth_failed" {
			t.Fatalf("failure %d: %q, want auth_failed", i+1, code)
		}
	}
	// 6th (wrong, HTTP) and 7th (right, WebSocket): rate_limited with a wait.
	status, code, ms := authPostLogin(t, s, nil, nick, wrong)
	if status != 429 || code != "rate_limited" || ms <= 0 || ms > 300_000 {
		t.Fatalf("6th failure over HTTP: %d %s retry_after_ms=%d, want 429 rate_limited with 0 < ms <= 300000", status, code, ms)
	}
	f := ws.Request("im/login", loginBody(right))
	if f.ErrorCode() != "rate_limited" || retryAfterMS(t, f) <= 0 {
		t.Fatalf("7th attempt, with the right password: %s, want rate_limited with retry_after_ms", f.Body)
	}
	if f := s.DialUDP(t).Request("im/login", loginBody(right)); f.ErrorCode() != "rate_limited" {
		t.Fatalf("the right password over UDP after the lockout: %s, want rate_limited", f.Body)
	}
	// The existing session is untouched by all of this.
	owner.OK("im/users", nil, nil)
}

// authPostLogin posts im/login with client (the default when nil) and
// returns the status, the error code and retry_after_ms.
func authPostLogin(t *testing.T, s *servertest.Server, client *http.Client, nick, pw string) (int, string, int64) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"nickname": nick, "password": pw})
	req, _ := http.NewRequest(http.MethodPost, s.HTTPURL+"/im/login", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	var resp *http.Response
	var body []byte
	if client == nil {
		resp, body = s.Do(t, req)
	} else {
		r, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST im/login: %v", err)
		}
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			t.Fatalf("POST im/login: reading the reply: %v", err)
		}
		resp = r
	}
	if resp.StatusCode == 200 {
		return 200, "", 0
	}
	e := decodeHTTPError(t, body)
	if e.Error.Code == "rate_limited" && resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 without a Retry-After header")
	}
	return resp.StatusCode, e.Error.Code, e.Error.RetryAfterMS
}

// productionArgon are OWASP's argon2id parameters, the server's defaults.
func productionArgon(c *config.Config) {
	d := config.Default().Auth
	c.Auth.ArgonMemoryKiB, c.Auth.ArgonTime, c.Auth.ArgonThreads = d.ArgonMemoryKiB, d.ArgonTime, d.ArgonThreads
}

// A7: 200 concurrent wrong-password logins for 200 existing users, each
// from its own loopback address (so the per-address throttles, which
// would otherwise answer before any hashing, stay out of the way), with
// production argon2 parameters and 2 hashing slots. The excess is told
// rate_limited quickly, memory stays bounded, and an unrelated connection
// keeps its ping latency.
func TestA7LoginFlood(t *testing.T) {
	// Under the race detector the flood still runs once, for its outcomes
	// (every login answered, the excess rate_limited); its timing and memory
	// figures are meaningless there and are not checked.
	const users, slots = 200, 2
	waves := 8
	if raceEnabled {
		waves = 1
	}
	s := servertest.Start(t, productionArgon, func(c *config.Config) {
		c.Auth.HashSlots = slots
		c.Auth.HashWait = config.Default().Auth.HashWait // production: 200 ms
	})
	ctx := context.Background()

	// The users exist already: one real production hash, stored for all
	// (hashing 200 registrations through the server would take seconds).
	hash, err := service.NewHasher(service.ArgonParams{MemoryKiB: 19456, Time: 2, Threads: 1}, 1, time.Second).
		Hash(ctx, "the-right-password")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Store.CreateUser(ctx, fmt.Sprintf("flood%03d", i), hash, ""); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Baseline: started, and one client has logged in and out.
	base := s.DialWS(t, "", nil)
	base.Login("flood000", "the-right-password")
	base.OK("im/logout", nil, nil)
	base.Close()
	baseline := servertest.RSS(t)

	// The unrelated connection pings throughout; RSS is sampled throughout.
	pinger := s.DialWS(t, "", nil)
	pinger.OK("ping", nil, nil)
	stop := make(chan struct{})
	var pings servertest.Latencies
	var peak atomic.Uint64
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			f, err := pinger.TryRequest("ping", nil, 5*time.Second)
			if err != nil || f.ErrorCode() != "" {
				t.Errorf("ping during the flood: %v %s", err, f.Body)
				return
			}
			pings.Add(time.Since(t0))
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		defer bg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := servertest.RSS(t); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	clients := make([]*http.Client, users)
	for i := range clients {
		clients[i] = servertest.HTTPClientFrom(fmt.Sprintf("127.0.1.%d", i+1), 1)
	}
	var replies servertest.Latencies
	var failed, limited, other atomic.Int64
	var firstOther atomic.Value
	start := time.Now()
	for range waves {
		var wave sync.WaitGroup
		gate := make(chan struct{})
		for i := range users {
			wave.Add(1)
			go func() {
				defer wave.Done()
				<-gate
				t0 := time.Now()
				status, code, ms := authPostLogin(t, s, clients[i], fmt.Sprintf("flood%03d", i), "a-wrong-password")
				replies.Add(time.Since(t0))
				switch {
				case status == 401 && code == "auth_failed":
					failed.Add(1)
				case status == 429 && code == "rate_limited" && ms > 0:
					limited.Add(1)
				default:
					other.Add(1)
					firstOther.CompareAndSwap(nil, fmt.Sprintf("%d %s retry_after_ms=%d", status, code, ms))
				}
			}()
		}
		close(gate)
		wave.Wait()
	}
	flood := time.Since(start)
	close(stop)
	bg.Wait()
	for _, c := range clients {
		c.CloseIdleConnections()
	}

	grew := int64(peak.Load()) - int64(baseline)
	budget := int64(slots*19+50) << 20
	t.Logf("%d logins in %v: %d auth_failed, %d rate_limited; reply latency %s; unrelated ping %s; RSS baseline %d MiB, peak +%d MiB (budget +%d MiB)",
		waves*users, flood.Round(time.Millisecond), failed.Load(), limited.Load(), replies.String(), pings.String(),
		baseline>>20, grew>>20, budget>>20)
	if n := other.Load(); n > 0 {
		t.Errorf("%d logins got something other than auth_failed or rate_limited, e.g. %v", n, firstOther.Load())
	}
	if failed.Load() == 0 || limited.Load() == 0 {
		t.Errorf("want both hashed failures and rate_limited excess; got %d and %d", failed.Load(), limited.Load())
	}
	if raceEnabled {
		t.Log("race detector: the latency, ping and RSS figures are not checked")
		return
	}
	if worst := replies.Percentile(100); worst > time.Second {
		t.Errorf("slowest login reply took %v; the excess must be told rate_limited within 1 s", worst)
	}
	if p99 := pings.Percentile(99); p99 > 100*time.Millisecond || pings.Len() < 50 {
		t.Errorf("unrelated ping p99 %v over %d pings; want <= 100ms over at least 50", p99, pings.Len())
	}
	if grew > budget {
		t.Errorf("RSS grew %d MiB during the flood; budget is %d MiB (slots x 19 MiB + 50 MiB)", grew>>20, budget>>20)
	}
}

// phcPattern is argon2id's PHC string as the server must store it.
var phcPattern = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)

// storedHash reads a user's password hash straight from the SQLite file,
// read-only, as an attacker with a copy of the disk would.
func storedHash(t *testing.T, cfg config.Config, nickname string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+cfg.StorePath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var hash string
	if err := db.QueryRow(`SELECT password_hash FROM users WHERE nickname = ?`, nickname).Scan(&hash); err != nil {
		t.Fatalf("read %s's hash from %s: %v", nickname, cfg.StorePath(), err)
	}
	return hash
}

// checkPHC checks the format and returns m, t, salt and hash.
func checkPHC(t *testing.T, phc string) (m, tm int, salt, key []byte) {
	t.Helper()
	g := phcPattern.FindStringSubmatch(phc)
	if g == nil {
		t.Fatalf("stored hash %q is not $argon2id$v=19$m=..,t=..,p=..$salt$hash", phc)
	}
	m, _ = strconv.Atoi(g[1])
	tm, _ = strconv.Atoi(g[2])
	if g[3] != "1" {
		t.Errorf("p=%s, want 1", g[3])
	}
	var err error
	if salt, err = base64.RawStdEncoding.DecodeString(g[4]); err != nil || len(salt) != 16 {
		t.Errorf("salt %q: %d bytes (%v), want 16", g[4], len(salt), err)
	}
	if key, err = base64.RawStdEncoding.DecodeString(g[5]); err != nil || len(key) != 32 {
		t.Errorf("hash %q: %d bytes (%v), want 32", g[5], len(key), err)
	}
	return m, tm, salt, key
}

// A9: what the store holds is argon2id at OWASP's parameters, salted per
// user.
func TestA9PasswordStorage(t *testing.T) {
	servertest.SQLiteOnly(t)
	s := servertest.Start(t, productionArgon)
	c := s.DialWS(t, "", nil)
	const pw = "same password for both"
	authLogin(t, c, "twin1", pw)
	authLogin(t, c, "twin2", pw)
	h1, h2 := storedHash(t, s.Config, "twin1"), storedHash(t, s.Config, "twin2")
	m, tm, salt1, key1 := checkPHC(t, h1)
	if m != 19456 || tm != 2 {
		t.Errorf("stored m=%d,t=%d; want m=19456,t=2", m, tm)
	}
	_, _, salt2, key2 := checkPHC(t, h2)
	if string(salt1) == string(salt2) || string(key1) == string(key2) || h1 == h2 {
		t.Errorf("the same password gave the same salt or hash for two users:\n%s\n%s", h1, h2)
	}
	if strings.Contains(h1, pw) || strings.Contains(h1, base64.RawStdEncoding.EncodeToString([]byte(pw))) {
		t.Error("the stored hash contains the password")
	}
	// The stored hash is the one that works.
	authLogin(t, c, "twin1", pw)
	if code := c.Request("im/login", map[string]string{"nickname": "twin2", "password": pw + "!"}).ErrorCode(); code != "auth_failed" {
		t.Fatalf("wrong password: %q, want auth_failed", code)
	}
}

// A9: length limits count characters, and no part of a password is
// ignored.
func TestA9PassphraseLimits(t *testing.T) {
	s := servertest.Start(t)
	c := s.DialWS(t, "", nil)
	long := strings.Repeat("密码🔑", 42) + "ab" // 128 characters, 302 bytes
	if n := len([]rune(long)); n != 128 {
		t.Fatalf("test passphrase has %d characters", n)
	}
	authLogin(t, c, "longpass", long)
	authLogin(t, c, "longpass", long)
	if code := c.Request("im/login", map[string]string{"nickname": "longpass2", "password": long + "c"}).ErrorCode(); code != "bad_request" {
		t.Fatalf("129-character password: %q, want bad_request", code)
	}
	if code := c.Request("im/login", map[string]string{"nickname": "short", "password": "7chars!"}).ErrorCode(); code != "bad_request" {
		t.Fatalf("7-character password: %q, want bad_request", code)
	}
	// The last character of a 128-character passphrase counts.
	changed := long[:len(long)-1] + "c"
	if code := c.Request("im/login", map[string]string{"nickname": "longpass", "password": changed}).ErrorCode(); code != "auth_failed" {
		t.Fatalf("128-character passphrase with its last character changed: %q, want auth_failed", code)
	}
	// P and P+"x" are different passwords; so are P and P minus its last.
	const p = "password-P"
	authLogin(t, c, "ptrunc", p)
	for _, wrong := range []string{p + "x", p[:len(p)-1] + "Q", strings.ToUpper(p)} {
		if code := c.Request("im/login", map[string]string{"nickname": "ptrunc", "password": wrong}).ErrorCode(); code != "auth_failed" {
			t.Fatalf("password %q for a user whose password is %q: %q, want auth_failed", wrong, p, code)
		}
	}
	authLogin(t, c, "ptrunc", p)
}

// A9: a hash made with weaker parameters is replaced on the next
// successful login after the configuration raises them, and only then.
func TestA9ParametersUpgradedOnLogin(t *testing.T) {
	servertest.SQLiteOnly(t)
	cfg := servertest.Config(t) // cheap: m=1024, t=1
	s1 := servertest.StartConfig(t, cfg, boot.Options{})
	authLogin(t, s1.DialWS(t, "", nil), "upgrader", "password-up")
	old := storedHash(t, cfg, "upgrader")
	if m, tm, _, _ := checkPHC(t, old); m != 1024 || tm != 1 {
		t.Fatalf("first hash has m=%d,t=%d; want the cheap m=1024,t=1", m, tm)
	}
	s1.Close()

	strong := cfg
	productionArgon(&strong)
	s2 := servertest.StartConfig(t, strong, boot.Options{})
	c := s2.DialWS(t, "", nil)
	if code := c.Request("im/login", map[string]string{"nickname": "upgrader", "password": "wrong-password"}).ErrorCode(); code != "auth_failed" {
		t.Fatalf("wrong password: %q", code)
	}
	if h := storedHash(t, strong, "upgrader"); h != old {
		t.Fatalf("a failed login changed the stored hash")
	}
	authLogin(t, c, "upgrader", "password-up")
	upgraded := storedHash(t, strong, "upgrader")
	if m, tm, _, _ := checkPHC(t, upgraded); m != 19456 || tm != 2 {
		t.Fatalf("after a login with raised parameters the hash has m=%d,t=%d; want m=19456,t=2", m, tm)
	}
	authLogin(t, c, "upgrader", "password-up")
	if h := storedHash(t, strong, "upgrader"); h != upgraded {
		t.Fatalf("an up-to-date hash was replaced again")
	}
}
