package imtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"
)

// A banned user's refusal is a typed disconnect: the WebSocket that opens
// with the user's sid is closed with 4503 and the reason, so that the
// client does not reconnect; the same refusal of an im/resume request is
// answered forbidden and the connection stays, anonymous; a login is
// refused forbidden.
func TestBannedUserDisconnect(t *testing.T) {
	s := servertest.Start(t)
	sid, id, err := loadLogin(s, "banned-one")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store.SetBannedUntil(context.Background(), id, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ws := s.DialWS(t, "sid="+sid, nil)
	if !ws.WaitClosed(5 * time.Second) {
		t.Fatal("the banned user's WebSocket stayed open")
	}
	if code, reason := ws.WSCloseCode(), ws.ServerCloseReason(); code != 4503 || !strings.HasPrefix(reason, "banned until ") {
		t.Fatalf("the banned user's WebSocket closed with %d %q; want 4503 \"banned until ...\"", code, reason)
	}
	for _, c := range []*servertest.Client{s.DialTCP(t), s.DialWS(t, "", nil)} {
		if f := c.Request("im/resume", map[string]string{"sid": sid}); f.ErrorCode() != "forbidden" {
			t.Fatalf("im/resume of the banned user: %s, want forbidden", f.Body)
		}
		if f := c.Request("im/login", map[string]string{"nickname": "banned-one", "password": "password1"}); f.ErrorCode() != "forbidden" {
			t.Fatalf("im/login of the banned user: %s, want forbidden", f.Body)
		}
		if who := authSigner(t, c); who != "" || c.Closed() {
			t.Fatalf("after the refusals the connection is %q, closed=%v; want it open and anonymous", who, c.Closed())
		}
	}
}
