package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader hands out its data in reads of varying sizes.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = 1 + int(c.sizes[c.i%len(c.sizes)])*37
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzTCPLineReader (TESTPLAN Z7): the TCP framing never panics; lines up
// to the limit come back in order, whatever the reads look like; a longer
// line is ErrLineTooLong (the transport's too_large), found after reading
// at most the limit plus two buffers past its start. The input is
// repeated rep times so that lines cross the 4 KiB read buffer; the limit is
// small so that boundaries are hit. Seeds: testdata/fuzz/FuzzTCPLineReader.
func FuzzTCPLineReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, maxLine uint16, rep uint8, sizes []byte) {
		max := 1 + int(maxLine)%9000
		stream := bytes.Repeat(data, 1+int(rep)%64)
		want, tooLong, tooLongAt := referenceLines(stream, max)
		counter := &countingReader{r: &chunkReader{data: stream, sizes: sizes}}
		lr := NewLineReader(counter, max)
		for i := 0; ; i++ {
			line, err := lr.Next()
			if err != nil {
				if tooLong != errors.Is(err, ErrLineTooLong) || !tooLong && err != io.EOF {
					t.Fatalf("after %d lines: %v; want too long %v", i, err, tooLong)
				}
				if i != len(want) {
					t.Fatalf("%d lines before %v, want %d", i, err, len(want))
				}
				if tooLong && counter.n > tooLongAt+max+2+2*4096 {
					t.Fatalf("read %d bytes to refuse a line starting at %d (limit %d)", counter.n, tooLongAt, max)
				}
				return
			}
			if i >= len(want) || string(line) != want[i] {
				t.Fatalf("line %d: %q; want %d lines: %q", i, line, len(want), want)
			}
			if len(line) > max {
				t.Fatalf("line %d is %d bytes, over %d", i, len(line), max)
			}
		}
	})
}
