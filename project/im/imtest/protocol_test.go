package imtest

// Protocol conformance and bad input over a real server (TESTPLAN section
// 3): P1 the frame codec over WebSocket and TCP, P3 the bad-frame flood, P4
// JSON edge cases, P5 text and frame limits, P6 TCP framing, P7 UDP, P8 the
// HTTP transport. P2, the RFC 6455 frame suite, is in rfc6455_test.go.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// protoWait bounds each wait for a reply that must come.
const protoWait = 2 * time.Second

// protoQuiet is how long a test listens to be sure that nothing comes.
const protoQuiet = 300 * time.Millisecond

// protoErrorFrame is the body of error;{"path":...,"error":{...}}.
type protoErrorFrame struct {
	Path  *string `json:"path"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// protoExchange sends raw as one frame, then a ping with a fresh id, and
// returns every frame that arrived before the ping's reply: on WebSocket and
// TCP replies come in order, so these are exactly the frames raw caused.
func protoExchange(t *testing.T, c *servertest.Client, raw string) []servertest.Frame {
	t.Helper()
	c.Drain()
	if err := c.Raw(raw); err != nil {
		t.Fatalf("send %q: %v", raw, err)
	}
	syncID := "sync" + strconv.Itoa(rand.IntN(1e9))
	if err := c.Raw("ping:" + syncID); err != nil {
		t.Fatalf("send ping: %v", err)
	}
	if _, ok := c.WaitMatch(protoWait, func(f servertest.Frame) bool { return f.Path == "ping" && f.ID == syncID }); !ok {
		t.Fatalf("no reply to the ping after %q (closed: %v, code %d); have %v", protoShort(raw), c.Closed(), c.WSCloseCode(), c.Pushes())
	}
	got := c.Pushes()
	c.Drain()
	return got
}

func protoShort(s string) string {
	if len(s) > 80 {
		return s[:80] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// TestP1FrameCodec runs PROTOCOL.md section 1's table over WebSocket and
// TCP: each row gives its code, a request with an id gets exactly one reply
// with the same path:id, a fire-and-forget success gets nothing, a
// fire-and-forget failure gets error;{"path",...}, and no row closes the
// connection.
func TestP1FrameCodec(t *testing.T) {
	s := servertest.Start(t)
	const ok = "ok"
	const none = "none"
	id20 := "aZ09_-bY18_-cX27_-dW"
	rows := []struct {
		name  string
		frame string
		path  string // path of the reply; "error" for an error frame
		id    string
		code  string // ok, none, or the error code
		epath string // for an error frame: its "path" field
	}{
		{"path 1 char", "a:1", "a", "1", "not_found", ""},
		{"path 64 chars", strings.Repeat("a", 64) + ":1", strings.Repeat("a", 64), "1", "not_found", ""},
		{"path 64 chars with slashes", "x" + strings.Repeat("/_-9", 15) + "abc:1", "x" + strings.Repeat("/_-9", 15) + "abc", "1", "not_found", ""},
		{"path starting with a digit", "9ping:1", "9ping", "1", "not_found", ""},
		{"path 0 chars with id", ":1;{}", "error", "", "bad_frame", "error"},
		{"path 0 chars", ";{}", "error", "", "bad_frame", "error"},
		{"path 65 chars", strings.Repeat("a", 65) + ":1", "error", "", "bad_frame", "error"},
		{"path upper case", "Ping:1", "error", "", "bad_frame", "error"},
		{"path with a dot", "im.send:1", "error", "", "bad_frame", "error"},
		{"path with a space", "im send:1", "error", "", "bad_frame", "error"},
		{"path non-ASCII", "pîng:1", "error", "", "bad_frame", "error"},
		{"path leading slash", "/ping:1", "error", "", "bad_frame", "error"},
		{"path leading dash", "-ping:1", "error", "", "bad_frame", "error"},
		{"path leading underscore", "_ping:1", "error", "", "bad_frame", "error"},
		{"id 1 char", "ping:a", "ping", "a", ok, ""},
		{"id 20 chars", "ping:" + id20, "ping", id20, ok, ""},
		{"id 21 chars", "ping:" + id20 + "x", "error", "", "bad_frame", "ping"},
		{"id empty", "ping:;{}", "error", "", "bad_frame", "ping"},
		{"id with a dot", "ping:a.b", "error", "", "bad_frame", "ping"},
		{"id with a colon", "ping:a:b", "error", "", "bad_frame", "ping"},
		{"body missing", "im/signer:m", "im/signer", "m", ok, ""},
		{"body empty", "im/signer:e;", "im/signer", "e", ok, ""},
		{"body blank", "im/signer:w; \t ", "im/signer", "w", ok, ""},
		{"body {}", "im/signer:o;{}", "im/signer", "o", ok, ""},
		{"body not JSON", "ping:j1;{", "ping", "j1", "bad_frame", ""},
		{"body not JSON (word)", "ping:j2;hello", "ping", "j2", "bad_frame", ""},
		{"body two JSON values", "ping:j3;{}{}", "ping", "j3", "bad_frame", ""},
		{"body wrong shape (array)", "im/login:s1;[1,2]", "im/login", "s1", "bad_request", ""},
		{"body wrong shape (field type)", `im/login:s2;{"nickname":5,"password":"password1"}`, "im/login", "s2", "bad_request", ""},
		{"body wrong shape (string)", `im/login:s3;"nickname"`, "im/login", "s3", "bad_request", ""},
		{"login needed", "im/users:u", "im/users", "u", "unauthorized", ""},
		{"fire-and-forget success", "ping", "", "", none, ""},
		{"fire-and-forget success with body", "ping;{}", "", "", none, ""},
		{"fire-and-forget wrong shape", "im/login;[1]", "error", "", "bad_request", "im/login"},
		{"fire-and-forget unknown node", "nosuch/node", "error", "", "not_found", "nosuch/node"},
		{"fire-and-forget login needed", "im/users", "error", "", "unauthorized", "im/users"},
		{"fire-and-forget bad path", "Ping", "error", "", "bad_frame", "error"},
		{"fire-and-forget body not JSON", "ping;{", "error", "", "bad_frame", "ping"},
	}
	for _, transport := range []string{"websocket", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			var c *servertest.Client
			if transport == "tcp" {
				c = s.DialTCP(t)
			} else {
				c = s.DialWS(t, "", nil)
			}
			for _, row := range rows {
				got := protoExchange(t, c, row.frame)
				if row.code == none {
					if len(got) != 0 {
						t.Errorf("%s: %q: want no reply, got %v", row.name, row.frame, got)
					}
					continue
				}
				if len(got) != 1 {
					t.Errorf("%s: %q: want exactly one reply, got %d: %v", row.name, row.frame, len(got), got)
					continue
				}
				f := got[0]
				if f.Path != row.path || f.ID != row.id {
					t.Errorf("%s: %q: reply is addressed %s:%s, want %s:%s (%s)", row.name, row.frame, f.Path, f.ID, row.path, row.id, f)
					continue
				}
				if code := f.ErrorCode(); row.code == ok && code != "" || row.code != ok && code != row.code {
					t.Errorf("%s: %q: code %q, want %q (%s)", row.name, row.frame, code, row.code, f)
				}
				if row.path == "error" {
					var e protoErrorFrame
					if err := json.Unmarshal(f.Body, &e); err != nil || e.Path == nil || *e.Path != row.epath || e.Error == nil || e.Error.Message == "" {
						t.Errorf("%s: %q: want error;{\"path\":%q,\"error\":{code,message}}, got %s", row.name, row.frame, row.epath, f)
					}
				}
			}
			var signer struct {
				User *json.RawMessage `json:"user"`
			}
			c.OK("im/signer", nil, &signer)
			if c.Closed() || signer.User != nil {
				t.Fatalf("after the table: closed %v, signer %v", c.Closed(), signer.User)
			}
		})
	}
}

// protoBadFrames are frames that count as bad: they do not parse or name no
// node.
var protoBadFrames = []string{"BAD", ":1", "ping:" + strings.Repeat("i", 21), "ping:x;{", "nosuch:x", "/x"}

// TestP3BadFrameFlood: 100 bad frames in a minute leave a connection open;
// the 101st closes it (WebSocket 1008, TCP closed, a UDP peer blocked).
// Frames that parse but fail their node (bad_request) are not bad frames.
func TestP3BadFrameFlood(t *testing.T) {
	s := servertest.Start(t)
	for _, transport := range []string{"websocket", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			var c *servertest.Client
			if transport == "tcp" {
				c = s.DialTCP(t)
			} else {
				c = s.DialWS(t, "", nil)
			}
			for i := 0; i < 150; i++ { // wrong bodies: not bad frames
				if err := c.Raw("im/login;[" + strconv.Itoa(i) + "]"); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 100; i++ {
				if err := c.Raw(protoBadFrames[i%len(protoBadFrames)]); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.TryRequest("ping", nil, protoWait); err != nil {
				t.Fatalf("after 100 bad frames the connection should serve: %v", err)
			}
			errorsSeen := 0
			for _, f := range c.Pushes() {
				if f.Path == "error" || f.ErrorCode() != "" {
					errorsSeen++
				}
			}
			if errorsSeen != 250 {
				t.Fatalf("want 250 error frames for 250 failed frames, got %d", errorsSeen)
			}
			start := time.Now()
			if err := c.Raw("BAD"); err != nil {
				t.Fatal(err)
			}
			if !c.WaitClosed(protoWait) {
				t.Fatal("the 101st bad frame did not close the connection")
			}
			if transport == "websocket" && c.WSCloseCode() != 1008 {
				t.Fatalf("close code %d, want 1008", c.WSCloseCode())
			}
			t.Logf("closed %v after the 101st bad frame", time.Since(start))
		})
	}
	t.Run("udp", func(t *testing.T) {
		c := s.DialUDP(t)
		// Bad frames padded so their error replies fit the 3x allowance of a
		// peer that has not logged in, so each can be waited for.
		pad := map[string]string{"pad": strings.Repeat("p", 200)}
		for i := 0; i < 100; i++ {
			f, err := c.TryRequest("nosuch/node", pad, protoWait)
			if err != nil || f.ErrorCode() != "not_found" {
				t.Fatalf("bad frame %d: %v %s", i+1, err, f)
			}
		}
		if f, err := c.TryRequest("ping", pad, protoWait); err != nil || f.ErrorCode() != "" {
			t.Fatalf("after 100 bad frames the peer should be served: %v %s", err, f)
		}
		if err := c.Fire("nosuch/node", pad); err != nil { // the 101st
			t.Fatal(err)
		}
		// Blocked: nothing is answered for the window (a minute; watched here
		// for 1.5 s, past a tick of the janitor that expires blocks).
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if f, err := c.TryRequest("ping", pad, 250*time.Millisecond); err == nil {
				t.Fatalf("a blocked peer got a reply: %s", f)
			}
		}
		other := s.DialUDP(t)
		if _, err := other.TryRequest("ping", pad, protoWait); err != nil {
			t.Fatalf("another peer should still be served: %v", err)
		}
	})
}

// TestP4JSONEdgeCases: hostile JSON gets bad_request (bad_frame when the
// body is not JSON at all) quickly; documented normalisations hold;
// nicknames with control or invisible characters are refused; nicknames
// are unique without regard to case.
func TestP4JSONEdgeCases(t *testing.T) {
	s := servertest.Start(t)
	c := s.DialWS(t, "", nil)
	c.Login("p4user", "password1")
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	deepObject := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
	rows := []struct {
		name, path, body, code string
	}{
		{"10,000-deep arrays as the body", "im/send", deep, "bad_request"},
		{"10,000-deep objects as the body", "im/send", deepObject, "bad_request"},
		// One level more than the frame parser takes (encoding/json's limit of
		// 10,000, which RFC 8259 section 9 allows): the server does not parse
		// it, and PROTOCOL.md section 1 says a body that does not parse is a
		// bad_frame.
		{"10,001-deep: arrays in a field", "im/send", `{"to":` + deep + `,"text":"x"}`, "bad_frame"},
		{"10,001-deep: objects in an ignored field", "im/send", `{"to":"room:lobby","text":"x","z":` + deepObject + `}`, "bad_frame"},
		{"30,000-deep arrays", "im/send", strings.Repeat("[", 30000) + strings.Repeat("]", 30000), "bad_frame"},
		{"duplicate keys", "im/send", `{"to":"room:lobby","text":"a","text":"b"}`, "bad_request"},
		{"duplicate keys, same value", "im/send", `{"to":"room:lobby","to":"room:lobby","text":"a"}`, "bad_request"},
		{`"TO" is not "to"`, "im/send", `{"TO":"room:lobby","text":"x"}`, "bad_request"},
		{`"Text" is not "text"`, "im/send", `{"to":"room:lobby","Text":"x"}`, "bad_request"},
		{"id 1e400", "im/read", `{"with":"room:lobby","id":1e400}`, "bad_request"},
		{"id -1", "im/read", `{"with":"room:lobby","id":-1}`, "bad_request"},
		{"id 2^63", "im/read", `{"with":"room:lobby","id":9223372036854775808}`, "bad_request"},
		{`id "7"`, "im/read", `{"with":"room:lobby","id":"7"}`, "bad_request"},
		{"id 1.5", "im/read", `{"with":"room:lobby","id":1.5}`, "bad_request"},
		{"before -1", "im/load", `{"with":"room:lobby","before":-1}`, "bad_request"},
		{"before 2^63", "im/load", `{"with":"room:lobby","before":9223372036854775808}`, "bad_request"},
		{`since "7"`, "im/sync", `{"since":"7"}`, "bad_request"},
		{"since -1", "im/sync", `{"since":-1}`, "bad_request"},
		{"limit 1e400", "im/sync", `{"since":0,"limit":1e400}`, "bad_request"},
		{"user:2^63", "im/load", `{"with":"user:9223372036854775808"}`, "bad_request"},
		{"user:-1", "im/load", `{"with":"user:-1"}`, "bad_request"},
		{"user:07", "im/load", `{"with":"user:07"}`, "bad_request"},
		{"text with escaped NUL", "im/send", `{"to":"room:lobby","text":"a\u0000b"}`, "bad_request"},
		{"text with lone \\ud800", "im/send", `{"to":"room:lobby","text":"a\ud800b"}`, "bad_request"},
		{"text with lone \\udc00", "im/send", `{"to":"room:lobby","text":"a\udc00b"}`, "bad_request"},
		{"text with reversed surrogates", "im/send", `{"to":"room:lobby","text":"\ude00\ud83d"}`, "bad_request"},
		{"text with a raw NUL byte (not JSON)", "im/send", "{\"to\":\"room:lobby\",\"text\":\"a\x00b\"}", "bad_frame"},
		{"text with a raw newline (not JSON)", "im/send", "{\"to\":\"room:lobby\",\"text\":\"a\nb\"}", "bad_frame"},
		{"cid with a space", "im/send", `{"to":"room:lobby","text":"x","cid":"a b"}`, "bad_request"},
	}
	for _, nick := range []string{"a\u0000b", "a\u0007b", "a\tb", "a\nb", "a\rb", "a\u007fb", "a\u0085b", "a\u202eb", "\u202dab",
		"a\u200db", "a\u200bb", "a\ufeffb", "a\u2028b", "a\u00a0b", "a\ue000b", "   ", "", strings.Repeat("n", 33)} {
		rows = append(rows, struct{ name, path, body, code string }{fmt.Sprintf("nickname %+q", nick), "im/login",
			`{"nickname":` + protoJSON(nick) + `,"password":"password1"}`, "bad_request"})
	}
	rows = append(rows, struct{ name, path, body, code string }{"nickname with lone \\ud800", "im/login",
		`{"nickname":"a\ud800","password":"password1"}`, "bad_request"})
	slowest := time.Duration(0)
	for _, row := range rows {
		start := time.Now()
		f, err := c.TryRequest(row.path, row.body, protoWait)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", row.name, err)
		}
		if code := f.ErrorCode(); code != row.code {
			t.Errorf("%s: code %q, want %q (%s)", row.name, code, row.code, protoShort(f.String()))
		}
		if !raceEnabled && took > 50*time.Millisecond {
			t.Errorf("%s: answered in %v, want <= 50ms", row.name, took)
		}
		slowest = max(slowest, took)
	}
	t.Logf("%d hostile bodies; slowest answer %v", len(rows), slowest)
	if c.Closed() {
		t.Fatal("a hostile body closed the connection")
	}

	// Documented normalisations: message text is free text, kept verbatim
	// (a bidi override or a zero-width joiner is the reader's to render);
	// a nickname is stored trimmed and in NFC.
	for _, text := range []string{"abc\u202edef", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\u00a0x\u2028y"} {
		var sent struct {
			ID int64 `json:"id"`
		}
		c.OK("im/send", map[string]string{"to": "room:lobby", "text": text}, &sent)
		var loaded struct {
			Messages []struct {
				ID   int64  `json:"id"`
				Text string `json:"text"`
			} `json:"messages"`
		}
		c.OK("im/load", map[string]any{"with": "room:lobby", "limit": 1}, &loaded)
		if len(loaded.Messages) != 1 || loaded.Messages[0].ID != sent.ID || loaded.Messages[0].Text != text {
			t.Errorf("text %+q did not come back verbatim: %+v", text, loaded.Messages)
		}
	}
	var zoe struct {
		User struct {
			ID       int64  `json:"id"`
			Nickname string `json:"nickname"`
		} `json:"user"`
		Registered bool `json:"registered"`
	}
	s.DialWS(t, "", nil).OK("im/login", map[string]string{"nickname": "  Zoe\u0308  ", "password": "password1"}, &zoe)
	if zoe.User.Nickname != "Zo\u00eb" || !zoe.Registered {
		t.Errorf("nickname \"  Zoe\\u0308  \" stored as %+q (registered %v), want \"Zo\\u00eb\"", zoe.User.Nickname, zoe.Registered)
	}
	var again struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	s.DialWS(t, "", nil).OK("im/login", map[string]string{"nickname": "ZO\u00cb", "password": "password1"}, &again)
	if again.User.ID != zoe.User.ID {
		t.Errorf("\"ZO\\u00cb\" logged in as user %d, want %d (\"Zo\\u00eb\")", again.User.ID, zoe.User.ID)
	}

	// Case-insensitive uniqueness.
	var ann struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
		Registered bool `json:"registered"`
	}
	s.DialWS(t, "", nil).OK("im/login", map[string]string{"nickname": "Ann", "password": "password1"}, &ann)
	if !ann.Registered {
		t.Fatal("Ann was not registered")
	}
	if f := s.DialWS(t, "", nil).Request("im/login", map[string]string{"nickname": "ann", "password": "another-password"}); f.ErrorCode() != "auth_failed" {
		t.Errorf(`"ann" with another password: %s, want auth_failed`, f)
	}
	if f := s.DialTCP(t).Request("im/login", map[string]string{"nickname": "ANN", "password": "another-password"}); f.ErrorCode() != "auth_failed" {
		t.Errorf(`"ANN" with another password: %s, want auth_failed`, f)
	}
	for _, nick := range []string{"ann", "ANN", "aNn"} {
		var same struct {
			User struct {
				ID int64 `json:"id"`
			} `json:"user"`
			Registered bool `json:"registered"`
		}
		s.DialWS(t, "", nil).OK("im/login", map[string]string{"nickname": nick, "password": "password1"}, &same)
		if same.User.ID != ann.User.ID || same.Registered {
			t.Errorf("%q with Ann's password: user %d registered %v, want user %d", nick, same.User.ID, same.Registered, ann.User.ID)
		}
	}
}

func protoJSON(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestP5TextAndFrameLimits: text limits count characters, not bytes; the
// frame limit is exact on WebSocket, with too_large sent before close 1009.
func TestP5TextAndFrameLimits(t *testing.T) {
	s := servertest.Start(t)
	c := s.DialWS(t, "", nil)
	c.Login("p5user", "password1")
	emoji := "\U0001F600" // 4 bytes in UTF-8, 2 UTF-16 units
	rows := []struct {
		name string
		body string
		code string
	}{
		{"4,000 emoji (16,000 bytes)", `{"to":"room:lobby","text":` + protoJSON(strings.Repeat(emoji, 4000)) + `}`, ""},
		{"4,000 emoji as escaped surrogate pairs (48,000 bytes)", `{"to":"room:lobby","text":"` + strings.Repeat(`\ud83d\ude00`, 4000) + `"}`, ""},
		{"4,000 ASCII", `{"to":"room:lobby","text":"` + strings.Repeat("a", 4000) + `"}`, ""},
		{"3,999 ASCII + 1 emoji", `{"to":"room:lobby","text":"` + strings.Repeat("a", 3999) + emoji + `"}`, ""},
		{"4,001 emoji", `{"to":"room:lobby","text":` + protoJSON(strings.Repeat(emoji, 4001)) + `}`, "too_large"},
		{"4,001 ASCII", `{"to":"room:lobby","text":"` + strings.Repeat("a", 4001) + `"}`, "too_large"},
		{"4,000 ASCII + 1 combining mark", `{"to":"room:lobby","text":"` + strings.Repeat("a", 4000) + "\u0301" + `"}`, "too_large"},
	}
	for _, row := range rows {
		f := c.Request("im/send", row.body)
		if code := f.ErrorCode(); code != row.code {
			t.Errorf("%s: code %q, want %q (%s)", row.name, code, row.code, protoShort(f.String()))
		}
	}
	var loaded struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	c.OK("im/load", map[string]any{"with": "room:lobby", "limit": 4}, &loaded)
	if len(loaded.Messages) != 4 || loaded.Messages[0].Text != strings.Repeat(emoji, 4000) || loaded.Messages[1].Text != strings.Repeat(emoji, 4000) {
		t.Fatalf("the emoji messages did not come back whole")
	}

	// The frame limit on WebSocket: 65,536 bytes is a frame, 65,537 is not.
	frame := func(size int) string {
		head := "ping:big;"
		return head + `{"p":"` + strings.Repeat("x", size-len(head)-8) + `"}`
	}
	got := protoExchange(t, c, frame(65536))
	if len(got) != 1 || got[0].Path != "ping" || got[0].ID != "big" || got[0].ErrorCode() != "" {
		t.Fatalf("a 65,536-byte frame: want its reply, got %v", got)
	}
	if err := c.Raw(frame(65537)); err != nil {
		t.Fatal(err)
	}
	if !c.WaitClosed(protoWait) {
		t.Fatal("a 65,537-byte frame did not close the connection")
	}
	if code := c.WSCloseCode(); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
	pushes := c.Pushes()
	if len(pushes) != 1 || pushes[0].ErrorCode() != "too_large" {
		t.Fatalf("want one too_large error frame before the close, got %v", pushes)
	}
}

// TestP6TCPFraming: the line is the frame; its limit is exact; \r\n is
// accepted; a batch of lines in one write is processed in order; random
// binary is a bad frame.
func TestP6TCPFraming(t *testing.T) {
	s := servertest.Start(t)
	line := func(id string, size int, crlf bool) string {
		head := "ping:" + id + ";"
		l := head + `{"p":"` + strings.Repeat("x", size-len(head)-8) + `"}`
		if crlf {
			l += "\r"
		}
		return l
	}
	c := s.DialTCP(t)
	for _, crlf := range []bool{false, true} {
		got := protoExchange(t, c, line("max", 65536, crlf))
		if len(got) != 1 || got[0].Path != "ping" || got[0].ID != "max" || got[0].ErrorCode() != "" {
			t.Fatalf("a 65,536-byte line (crlf %v): want its reply, got %v", crlf, got)
		}
	}
	got := protoExchange(t, c, "ping:crlf\r")
	if len(got) != 1 || got[0].ID != "crlf" || got[0].ErrorCode() != "" {
		t.Fatalf("ping:crlf\\r\\n: got %v", got)
	}
	got = protoExchange(t, c, "\r\n\n\r") // blank lines are skipped
	if len(got) != 0 {
		t.Fatalf("blank lines: got %v", got)
	}

	// 1,000 lines in one write.
	var batch strings.Builder
	for i := 1; i <= 1000; i++ {
		if i > 1 {
			batch.WriteString("\n")
		}
		fmt.Fprintf(&batch, "ping:%d", i)
		if i%2 == 0 {
			batch.WriteString("\r")
		}
	}
	c.Drain()
	if err := c.Raw(batch.String()); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 5*time.Second, "1,000 replies", func() bool { return len(c.Pushes()) >= 1000 })
	replies := c.Pushes()
	if len(replies) != 1000 {
		t.Fatalf("want 1,000 replies, got %d", len(replies))
	}
	for i, f := range replies {
		if f.Path != "ping" || f.ID != strconv.Itoa(i+1) || f.ErrorCode() != "" {
			t.Fatalf("reply %d is %s, want ping:%d", i+1, f, i+1)
		}
	}
	c.Drain()

	// Random binary (no newline inside) is a bad frame; the connection stays.
	rng := rand.New(rand.NewPCG(6, 6))
	for n := 0; n < 20; n++ {
		junk := make([]byte, 1+rng.IntN(512))
		for i := range junk {
			junk[i] = byte(rng.IntN(256))
			if junk[i] == '\n' {
				junk[i] = 0xff
			}
		}
		junk[0] = 0x80 | junk[0] // no frame starts with this byte
		got := protoExchange(t, c, string(junk))
		if len(got) != 1 || got[0].Path != "error" || got[0].ErrorCode() != "bad_frame" {
			t.Fatalf("random binary %q: want one bad_frame error, got %v", protoShort(string(junk)), got)
		}
	}

	// 65,537 bytes: too_large, then the connection is closed.
	c.Drain()
	if err := c.Raw(line("over", 65537, false)); err != nil {
		t.Fatal(err)
	}
	if !c.WaitClosed(protoWait) {
		t.Fatal("a 65,537-byte line did not close the connection")
	}
	if p := c.Pushes(); len(p) != 1 || p[0].ErrorCode() != "too_large" {
		t.Fatalf("want one too_large error before the close, got %v", p)
	}
	// 65,537 bytes with \r\n is a 65,537-byte line too.
	c2 := s.DialTCP(t)
	if err := c2.Raw(line("over", 65537, true)); err != nil {
		t.Fatal(err)
	}
	if !c2.WaitClosed(protoWait) {
		t.Fatal("a 65,537-byte line ending in \\r\\n did not close the connection")
	}
}

// TestP7UDP: junk datagrams, a few thousand distinct sources, and a reply
// too big for a datagram. Until a peer logs in the server sends it at most
// 3 times what it received; the peer table keeps to its cap; a legitimate
// peer is served throughout.
func TestP7UDP(t *testing.T) {
	const peerCap = 50
	const udpPeerTimeout = 3 * time.Second // short, so that the table empties within the test
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.UDPPeers = peerCap
		c.Limits.AnonConnectionsPerIP = 0 // every source is 127.0.0.1: let the UDP cap be the one that binds
		c.Transport.UDPPeerTimeout = config.Duration{Duration: udpPeerTimeout}
	})
	legit := s.DialUDP(t)
	legit.Login("p7legit", "password1")

	// Junk from the logged-in peer: answered (bad_frame) or ignored (empty),
	// never a crash, and the peer keeps working.
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 30; i++ {
		junk := make([]byte, rng.IntN(1500))
		for j := range junk {
			junk[j] = byte(rng.IntN(256))
		}
		if len(junk) > 0 {
			junk[0] |= 0x80
		}
		if err := legit.Raw(string(junk)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := legit.TryRequest("ping", nil, protoWait); err != nil {
		t.Fatalf("the legitimate peer after junk: %v", err)
	}

	// The flood: sources × datagrams of small frames that provoke larger
	// replies (errors, pongs, not_found), plus junk.
	// TESTPLAN's 5,000 sources x 10 datagrams; fewer under the race
	// detector, which allows 8,128 live goroutines (one reader per source).
	sources, perSource := 5000, 10
	if raceEnabled {
		sources, perSource = 2000, 5
	}
	probes := [][]byte{[]byte("X"), []byte("ping:1"), []byte("im/users:1"), []byte("a:1"), []byte("ping:1;{}"),
		[]byte("im/login:1;{}"), {0xff, 0xfe}, []byte(":"), []byte("nosuch/node/with/a/long/path/to/echo/back:12345678901234567890")}
	type source struct {
		conn           *net.UDPConn
		sent, received int
	}
	srcs := make([]*source, sources)
	server, err := net.ResolveUDPAddr("udp", s.UDPAddr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range srcs {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		srcs[i] = &source{conn: conn}
		t.Cleanup(func() { conn.Close() })
	}
	// One reader per source, started (and its buffer touched) before the
	// RSS baseline, so that the figure is the server's. The server never
	// sends more than 8 KiB in a datagram; a larger one would show up as a
	// full buffer and fail the 3x check.
	var stopReading atomic.Bool
	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := bytes.Repeat([]byte{1}, 8<<10+1)
			for {
				_ = src.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				n, err := src.conn.Read(buf)
				if err != nil {
					if stopReading.Load() {
						return
					}
					continue
				}
				src.received += n
			}
		}()
	}
	runtime.GC()
	debug.FreeOSMemory()
	rssBefore := protoRSS(t)
	var maxConns atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { // the peer table, proven and unproven peers alike
		defer close(watchDone)
		for {
			if n := int64(s.UDPPeers()); n > maxConns.Load() {
				maxConns.Store(n)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	floodStart := time.Now()
	legitAttempts := 0
	for round := 0; round < perSource; round++ {
		for i, src := range srcs {
			p := probes[(i+round)%len(probes)]
			if _, err := src.conn.WriteToUDP(p, server); err == nil {
				src.sent += len(p)
			}
		}
		// The legitimate peer is answered in every round. Its datagram may be
		// lost in the kernel's full receive queue, as UDP may lose any: it
		// retries, as a UDP client must.
		for attempt := 1; ; attempt++ {
			legitAttempts++
			if _, err := legit.TryRequest("ping", nil, 300*time.Millisecond); err == nil {
				break
			}
			if attempt == 5 {
				t.Fatalf("round %d: the legitimate peer got no reply in %d attempts", round, attempt)
			}
		}
	}
	floodTime := time.Since(floodStart)
	time.Sleep(protoQuiet) // let the last replies land
	stopReading.Store(true)
	wg.Wait()
	close(stopWatch)
	<-watchDone
	rssAfter := protoRSS(t)

	answered, sentTotal, receivedTotal, worstRatio := 0, 0, 0, 0.0
	for i, src := range srcs {
		sentTotal += src.sent
		receivedTotal += src.received
		if src.received > 0 {
			answered++
			worstRatio = max(worstRatio, float64(src.received)/float64(src.sent))
		}
		if src.received > 3*src.sent {
			t.Errorf("source %d received %d bytes for %d sent: over 3x", i, src.received, src.sent)
		}
	}
	t.Logf("%d sources x %d datagrams in %v: %d bytes sent, %d received (%.2fx); %d sources answered, the most amplified at %.2fx; peer table max %d (cap %d); RSS %+d KiB; legitimate peer: %d replies in %d attempts",
		sources, perSource, floodTime, sentTotal, receivedTotal, float64(receivedTotal)/float64(sentTotal), answered, worstRatio,
		maxConns.Load(), peerCap, (rssAfter-rssBefore)>>10, perSource, legitAttempts)
	if got := maxConns.Load(); got > peerCap {
		t.Errorf("peer table reached %d, over its cap %d", got, peerCap)
	}
	if answered > peerCap-1 && floodTime < udpPeerTimeout { // the legitimate peer holds one place
		t.Errorf("%d sources were answered; at most %d fit in the table", answered, peerCap-1)
	}
	if answered == 0 {
		t.Errorf("no source was answered: the flood did not reach the server")
	}
	if grown := rssAfter - rssBefore; grown > 20<<20 && !raceEnabled { // the race detector's shadow memory inflates RSS
		t.Errorf("RSS grew by %d MiB during the flood, want <= 20 MiB", grown>>20)
	}

	// Once the flood's peers time out, a new peer is served again.
	servertest.Eventually(t, 10*time.Second, "the flood's peers to time out", func() bool {
		return s.UDPPeers() <= 1
	})
	fresh := s.DialUDP(t)
	if _, err := fresh.TryRequest("ping", map[string]string{"pad": "enough bytes for a reply"}, protoWait); err != nil {
		t.Fatalf("a new peer after the flood: %v", err)
	}
}

// TestP7UDPReplyTooLarge: an im/load whose reply does not fit a datagram is
// answered with too_large, not silence.
func TestP7UDPReplyTooLarge(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 10000, 10000
	})
	writer := s.DialWS(t, "", nil)
	writer.Login("p7writer", "password1")
	text := strings.Repeat("y", 4000)
	for i := 0; i < 100; i++ {
		writer.OK("im/send", map[string]string{"to": "room:lobby", "text": text}, nil)
	}
	u := s.DialUDP(t)
	u.Login("p7reader", "password1")
	f := u.Request("im/load", map[string]any{"with": "room:lobby", "limit": 100})
	if f.ErrorCode() != "too_large" {
		t.Fatalf("im/load limit=100 over UDP: %s, want too_large", protoShort(f.String()))
	}
	var one struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	u.OK("im/load", map[string]any{"with": "room:lobby", "limit": 1}, &one)
	if len(one.Messages) != 1 || one.Messages[0].Text != text {
		t.Fatalf("im/load limit=1 over UDP did not fit: %+v", one)
	}
	// Fire-and-forget: its failure comes as an error frame, and a reply too
	// big for a datagram is too_large there too.
	if err := u.Fire("im/load", map[string]any{"with": "room:lobby", "limit": 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := u.TryRequest("ping", nil, protoWait); err != nil {
		t.Fatal(err)
	}
	for _, p := range u.Pushes() {
		if p.Path == "im/load" || p.Path == "error" {
			t.Fatalf("a fire-and-forget im/load succeeded, so nothing should come back; got %s", protoShort(p.String()))
		}
	}
}

// TestP8HTTP: the HTTP transport's status codes, and compressed bodies
// refused before anything inflates them.
func TestP8HTTP(t *testing.T) {
	s := servertest.Start(t)
	errorCode := func(body []byte) string {
		var e protoErrorFrame
		if json.Unmarshal(body, &e) != nil || e.Error == nil {
			return ""
		}
		return e.Error.Code
	}
	get := func(path string, headers ...string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodGet, s.HTTPURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return s.Do(t, req)
	}

	t.Run("unknown path", func(t *testing.T) {
		for _, path := range []string{"/nope", "/im/nope", "/static/nope.js"} {
			resp, body := get(path)
			if resp.StatusCode != 404 || (path != "/static/nope.js" && errorCode(body) != "not_found") {
				t.Errorf("GET %s: %d %s, want 404 not_found", path, resp.StatusCode, body)
			}
		}
		resp, body := s.Post(t, "nosuch/node", "{}")
		if resp.StatusCode != 404 || errorCode(body) != "not_found" {
			t.Errorf("POST /nosuch/node: %d %s, want 404 not_found", resp.StatusCode, body)
		}
	})
	t.Run("body over the limit", func(t *testing.T) {
		at := `{"p":"` + strings.Repeat("x", 65536-8) + `"}`
		resp, body := s.Post(t, "ping", at)
		if resp.StatusCode != 200 {
			t.Errorf("POST /ping with a 65,536-byte body: %d %s, want 200", resp.StatusCode, protoShort(string(body)))
		}
		// One byte over: the server answers as soon as it has read the
		// headers and closes, so a client still writing the body may meet
		// a reset before it reads the answer. The request is sent as its
		// headers alone, which is all the server reads of it.
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.HTTPURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(servertest.DefaultTimeout))
		head := "POST /ping HTTP/1.1\r\nHost: " + strings.TrimPrefix(s.HTTPURL, "http://") +
			"\r\nContent-Type: application/json\r\nContent-Length: 65537\r\n\r\n"
		if _, err := conn.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("POST /ping declaring a 65,537-byte body: %v", err)
		}
		body, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != 413 {
			t.Errorf("POST /ping with a 65,537-byte body: %d %s, want 413", resp.StatusCode, protoShort(string(body)))
		}
	})
	t.Run("GET on a node path", func(t *testing.T) {
		for _, path := range []string{"/ping", "/im/send", "/im/login"} {
			resp, body := get(path)
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
				t.Errorf("GET %s: %d Allow=%q %s, want 405 with Allow: POST", path, resp.StatusCode, resp.Header.Get("Allow"), body)
			}
		}
	})
	t.Run("oversized header", func(t *testing.T) {
		resp, _ := get("/healthz", "X-Big", strings.Repeat("h", 16<<10))
		if resp.StatusCode != 431 {
			t.Errorf("a 16 KiB header: %d, want 431", resp.StatusCode)
		}
		resp, _ = get("/healthz", "X-Small", strings.Repeat("h", 1<<10))
		if resp.StatusCode != 200 {
			t.Errorf("a 1 KiB header: %d, want 200", resp.StatusCode)
		}
	})
	t.Run("Content-Encoding", func(t *testing.T) {
		// A bomb under the body limit: 60 MiB of zeros in about 60 KiB.
		var bomb bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
		zeros := make([]byte, 1<<20)
		for i := 0; i < 60; i++ {
			_, _ = zw.Write(zeros)
		}
		_ = zw.Close()
		if bomb.Len() > 65536 {
			t.Fatalf("the bomb is %d bytes, over the body limit", bomb.Len())
		}
		send := func(method, path, encoding string, body []byte) int {
			req, err := http.NewRequest(method, s.HTTPURL+path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", encoding)
			resp, _ := s.Do(t, req)
			return resp.StatusCode
		}
		runtime.GC()
		debug.FreeOSMemory()
		before := protoRSS(t)
		for _, enc := range []string{"gzip", "GZIP", "br", "deflate", "x-unknown", "gzip, identity"} {
			for _, target := range []struct{ method, path string }{
				{"POST", "/ping"}, {"POST", "/im/login"}, {"POST", "/nosuch/node"}, {"GET", "/"}, {"GET", "/static/app.js"}, {"GET", "/healthz"},
			} {
				if code := send(target.method, target.path, enc, bomb.Bytes()); code != 415 {
					t.Errorf("%s %s with Content-Encoding %q: %d, want 415", target.method, target.path, enc, code)
				}
			}
		}
		for i := 0; i < 10; i++ {
			send("POST", "/ping", "gzip", bomb.Bytes())
		}
		grown := protoRSS(t) - before
		t.Logf("70 bomb requests (%d bytes each, 60 MiB inflated): RSS %+d KiB", bomb.Len(), grown>>10)
		if grown > 20<<20 && !raceEnabled { // the race detector's shadow memory inflates RSS
			t.Errorf("RSS grew by %d MiB, want < 20 MiB", grown>>20)
		}
		if code := send("POST", "/ping", "identity", []byte("{}")); code != 200 {
			t.Errorf("Content-Encoding identity: %d, want 200", code)
		}
		if resp, _ := get("/static/app.js"); resp.StatusCode != 200 {
			t.Errorf("GET /static/app.js without Content-Encoding: %d, want 200", resp.StatusCode)
		}
	})
}

// protoRSS is this process's resident set size; the server runs in it.
func protoRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
