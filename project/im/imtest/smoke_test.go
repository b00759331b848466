// Package imtest holds the chat's end-to-end tests: a real server on
// loopback ports, real clients on every transport, the real SQLite file.
package imtest

import (
	"fmt"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
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

// TestIdlePushesOutliveTheWriteTimeout: a push to an idle WebSocket or TCP
// connection is written straight from the delivering goroutine; the
// socket's write deadline, set by the connection's last write, must not
// fail it once the write timeout has gone by.
func TestIdlePushesOutliveTheWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	s := servertest.Start(t, func(c *config.Config) { c.Transport.WriteTimeout = config.Duration{Duration: writeTimeout} })
	ann := s.DialWS(t, "", nil)
	bob := s.DialWS(t, "", nil)
	cat := s.DialTCP(t)
	ann.Login("ann", "password1")
	bob.Login("bob", "password2")
	cat.Login("cat", "password3")
	for i := range 3 {
		time.Sleep(2 * writeTimeout)
		text := fmt.Sprint("after a quiet while ", i)
		ann.OK("im/send", map[string]string{"to": "room:lobby", "text": text}, nil)
		var m struct {
			Text string `json:"text"`
		}
		for _, c := range []*servertest.Client{bob, cat} {
			c.MustPush("im/message").Decode(t, &m)
			if m.Text != text {
				t.Fatalf("push %d: %q, want %q", i, m.Text, text)
			}
		}
	}
}
