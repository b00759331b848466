package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParse is PROTOCOL.md section 1's frame table (TESTPLAN P1, unit).
func TestParse(t *testing.T) {
	id20 := "aZ09_-bY18_-cX27_-dW"
	path64 := strings.Repeat("a", 63) + "9"
	tests := []struct {
		name string
		in   string
		want Frame
		err  error
	}{
		{"path only", "ping", Frame{Path: "ping", Body: []byte("{}")}, nil},
		{"path 1 char", "a", Frame{Path: "a", Body: []byte("{}")}, nil},
		{"path 64 chars", path64, Frame{Path: path64, Body: []byte("{}")}, nil},
		{"path charset", "a0/_-z9", Frame{Path: "a0/_-z9", Body: []byte("{}")}, nil},
		{"path starts with a digit", "9a", Frame{Path: "9a", Body: []byte("{}")}, nil},
		{"path 0 chars", "", Frame{}, ErrEmpty},
		{"path 0 chars with id", ":1", Frame{}, ErrPath},
		{"path 0 chars with body", ";{}", Frame{}, ErrPath},
		{"path 65 chars", path64 + "x", Frame{}, ErrPath},
		{"path leading slash", "/ping", Frame{}, ErrPath},
		{"path leading dash", "-ping", Frame{}, ErrPath},
		{"path leading underscore", "_ping", Frame{}, ErrPath},
		{"path upper case", "Ping", Frame{}, ErrPath},
		{"path dot", "im.send", Frame{}, ErrPath},
		{"path space", "im send", Frame{}, ErrPath},
		{"path tab", "im\tsend", Frame{}, ErrPath},
		{"path NUL", "im\x00send", Frame{}, ErrPath},
		{"path newline", "ping\n", Frame{}, ErrPath},
		{"path non-ASCII", "pîng", Frame{}, ErrPath},
		{"path invalid UTF-8", "p\xffng", Frame{}, ErrPath},
		{"id 1 char", "ping:a", Frame{Path: "ping", ID: "a", Body: []byte("{}")}, nil},
		{"id 20 chars", "ping:" + id20, Frame{Path: "ping", ID: id20, Body: []byte("{}")}, nil},
		{"id 21 chars", "ping:" + id20 + "x", Frame{Path: "ping"}, ErrID},
		{"id empty", "ping:", Frame{Path: "ping"}, ErrID},
		{"id empty with body", "ping:;{}", Frame{Path: "ping"}, ErrID},
		{"id dot", "ping:a.b", Frame{Path: "ping"}, ErrID},
		{"id colon", "ping:a:b", Frame{Path: "ping"}, ErrID},
		{"id space", "ping:a b", Frame{Path: "ping"}, ErrID},
		{"id non-ASCII", "ping:é", Frame{Path: "ping"}, ErrID},
		{"body missing", "ping:1", Frame{Path: "ping", ID: "1", Body: []byte("{}")}, nil},
		{"body empty", "ping:1;", Frame{Path: "ping", ID: "1", Body: []byte("{}")}, nil},
		{"body blank", "ping;  \t\r\n", Frame{Path: "ping", Body: []byte("{}")}, nil},
		{"body object", `im/send:c-1;{"to":"room:lobby"}`, Frame{Path: "im/send", ID: "c-1", Body: []byte(`{"to":"room:lobby"}`)}, nil},
		{"body with semicolons", `a;{"x":";;"}`, Frame{Path: "a", Body: []byte(`{"x":";;"}`)}, nil},
		{"body with colon after id", `a:1;{"x":":"}`, Frame{Path: "a", ID: "1", Body: []byte(`{"x":":"}`)}, nil},
		{"body array", "a;[1]", Frame{Path: "a", Body: []byte("[1]")}, nil},
		{"body number", "a;1", Frame{Path: "a", Body: []byte("1")}, nil},
		{"body string", `a;"s"`, Frame{Path: "a", Body: []byte(`"s"`)}, nil},
		{"body with spaces around", "a; {} ", Frame{Path: "a", Body: []byte(" {} ")}, nil},
		{"body UTF-8", `a;{"t":"😀中"}`, Frame{Path: "a", Body: []byte(`{"t":"😀中"}`)}, nil},
		{"body not JSON", "a;{", Frame{Path: "a"}, ErrBody},
		{"body word", "a:1;hello", Frame{Path: "a", ID: "1"}, ErrBody},
		{"body two values", "a;{}{}", Frame{Path: "a"}, ErrBody},
		{"body trailing comma", `a;{"x":1,}`, Frame{Path: "a"}, ErrBody},
		{"body raw control char in a string", "a;\"\x01\"", Frame{Path: "a"}, ErrBody},
		{"body invalid UTF-8", "a:1;\"\xff\"", Frame{Path: "a", ID: "1"}, ErrUTF8},
		{"body surrogate bytes", "a;\"\xed\xa0\x80\"", Frame{Path: "a"}, ErrUTF8},
		{"body overlong", "a;\"\xc0\xaf\"", Frame{Path: "a"}, ErrUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), DefaultMaxFrame)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse(%q) error %v, want %v", tt.in, err, tt.err)
			}
			if got.Path != tt.want.Path || got.ID != tt.want.ID {
				t.Fatalf("Parse(%q) = %q:%q, want %q:%q", tt.in, got.Path, got.ID, tt.want.Path, tt.want.ID)
			}
			if err == nil && string(got.Body) != string(tt.want.Body) {
				t.Fatalf("Parse(%q) body %q, want %q", tt.in, got.Body, tt.want.Body)
			}
			if got.HasID() != (tt.want.ID != "") {
				t.Fatalf("HasID() = %v", got.HasID())
			}
		})
	}
}

// TestParseLimit: the size limit is exact, counts bytes, and an oversized
// frame still names its path and id so its too_large reply can be
// addressed.
func TestParseLimit(t *testing.T) {
	frame := func(size int) []byte {
		head := "ping:big;"
		return []byte(head + `"` + strings.Repeat("x", size-len(head)-2) + `"`)
	}
	if _, err := Parse(frame(DefaultMaxFrame), DefaultMaxFrame); err != nil {
		t.Fatalf("a frame of exactly the limit: %v", err)
	}
	f, err := Parse(frame(DefaultMaxFrame+1), DefaultMaxFrame)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a frame one byte over the limit: %v, want ErrTooLarge", err)
	}
	if f.Path != "ping" || f.ID != "big" {
		t.Fatalf("an oversized frame is addressed %q:%q, want ping:big", f.Path, f.ID)
	}
	// The limit counts bytes: 16,385 four-byte characters are over 64 KiB.
	emoji := []byte(`a;"` + strings.Repeat("😀", 16384) + `"`)
	if _, err := Parse(emoji, DefaultMaxFrame); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%d bytes of emoji: %v, want ErrTooLarge", len(emoji), err)
	}
	// No limit.
	if _, err := Parse(frame(DefaultMaxFrame*4), 0); err != nil {
		t.Fatalf("maxFrame 0 means no limit: %v", err)
	}
	// An oversized frame whose head is not a frame names nothing.
	for _, head := range []string{"BAD:1;", "ping:" + strings.Repeat("i", 21) + ";", strings.Repeat("a", 65) + ";"} {
		b := append([]byte(head), make([]byte, DefaultMaxFrame)...)
		f, err := Parse(b, DefaultMaxFrame)
		if !errors.Is(err, ErrTooLarge) || f.Path != "" || f.ID != "" {
			t.Fatalf("oversized %q...: %q:%q %v, want an unaddressed ErrTooLarge", head, f.Path, f.ID, err)
		}
	}
	// A head long enough to fill the peek window exactly.
	long := "x" + strings.Repeat("a", MaxPath-1) + ":" + strings.Repeat("I", MaxID) + ";"
	f, err = Parse(append([]byte(long), make([]byte, DefaultMaxFrame)...), DefaultMaxFrame)
	if !errors.Is(err, ErrTooLarge) || len(f.Path) != MaxPath || len(f.ID) != MaxID {
		t.Fatalf("oversized frame with the longest head: %q:%q %v", f.Path, f.ID, err)
	}
}

// TestParseAliases: the frame's body aliases the buffer (documented), so a
// caller that keeps it must copy it.
func TestParseAliases(t *testing.T) {
	b := []byte(`a;{"x":1}`)
	f, err := Parse(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] = '2'
	if string(f.Body) != `{"x":2}` {
		t.Fatalf("body %q does not alias the buffer", f.Body)
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		path, id string
		body     []byte
		want     string
	}{
		{"ping", "", nil, "ping;{}"},
		{"ping", "7", nil, "ping:7;{}"},
		{"im/message", "", []byte(`{"id":1}`), `im/message;{"id":1}`},
		{"im/send", "c-1", []byte(`{"id":1}`), `im/send:c-1;{"id":1}`},
	}
	for _, tt := range tests {
		got := string(AppendFrame([]byte("prefix|"), tt.path, tt.id, tt.body))
		if got != "prefix|"+tt.want {
			t.Errorf("AppendFrame(%q, %q, %q) = %q, want %q", tt.path, tt.id, tt.body, got, tt.want)
		}
		f, err := Parse([]byte(tt.want), 0)
		if err != nil || f.Path != tt.path || f.ID != tt.id {
			t.Errorf("%q does not parse back: %+v %v", tt.want, f, err)
		}
	}
}

// TestAppendError: a failure with an id is PATH:ID;{"error":...}; without
// one it is error;{"path":PATH,"error":...}. Whatever the message holds, the
// frame parses and its body is JSON.
func TestAppendError(t *testing.T) {
	type errorBody struct {
		Path  *string `json:"path"`
		Error struct {
			Code         string `json:"code"`
			Message      string `json:"message"`
			RetryAfterMS int64  `json:"retry_after_ms"`
		} `json:"error"`
	}
	messages := []string{"plain", `quote " backslash \ slash /`, "newline\n tab\t NUL\x00", "</script><!--", "中文 😀", "bad \xff utf-8", "\u2028\u2029"}
	for _, msg := range messages {
		for _, id := range []string{"", "42"} {
			raw := AppendError(nil, "im/send", id, "bad_request", msg, 1500)
			f, err := Parse(raw, 0)
			if err != nil {
				t.Fatalf("AppendError(message %q) = %q does not parse: %v", msg, raw, err)
			}
			var body errorBody
			if err := json.Unmarshal(f.Body, &body); err != nil {
				t.Fatalf("error body %q: %v", f.Body, err)
			}
			if id != "" && (f.Path != "im/send" || f.ID != id || body.Path != nil) {
				t.Fatalf("with id: %q", raw)
			}
			if id == "" && (f.Path != "error" || f.ID != "" || body.Path == nil || *body.Path != "im/send") {
				t.Fatalf("without id: %q", raw)
			}
			if body.Error.Code != "bad_request" || body.Error.RetryAfterMS != 1500 {
				t.Fatalf("error object: %q", raw)
			}
			if utf8.ValidString(msg) && body.Error.Message != msg {
				t.Fatalf("message %q came back as %q", msg, body.Error.Message)
			}
		}
	}
	if got := string(AppendErrorBody(nil, "internal", "x", 0)); got != `{"error":{"code":"internal","message":"x"}}` {
		t.Fatalf("AppendErrorBody without retry: %s", got)
	}
}

func BenchmarkParse(b *testing.B) {
	frame := []byte(`im/send:c-81;{"to":"room:lobby","text":"hello, how is everyone today?","cid":"c-81"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := Parse(frame, DefaultMaxFrame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendError(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendError(buf[:0], "im/send", "c-81", "rate_limited", "sending too fast", 250)
	}
}
