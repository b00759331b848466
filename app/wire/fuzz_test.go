package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"unicode/utf8"
)

var (
	pathPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9/_-]{0,63}$`)
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,20}$`)
)

// canonical is the frame b written the one way the server writes frames:
// PATH[:ID];BODY with a missing or blank body as {}. It splits b on its own,
// without Parse, so that the two can check each other.
func canonical(b []byte) string {
	head, body, hasBody := bytes.Cut(b, []byte(";"))
	path, id, _ := bytes.Cut(head, []byte(":"))
	out := string(path)
	if len(id) > 0 {
		out += ":" + string(id)
	}
	if !hasBody || len(bytes.Trim(body, " \t\r\n")) == 0 {
		body = []byte("{}")
	}
	return out + ";" + string(body)
}

// FuzzFrameDecode (TESTPLAN Z1): Parse never panics; a frame it accepts
// has a path and id in their charsets and a UTF-8 JSON body, and writing it
// back gives its canonical form, which parses to the same frame; anything
// over the limit is refused, and an error names only a well-formed path and
// id. The seeds are in testdata/fuzz/FuzzFrameDecode.
func FuzzFrameDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Parse(b, DefaultMaxFrame)
		if len(b) > DefaultMaxFrame && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%d bytes accepted over the %d limit: %v", len(b), DefaultMaxFrame, err)
		}
		// The limit is enforced whatever the content: one byte less than the
		// frame refuses it; exactly its size changes nothing.
		if len(b) >= 2 {
			small, err := Parse(b, len(b)-1)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("limit %d: %v, want ErrTooLarge", len(b)-1, err)
			}
			checkAddress(t, small)
		}
		if len(b) <= DefaultMaxFrame {
			same, sameErr := Parse(b, len(b))
			if !errors.Is(sameErr, err) || same.Path != got.Path || same.ID != got.ID {
				t.Fatalf("a limit of exactly the frame's size changed the result: %v/%v", err, sameErr)
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, ErrTooLarge), errors.Is(err, ErrEmpty), errors.Is(err, ErrPath),
				errors.Is(err, ErrID), errors.Is(err, ErrBody), errors.Is(err, ErrUTF8):
			default:
				t.Fatalf("unknown error %v", err)
			}
			checkAddress(t, got)
			return
		}
		if !pathPattern.MatchString(got.Path) {
			t.Fatalf("accepted path %q", got.Path)
		}
		if got.ID != "" && !idPattern.MatchString(got.ID) {
			t.Fatalf("accepted id %q", got.ID)
		}
		if !utf8.Valid(got.Body) || !json.Valid(got.Body) {
			t.Fatalf("accepted body %q", got.Body)
		}
		encoded := AppendFrame(nil, got.Path, got.ID, got.Body)
		if want := canonical(b); string(encoded) != want {
			t.Fatalf("encode(decode(%q)) = %q, want %q", b, encoded, want)
		}
		again, err := Parse(encoded, DefaultMaxFrame)
		if err != nil || again.Path != got.Path || again.ID != got.ID || !bytes.Equal(again.Body, got.Body) {
			t.Fatalf("the canonical form %q parses to %+v, %v", encoded, again, err)
		}
	})
}

// checkAddress: a refused frame's path and id, used to address its error
// reply, are empty or well formed.
func checkAddress(t *testing.T, f Frame) {
	t.Helper()
	if f.Path != "" && !pathPattern.MatchString(f.Path) {
		t.Fatalf("error addressed to path %q", f.Path)
	}
	if f.ID != "" && (!idPattern.MatchString(f.ID) || f.Path == "") {
		t.Fatalf("error addressed to id %q (path %q)", f.ID, f.Path)
	}
}
