package transport

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readAll reads every line from r and returns copies of them and the error
// that ended reading.
func readAll(r io.Reader, max int) ([]string, error) {
	lr := NewLineReader(r, max)
	var lines []string
	for {
		line, err := lr.Next()
		if err != nil {
			return lines, err
		}
		lines = append(lines, string(line))
	}
}

// referenceLines is the framing rule written plainly: split on \n, drop
// one \r before it, a line over max ends the stream.
func referenceLines(data []byte, max int) (lines []string, tooLong bool, tooLongAt int) {
	offset := 0
	for len(data) > 0 {
		line := data
		i := bytes.IndexByte(data, '\n')
		if i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		start := offset
		offset += len(line) + 1
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > max {
			return lines, true, start
		}
		lines = append(lines, string(line))
	}
	return lines, false, 0
}

var lineTests = []struct {
	name  string
	in    string
	max   int
	lines []string
	err   error
}{
	{"empty stream", "", 8, nil, io.EOF},
	{"one line", "ping\n", 8, []string{"ping"}, io.EOF},
	{"crlf", "ping\r\n", 8, []string{"ping"}, io.EOF},
	{"only one cr is the terminator's", "ping\r\r\n", 8, []string{"ping\r"}, io.EOF},
	{"a lone cr stays", "pi\rng\n", 8, []string{"pi\rng"}, io.EOF},
	{"last line without newline", "a\nb", 8, []string{"a", "b"}, io.EOF},
	{"last line is a lone cr", "a\n\r", 8, []string{"a", ""}, io.EOF},
	{"blank lines", "\n\r\n\n", 8, []string{"", "", ""}, io.EOF},
	{"exactly max", "12345678\n", 8, []string{"12345678"}, io.EOF},
	{"exactly max with crlf", "12345678\r\n", 8, []string{"12345678"}, io.EOF},
	{"exactly max at EOF", "12345678", 8, []string{"12345678"}, io.EOF},
	{"exactly max with cr at EOF", "12345678\r", 8, []string{"12345678"}, io.EOF},
	{"max + 1", "123456789\n", 8, nil, ErrLineTooLong},
	{"max + 1 with crlf", "123456789\r\n", 8, nil, ErrLineTooLong},
	{"max + 1 at EOF", "ok\n123456789", 8, []string{"ok"}, ErrLineTooLong},
	{"max with a cr inside", "1234567\r\r\n", 8, []string{"1234567\r"}, io.EOF},
	{"max + 1 with a cr inside", "12345678\r\r\n", 8, nil, ErrLineTooLong},
	{"lines before a long one", "a\nb\n" + strings.Repeat("x", 100) + "\nc\n", 8, []string{"a", "b"}, ErrLineTooLong},
	{"long line over the buffer", strings.Repeat("x", 10000) + "\nok\n", 10000, []string{strings.Repeat("x", 10000), "ok"}, io.EOF},
	{"long line over the buffer, 1 over", strings.Repeat("x", 10001) + "\nok\n", 10000, nil, ErrLineTooLong},
	{"binary", "\x00\xff\xfe\r\x80\n", 8, []string{"\x00\xff\xfe\r\x80"}, io.EOF},
}

func TestLineReader(t *testing.T) {
	for _, tt := range lineTests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := readAll(strings.NewReader(tt.in), tt.max)
			if !errors.Is(err, tt.err) || !equalLines(lines, tt.lines) {
				t.Fatalf("got %q, %v; want %q, %v", lines, err, tt.lines, tt.err)
			}
			ref, tooLong, _ := referenceLines([]byte(tt.in), tt.max)
			if !equalLines(ref, tt.lines) || tooLong != (tt.err == ErrLineTooLong) {
				t.Fatalf("the reference splitter disagrees with the table: %q %v", ref, tooLong)
			}
		})
	}
}

// TestLineReaderSplit: how the stream is cut into reads changes nothing
// (nats-server's split tests): one byte at a time, and in two parts cut at
// every position.
func TestLineReaderSplit(t *testing.T) {
	for _, tt := range lineTests {
		if len(tt.in) > 200 {
			continue
		}
		lines, err := readAll(iotest.OneByteReader(strings.NewReader(tt.in)), tt.max)
		if !errors.Is(err, tt.err) || !equalLines(lines, tt.lines) {
			t.Fatalf("%s, one byte at a time: got %q, %v", tt.name, lines, err)
		}
		for cut := 0; cut <= len(tt.in); cut++ {
			r := io.MultiReader(strings.NewReader(tt.in[:cut]), strings.NewReader(tt.in[cut:]))
			lines, err := readAll(r, tt.max)
			if !errors.Is(err, tt.err) || !equalLines(lines, tt.lines) {
				t.Fatalf("%s, cut at %d: got %q, %v", tt.name, cut, lines, err)
			}
		}
	}
}

// TestLineReaderFrameLimit: the TCP transport's limit, 64 KiB, is exact
// (TESTPLAN P6): 65,536 bytes is a line with \n or \r\n, 65,537 is not.
func TestLineReaderFrameLimit(t *testing.T) {
	const max = 64 << 10
	for _, tt := range []struct {
		size int
		end  string
		ok   bool
	}{{max, "\n", true}, {max, "\r\n", true}, {max, "", true}, {max + 1, "\n", false}, {max + 1, "\r\n", false}, {max + 1, "", false}} {
		in := strings.Repeat("x", tt.size) + tt.end // "": the last line, at EOF
		if tt.end != "" {
			in += "next\n"
		}
		lines, err := readAll(strings.NewReader(in), max)
		if tt.ok && (len(lines) < 1 || len(lines[0]) != tt.size) {
			t.Errorf("%d bytes + %q: got %d lines, %v", tt.size, tt.end, len(lines), err)
		}
		if !tt.ok && (!errors.Is(err, ErrLineTooLong) || len(lines) != 0) {
			t.Errorf("%d bytes + %q: got %d lines, %v; want ErrLineTooLong", tt.size, tt.end, len(lines), err)
		}
	}
}

// countingReader counts what the line reader took from the socket.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endless is a line that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestLineReaderBounded: a line that never ends is refused after reading
// little more than the limit (a slowloris on TCP holds at most that).
func TestLineReaderBounded(t *testing.T) {
	const max = 64 << 10
	cr := &countingReader{r: endless{}}
	start := time.Now()
	_, err := readAll(cr, max)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("endless line: %v", err)
	}
	if cr.n > max+2+2*4096 {
		t.Fatalf("read %d bytes of an endless line before refusing it (limit %d)", cr.n, max)
	}
	t.Logf("refused an endless line after reading %d bytes in %v", cr.n, time.Since(start))
}

// TestLineReaderReuse: the returned slice is valid until the next call, and
// a big line's buffer is not kept for the idle connection.
func TestLineReaderReuse(t *testing.T) {
	lr := NewLineReader(strings.NewReader(strings.Repeat("y", 20000)+"\nsmall\n"), 64<<10)
	big, err := lr.Next()
	if err != nil || len(big) != 20000 {
		t.Fatalf("big line: %d bytes, %v", len(big), err)
	}
	small, err := lr.Next()
	if err != nil || string(small) != "small" {
		t.Fatalf("small line: %q, %v", small, err)
	}
	if cap(lr.buf) > 16<<10 {
		t.Fatalf("the reader kept a %d-byte buffer after a big line", cap(lr.buf))
	}
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkLineReader(b *testing.B) {
	var batch strings.Builder
	for i := 0; i < 1000; i++ {
		batch.WriteString(`im/send:c-81;{"to":"room:lobby","text":"hello, how is everyone today?"}` + "\n")
	}
	data := batch.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		lr := NewLineReader(strings.NewReader(data), 64<<10)
		for {
			if _, err := lr.Next(); err != nil {
				break
			}
		}
	}
}
