package imtest

// Moderation (PROTOCOL.md section 5, TESTPLAN A14): admin/kick, admin/ban
// and admin/mute, on every transport, their bad inputs, and a ban that
// outlives a restart.

import (
	"context"
	"strings"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
)

// moderator logs c in as root and makes root an admin.
func moderator(t *testing.T, s *servertest.Server, c *servertest.Client) int64 {
	t.Helper()
	id := groupLogin(t, c, "root")
	if err := s.Store.SetAdmin(context.Background(), id, true); err != nil {
		t.Fatal(err)
	}
	return id
}

// kickedWith waits for c's im/kicked push and checks its reason.
func kickedWith(t *testing.T, c *servertest.Client, reason string) {
	t.Helper()
	var k struct {
		Reason string `json:"reason"`
	}
	c.MustPush("im/kicked").Decode(t, &k)
	if k.Reason != reason {
		t.Fatalf("im/kicked reason %q, want %q", k.Reason, reason)
	}
}

// closedWith checks that the WebSocket c closes with code within 1 s.
func closedWith(t *testing.T, c *servertest.Client, code int) {
	t.Helper()
	if !c.WaitClosed(time.Second) {
		t.Fatalf("the WebSocket stayed open a second after the reply; want close %d", code)
	}
	if got := c.WSCloseCode(); got != code {
		t.Fatalf("the WebSocket closed with %d, want %d", got, code)
	}
}

// kickedAll checks that every WebSocket in ws gets im/kicked with reason
// and closes with code, and every TCP connection in tcp gets it and is
// closed, each within a second.
func kickedAll(t *testing.T, reason string, code int, ws, tcp []*servertest.Client) {
	t.Helper()
	for _, c := range ws {
		kickedWith(t, c, reason)
		closedWith(t, c, code)
	}
	for _, c := range tcp {
		kickedWith(t, c, reason)
		if !c.WaitClosed(time.Second) {
			t.Fatal("a TCP connection stayed open a second after the reply")
		}
	}
}

// A kick closes every connection the user holds: WebSockets get im/kicked
// and then 4001 within a second, the TCP connection is closed after the
// push, the UDP peer gets the push and is forgotten. The session stays,
// so the user resumes it.
func TestAdminKick(t *testing.T) {
	s := servertest.Start(t)
	admin := s.DialWS(t, "", nil)
	moderator(t, s, admin)
	ws1, ws2, tcp, udp := s.DialWS(t, "", nil), s.DialWS(t, "", nil), s.DialTCP(t), s.DialUDP(t)
	sid := ws1.Login("bob", "password-bob")
	var bobID int64
	for _, c := range []*servertest.Client{ws2, tcp, udp} {
		bobID = groupLogin(t, c, "bob")
	}
	watcher := s.DialWS(t, "", nil)
	groupLogin(t, watcher, "eve")

	admin.OK("admin/kick", map[string]any{"user": bobID, "reason": "cool off"}, nil)
	kickedAll(t, "cool off", 4001, []*servertest.Client{ws1, ws2}, []*servertest.Client{tcp})
	kickedWith(t, udp, "cool off")
	if who := authSigner(t, udp); who != "" {
		t.Fatalf("the kicked UDP peer is still %q", who)
	}
	if who := authSigner(t, watcher); who != "eve" {
		t.Fatalf("someone else's connection was touched: %q", who)
	}

	// The session was kept: the user comes back with it.
	back := s.DialWS(t, "sid="+sid, nil)
	if who := authSigner(t, back); who != "bob" {
		t.Fatalf("after a kick the session resumes as %q, want bob", who)
	}
	// No reason: a default one.
	admin.OK("admin/kick", map[string]any{"user": bobID}, nil)
	var k struct {
		Reason string `json:"reason"`
	}
	back.MustPush("im/kicked").Decode(t, &k)
	if k.Reason == "" {
		t.Fatal("a kick without a reason pushed an empty one")
	}
	closedWith(t, back, 4001)
}

// A ban ends every session of the user and closes their connections with
// 4503; until it ends they cannot log in, resume or send on any
// transport, and a restart does not lift it. minutes 0 lifts it.
func TestAdminBan(t *testing.T) {
	cfg := servertest.Config(t)
	s := servertest.StartConfig(t, cfg, boot.Options{})
	admin := s.DialTCP(t)
	moderator(t, s, admin)
	ws, tcp, udp := s.DialWS(t, "", nil), s.DialTCP(t), s.DialUDP(t)
	sid := ws.Login("bob", "password-bob")
	var bobID int64
	for _, c := range []*servertest.Client{tcp, udp} {
		bobID = groupLogin(t, c, "bob")
	}

	admin.OK("admin/ban", map[string]any{"user": bobID, "minutes": 60, "reason": "spam"}, nil)
	kickedAll(t, "spam", 4503, []*servertest.Client{ws}, []*servertest.Client{tcp})
	kickedWith(t, udp, "spam")
	banned := func(s *servertest.Server, when string) {
		t.Helper()
		if f := udp.Request("im/send", map[string]string{"to": "room:lobby", "text": "still here?"}); f.ErrorCode() != "unauthorized" {
			t.Fatalf("%s: the banned user's UDP send: %s, want unauthorized", when, f.Body)
		}
		for _, c := range []*servertest.Client{s.DialWS(t, "", nil), s.DialTCP(t), udp} {
			if f := c.Request("im/login", map[string]string{"nickname": "bob", "password": "password-bob"}); f.ErrorCode() != "forbidden" {
				t.Fatalf("%s: the banned user's login: %s, want forbidden", when, f.Body)
			}
		}
		if f := s.DialTCP(t).Request("im/resume", map[string]string{"sid": sid}); f.ErrorCode() != "unauthorized" {
			t.Fatalf("%s: the session the ban ended resumed: %s", when, f.Body)
		}
	}
	banned(s, "banned")

	s.Close()
	s = servertest.StartConfig(t, cfg, boot.Options{})
	udp = s.DialUDP(t)
	banned(s, "after a restart")

	// Lifted: the user logs in again, but the ended session stays ended.
	admin = s.DialWS(t, "", nil)
	groupLogin(t, admin, "root")
	admin.OK("admin/ban", map[string]any{"user": bobID, "minutes": 0}, nil)
	back := s.DialTCP(t)
	if f := back.Request("im/resume", map[string]string{"sid": sid}); f.ErrorCode() != "unauthorized" {
		t.Fatalf("the session a ban ended resumed: %s", f.Body)
	}
	groupLogin(t, back, "bob")
	send(t, back, "room:lobby", "back again")

	// No minutes: for good (a hundred years).
	admin.OK("admin/ban", map[string]any{"user": bobID}, nil)
	if !back.WaitClosed(time.Second) {
		t.Fatal("a ban for good left the connection open")
	}
	acct, err := s.Store.UserByID(context.Background(), bobID)
	if err != nil {
		t.Fatal(err)
	}
	if years := time.Until(acct.BannedUntil).Hours() / 24 / 365; years < 99 {
		t.Fatalf("a ban without minutes lasts %.1f years", years)
	}
}

// A mute stops sending, editing and profile changes at once (taking one's
// own message back is still allowed) but keeps the user connected and
// reading; minutes 0 lifts it at once.
func TestAdminMute(t *testing.T) {
	s := servertest.Start(t)
	admin := s.DialWS(t, "", nil)
	moderator(t, s, admin)
	bob := s.DialTCP(t)
	bobID := groupLogin(t, bob, "bob")
	mine := send(t, bob, "room:lobby", "before the mute")

	admin.OK("admin/mute", map[string]any{"user": bobID, "minutes": 5}, nil)
	wantCode(t, bob, "forbidden", "im/send", map[string]string{"to": "room:lobby", "text": "muted?"})
	wantCode(t, bob, "forbidden", "im/edit", map[string]any{"id": mine, "text": "edited while muted"})
	wantCode(t, bob, "forbidden", "im/profile", map[string]string{"brief": "everyone sees my brief"})
	bob.Drain()
	send(t, admin, "room:lobby", "the admin speaks")
	if m := pushText(t, bob, "im/message"); m.Text != "the admin speaks" {
		t.Fatalf("a muted user reads %+v", m)
	}
	if bob.Closed() {
		t.Fatal("a mute closed the connection")
	}
	bob.OK("im/delete", map[string]any{"id": mine}, nil)

	admin.OK("admin/mute", map[string]any{"user": bobID, "minutes": 0}, nil)
	send(t, bob, "room:lobby", "after the mute")
	bob.OK("im/profile", map[string]string{"brief": "unmuted"}, nil)
}

// Bad moderation requests get section 4's codes and change nothing.
func TestAdminModerationBadInputs(t *testing.T) {
	s := servertest.Start(t)
	admin := s.DialWS(t, "", nil)
	adminID := moderator(t, s, admin)
	bob := s.DialTCP(t)
	bobID := groupLogin(t, bob, "bob")
	long := strings.Repeat("x", 201)
	for _, c := range []struct {
		code, path string
		body       any
	}{
		{"bad_request", "admin/kick", map[string]any{"user": adminID}},
		{"bad_request", "admin/ban", map[string]any{"user": adminID}},
		{"bad_request", "admin/mute", map[string]any{"user": adminID, "minutes": 5}},
		{"bad_request", "admin/kick", map[string]any{}},
		{"bad_request", "admin/ban", map[string]any{"user": -3}},
		{"bad_request", "admin/kick", map[string]any{"user": "bob"}},
		{"not_found", "admin/kick", map[string]any{"user": 987654}},
		{"not_found", "admin/ban", map[string]any{"user": 987654, "minutes": 1}},
		{"not_found", "admin/mute", map[string]any{"user": 987654, "minutes": 1}},
		{"bad_request", "admin/ban", map[string]any{"user": bobID, "minutes": -1}},
		{"bad_request", "admin/ban", map[string]any{"user": bobID, "minutes": 100*365*24*60 + 1}},
		{"bad_request", "admin/mute", map[string]any{"user": bobID}},
		{"bad_request", "admin/mute", map[string]any{"user": bobID, "minutes": -5}},
		{"bad_request", "admin/kick", map[string]any{"user": bobID, "reason": long}},
		{"bad_request", "admin/ban", map[string]any{"user": bobID, "reason": "bad\x00byte"}},
		{"bad_request", "admin/ban", map[string]any{"user": bobID, "minutes": "ten"}},
	} {
		wantCode(t, admin, c.code, c.path, c.body)
	}
	// Not an admin: forbidden, on another user or on the admin.
	for _, path := range []string{"admin/kick", "admin/ban", "admin/mute"} {
		wantCode(t, bob, "forbidden", path, map[string]any{"user": adminID, "minutes": 1})
	}
	anon := s.DialWS(t, "", nil)
	wantCode(t, anon, "unauthorized", "admin/ban", map[string]any{"user": bobID})
	// Nothing happened to anyone.
	if who := authSigner(t, bob); who != "bob" || bob.Closed() {
		t.Fatalf("after the refusals bob is %q, closed=%v", who, bob.Closed())
	}
	send(t, bob, "room:lobby", "unharmed")
	send(t, admin, "room:lobby", "unharmed too")
}
