// Package imtest holds the chat's end-to-end tests: a real server on
// loopback ports, real clients on every transport, the real SQLite file.
package imtest

import (
	"testing"

	"dce/app/servertest"
)

// TestSmokeEveryTransport logs in and chats over WebSocket, TCP, UDP and
// HTTP, and checks that a lobby message reaches every transport.
func TestSmokeEveryTransport(t *testing.T) {
	s := servertest.Start(t)
	ws := s.DialWS(t, "", nil)
	tcp := s.DialTCP(t)
	udp := s.DialUDP(t)
	ws.Login("ann", "password1")
	tcp.Login("bob", "password2")
	sid := udp.Login("cat", "password3")

	var sent struct {
		ID   int64  `json:"id"`
		Conv string `json:"conv"`
	}
	ws.OK("im/send", map[string]string{"to": "room:lobby", "text": "hello all", "cid": "c1"}, &sent)
	if sent.ID == 0 || sent.Conv != "room:lobby" {
		t.Fatalf("send reply: %+v", sent)
	}
	for _, c := range []*servertest.Client{tcp, udp} {
		var m struct {
			ID   int64  `json:"id"`
			Text string `json:"text"`
		}
		c.MustPush("im/message").Decode(t, &m)
		if m.ID != sent.ID || m.Text != "hello all" {
			t.Fatalf("push: %+v", m)
		}
	}
	resp, body := s.Post(t, "im/send", map[string]string{"to": "room:lobby", "text": "over http"}, "Authorization", "Bearer "+sid)
	if resp.StatusCode != 200 {
		t.Fatalf("http send: %d %s", resp.StatusCode, body)
	}
	ws.MustPush("im/message")
}
