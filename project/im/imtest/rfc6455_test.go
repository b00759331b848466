package imtest

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// P2: the RFC 6455 frame suite (TESTPLAN section 3), written with raw
// frames in place of the Autobahn TestSuite, which cannot run here. Each
// case runs on its own connection; after each one a fresh connection's ping
// must still work, and at the end the server's goroutines are back to
// where they were.

// rfcWait bounds every wait for the server in this suite: each outcome is
// expected within a second on loopback (pongs "≤ 1 s").
const rfcWait = time.Second

// rfcPingFrame is a ping request with the given id padded to exactly size
// bytes: PATH:ID;{"p":"xxx..."}.
func rfcPingFrame(id string, size int) []byte {
	head := "ping:" + id + ";"
	pad := size - len(head) - len(`{"p":""}`)
	if pad < 0 {
		panic(fmt.Sprintf("a ping frame cannot be %d bytes", size))
	}
	return []byte(head + `{"p":"` + strings.Repeat("x", pad) + `"}`)
}

// rfcExpectReply reads the next frame and checks it is the success reply to
// ping:id.
func rfcExpectReply(t *testing.T, c *servertest.RawWS, id string) {
	t.Helper()
	text, err := c.ReadText(rfcWait)
	if err != nil {
		t.Fatalf("no reply to ping:%s: %v", id, err)
	}
	if !strings.HasPrefix(text, "ping:"+id+`;{"ts":`) {
		t.Fatalf("reply to ping:%s is %q", id, text)
	}
}

// rfcExpectClose reads until the server's close frame and checks its code, and
// that no data frame came first.
func rfcExpectClose(t *testing.T, c *servertest.RawWS, code ws.StatusCode) servertest.RawClose {
	t.Helper()
	rc := c.ReadClose(rfcWait)
	if !rc.Got || rc.Code != code {
		t.Fatalf("want close %d, got %s", code, rc)
	}
	if !rc.EOF {
		t.Errorf("the server did not close the socket after close %d", code)
	}
	return rc
}

// rfcStillServes checks that a fresh connection's ping works.
func rfcStillServes(t *testing.T, s *servertest.Server) {
	t.Helper()
	c := s.DialRawWS(t, servertest.RawWSOptions{})
	defer c.Close()
	if err := c.Text("ping:fresh"); err != nil {
		t.Fatal(err)
	}
	rfcExpectReply(t, c, "fresh")
}

func rfcFrag(op ws.OpCode, fin bool, p string) ws.Frame { return ws.NewFrame(op, fin, []byte(p)) }

func rfcCloseFrame(code ws.StatusCode, reason string) ws.Frame {
	return ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason))
}

func TestRFC6455(t *testing.T) {
	s := servertest.Start(t)
	rfcStillServes(t, s) // warm up: the first connection allocates pools
	baseline := runtime.NumGoroutine()

	type rawCase struct {
		name string
		run  func(t *testing.T, c *servertest.RawWS)
	}
	var cases []rawCase
	add := func(name string, run func(t *testing.T, c *servertest.RawWS)) {
		cases = append(cases, rawCase{name, run})
	}

	// Message sizes.
	for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
		kind := map[ws.OpCode]string{ws.OpText: "text", ws.OpBinary: "binary"}[op]
		for _, size := range []int{0, 125, 126, 127, 65535, 65536} {
			add(fmt.Sprintf("size/%s/%d", kind, size), func(t *testing.T, c *servertest.RawWS) {
				if size == 0 { // an empty message is no frame: nothing comes back, the next one works
					if err := c.WriteFrame(ws.NewFrame(op, true, nil)); err != nil {
						t.Fatal(err)
					}
					if err := c.Text("ping:after"); err != nil {
						t.Fatal(err)
					}
					rfcExpectReply(t, c, "after")
					return
				}
				if err := c.WriteFrame(ws.NewFrame(op, true, rfcPingFrame("s", size))); err != nil {
					t.Fatal(err)
				}
				rfcExpectReply(t, c, "s")
			})
		}
		add(fmt.Sprintf("size/%s/65537", kind), func(t *testing.T, c *servertest.RawWS) {
			if err := c.WriteFrame(ws.NewFrame(op, true, rfcPingFrame("s", 65537))); err != nil {
				t.Fatal(err)
			}
			rc := rfcExpectClose(t, c, ws.StatusMessageTooBig)
			if len(rc.Frames) != 1 || !bytes.Contains(rc.Frames[0].Payload, []byte(`"too_large"`)) {
				t.Fatalf("want one too_large error frame before the close, got %s", rc)
			}
		})
	}

	// Fragmentation.
	add("fragments/2", func(t *testing.T, c *servertest.RawWS) {
		p := string(rfcPingFrame("f2", 1000))
		rfcWrite(t, c, rfcFrag(ws.OpText, false, p[:500]), rfcFrag(ws.OpContinuation, true, p[500:]))
		rfcExpectReply(t, c, "f2")
	})
	add("fragments/1000", func(t *testing.T, c *servertest.RawWS) {
		p := string(rfcPingFrame("f1000", 60000)) // 1,000 fragments of 60 bytes
		var frames []ws.Frame
		for i := 0; i < 1000; i++ {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpText
			}
			frames = append(frames, rfcFrag(op, i == 999, p[i*60:(i+1)*60]))
		}
		rfcWrite(t, c, frames...)
		rfcExpectReply(t, c, "f1000")
	})
	add("fragments/over-64KiB", func(t *testing.T, c *servertest.RawWS) {
		p := string(rfcPingFrame("big", 80000))
		rfcWrite(t, c, rfcFrag(ws.OpText, false, p[:40000]), rfcFrag(ws.OpContinuation, true, p[40000:]))
		rfcExpectClose(t, c, ws.StatusMessageTooBig)
	})
	add("fragments/declared-2^62", func(t *testing.T, c *servertest.RawWS) {
		before := protoRSS(t)
		if err := c.WriteHeader(ws.Header{Fin: true, OpCode: ws.OpText, Length: 1 << 62}); err != nil {
			t.Fatal(err)
		}
		rfcExpectClose(t, c, ws.StatusMessageTooBig)
		if grown := protoRSS(t) - before; grown > 10<<20 && !raceEnabled {
			t.Fatalf("RSS grew by %d bytes for a declared 2^62 length", grown)
		}
	})

	// Ping and pong.
	for _, size := range []int{0, 125} {
		add(fmt.Sprintf("ping/%d", size), func(t *testing.T, c *servertest.RawWS) {
			payload := bytes.Repeat([]byte{'p'}, size)
			start := time.Now()
			rfcWrite(t, c, ws.NewPingFrame(payload))
			f, err := c.ReadFrame(rfcWait)
			if err != nil || f.Header.OpCode != ws.OpPong || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("want pong with the %d-byte payload, got op %d %q (%v)", size, f.Header.OpCode, f.Payload, err)
			}
			t.Logf("pong after %v", time.Since(start))
		})
	}
	add("ping/126", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, ws.NewPingFrame(bytes.Repeat([]byte{'p'}, 126)))
		rfcExpectClose(t, c, ws.StatusProtocolError)
	})
	add("ping/fragmented", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, rfcFrag(ws.OpPing, false, "a"), rfcFrag(ws.OpContinuation, true, "b"))
		rfcExpectClose(t, c, ws.StatusProtocolError)
	})
	add("ping/between-fragments", func(t *testing.T, c *servertest.RawWS) {
		p := string(rfcPingFrame("mid", 200))
		rfcWrite(t, c, rfcFrag(ws.OpText, false, p[:100]), ws.NewPingFrame([]byte("mid")), rfcFrag(ws.OpContinuation, true, p[100:]))
		f, err := c.ReadFrame(rfcWait)
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
			t.Fatalf("want pong \"mid\" first, got op %d %q (%v)", f.Header.OpCode, f.Payload, err)
		}
		rfcExpectReply(t, c, "mid")
	})
	add("pong/unsolicited", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, ws.NewPongFrame([]byte("nobody asked")))
		if err := c.Text("ping:after"); err != nil {
			t.Fatal(err)
		}
		rfcExpectReply(t, c, "after")
	})

	// Reserved bits and opcodes.
	for i, rsv := range []byte{ws.Rsv(true, false, false), ws.Rsv(false, true, false), ws.Rsv(false, false, true)} {
		add(fmt.Sprintf("rsv%d", i+1), func(t *testing.T, c *servertest.RawWS) {
			f := ws.NewTextFrame([]byte("ping:1"))
			f.Header.Rsv = rsv
			rfcWrite(t, c, f)
			rfcExpectClose(t, c, ws.StatusProtocolError)
		})
	}
	for _, op := range []ws.OpCode{3, 4, 5, 6, 7, 11, 12, 13, 14, 15} {
		add(fmt.Sprintf("opcode/%d", op), func(t *testing.T, c *servertest.RawWS) {
			rfcWrite(t, c, rfcFrag(op, true, "ping:1"))
			rfcExpectClose(t, c, ws.StatusProtocolError)
		})
	}

	// Continuation errors.
	add("continuation/no-start", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, rfcFrag(ws.OpContinuation, true, "ping:1"))
		rfcExpectClose(t, c, ws.StatusProtocolError)
	})
	add("continuation/new-text-while-open", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, rfcFrag(ws.OpText, false, "ping:1"), rfcFrag(ws.OpText, true, "ping:2"))
		rfcExpectClose(t, c, ws.StatusProtocolError)
	})

	// Masking.
	add("unmasked", func(t *testing.T, c *servertest.RawWS) {
		if err := c.WriteUnmasked(ws.NewTextFrame([]byte("ping:1"))); err != nil {
			t.Fatal(err)
		}
		rfcExpectClose(t, c, ws.StatusProtocolError)
	})

	// UTF-8.
	for name, bad := range map[string]string{
		"bad-byte": "\xff", "overlong": "\xc0\xaf", "surrogate-U+D800": "\xed\xa0\x80",
	} {
		add("utf8/"+name, func(t *testing.T, c *servertest.RawWS) {
			rfcWrite(t, c, rfcFrag(ws.OpText, true, `ping:1;{"a":"`+bad+`"}`))
			rfcExpectClose(t, c, ws.StatusInvalidFramePayloadData)
		})
	}
	add("utf8/truncated-at-fragment-boundary", func(t *testing.T, c *servertest.RawWS) {
		// € is e2 82 ac: the first fragment ends inside it and the final
		// fragment does not complete it.
		rfcWrite(t, c, rfcFrag(ws.OpText, false, `ping:1;{"a":"`+"\xe2\x82"), rfcFrag(ws.OpContinuation, true, `("}`))
		rfcExpectClose(t, c, ws.StatusInvalidFramePayloadData)
	})
	add("utf8/valid-split-across-fragments", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, rfcFrag(ws.OpText, false, `ping:u8;{"a":"`+"\xe2\x82"), rfcFrag(ws.OpContinuation, true, "\xac\"}"))
		rfcExpectReply(t, c, "u8")
	})
	add("utf8/binary-invalid-is-bad-frame", func(t *testing.T, c *servertest.RawWS) {
		// PROTOCOL.md: only a text message closes with 1007; elsewhere invalid
		// UTF-8 is a bad_frame and the connection stays.
		rfcWrite(t, c, rfcFrag(ws.OpBinary, true, `ping:b;{"a":"`+"\xff"+`"}`))
		text, err := c.ReadText(rfcWait)
		if err != nil || !strings.HasPrefix(text, "ping:b;") || !strings.Contains(text, `"bad_frame"`) {
			t.Fatalf("want ping:b bad_frame, got %q (%v)", text, err)
		}
		if err := c.Text("ping:after"); err != nil {
			t.Fatal(err)
		}
		rfcExpectReply(t, c, "after")
	})

	// Close frames.
	for _, code := range []ws.StatusCode{1000, 1001, 3000, 4999} {
		add(fmt.Sprintf("close/echo-%d", code), func(t *testing.T, c *servertest.RawWS) {
			rfcWrite(t, c, rfcCloseFrame(code, "bye"))
			rfcExpectClose(t, c, code)
		})
	}
	for _, code := range []ws.StatusCode{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000} {
		add(fmt.Sprintf("close/invalid-%d", code), func(t *testing.T, c *servertest.RawWS) {
			rfcWrite(t, c, rfcCloseFrame(code, ""))
			rfcExpectClose(t, c, ws.StatusProtocolError)
		})
	}
	add("close/1-byte-payload", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, ws.NewCloseFrame([]byte{0x03}))
		rc := c.ReadClose(rfcWait)
		if rc.Got && rc.Code == ws.StatusNoStatusRcvd {
			// fasthttp/websocket v1.5.8 conn.go advanceFrame: a close payload
			// shorter than 2 bytes is read as "no status" (1005) and handed to
			// the close handler like an empty one, which echoes an empty close
			// frame. The handler is given only (1005, ""), so the server cannot
			// tell a 1-byte payload from an empty one and cannot answer 1002.
			t.Skipf("library behaviour: a 1-byte close payload is echoed as an empty close frame (%s), not 1002", rc)
		}
		if !rc.Got || rc.Code != ws.StatusProtocolError {
			t.Fatalf("want close 1002, got %s", rc)
		}
	})
	add("close/reason-invalid-utf8", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, ws.NewCloseFrame(append([]byte{0x03, 0xe8}, "\xff\xfe"...)))
		rfcExpectClose(t, c, ws.StatusProtocolError)
	})
	add("close/data-after-close-ignored", func(t *testing.T, c *servertest.RawWS) {
		rfcWrite(t, c, rfcCloseFrame(1000, ""), rfcFrag(ws.OpText, true, "ping:late"))
		rc := rfcExpectClose(t, c, 1000)
		if len(rc.Frames) != 0 {
			t.Fatalf("frames after the client's close: %s", rc)
		}
	})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.DialRawWS(t, servertest.RawWSOptions{})
			tc.run(t, c)
			c.Close()
			rfcStillServes(t, s)
		})
	}

	// Handshake.
	t.Run("handshake/version-8", func(t *testing.T) {
		resp, body := s.RawUpgrade(t, "/ws", "Connection", "Upgrade", "Upgrade", "websocket",
			"Sec-WebSocket-Version", "8", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Fatalf("want 426 with Sec-WebSocket-Version: 13, got %d %q %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Version"), body)
		}
	})
	t.Run("handshake/missing-key", func(t *testing.T) {
		resp, body := s.RawUpgrade(t, "/ws", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("want 400, got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("handshake/permessage-deflate-declined", func(t *testing.T) {
		c := s.DialRawWS(t, servertest.RawWSOptions{Extensions: []httphead.Option{
			httphead.NewOption("permessage-deflate", map[string]string{"client_max_window_bits": ""}),
		}})
		defer c.Close()
		if len(c.Handshake.Extensions) != 0 {
			t.Fatalf("the server accepted extensions %v", c.Handshake.Extensions)
		}
		resp, _ := s.RawUpgrade(t, "/ws", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
			"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Extensions") != "" {
			t.Fatalf("want 101 with no extensions, got %d %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Extensions"))
		}
	})
	for _, path := range []string{"/", "/ws"} {
		t.Run("handshake/path"+path, func(t *testing.T) {
			c := s.DialRawWS(t, servertest.RawWSOptions{Path: path})
			defer c.Close()
			if err := c.Text("ping:p"); err != nil {
				t.Fatal(err)
			}
			rfcExpectReply(t, c, "p")
		})
	}

	servertest.Eventually(t, 5*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+2
	})
	t.Logf("goroutines: baseline %d, after %d cases %d", baseline, len(cases), runtime.NumGoroutine())
}

func rfcWrite(t *testing.T, c *servertest.RawWS, frames ...ws.Frame) {
	t.Helper()
	if err := c.WriteFrames(frames...); err != nil {
		t.Fatalf("write frames: %v", err)
	}
}
