package wire

import (
	"bytes"
	"testing"
)

// TestFrameAliasing pins what Frame's comment says: Path and ID survive
// the input's reuse, Body is a slice of the input, and a missing body is
// a {} that is not.
func TestFrameAliasing(t *testing.T) {
	b := []byte(`im/send:c-1;{"text":"hi"} `)
	f, err := Parse(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, bytes.Repeat([]byte("z"), len(b)))
	if f.Path != "im/send" || f.ID != "c-1" {
		t.Errorf("after the input was overwritten: path %q id %q, want im/send c-1", f.Path, f.ID)
	}
	if string(f.Body) != "zzzzzzzzzzzzzz" {
		t.Errorf("Body %q does not follow the input it slices", f.Body)
	}
	for _, in := range []string{"ping:1", "ping:1;", "ping;  \r\n"} {
		b := []byte(in)
		f, err := Parse(b, 0)
		if err != nil || string(f.Body) != "{}" {
			t.Fatalf("Parse(%q) = %q, %v", in, f.Body, err)
		}
		copy(b, bytes.Repeat([]byte("z"), len(b)))
		if string(f.Body) != "{}" {
			t.Errorf("Parse(%q): the empty body %q changed with the input", in, f.Body)
		}
	}
}
