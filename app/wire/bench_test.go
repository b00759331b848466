package wire

import "testing"

// BenchmarkAppendFrame encodes a typical ~100-byte push frame: into a
// buffer sized for it, as the chat service's push does once per fan-out,
// and into a reused buffer.
func BenchmarkAppendFrame(b *testing.B) {
	const path = "im/message"
	body := []byte(`{"id":81,"from":{"id":7,"name":"alice"},"to":"room:lobby","text":"hi there","ts":1763800000123}`)
	size := int64(len(path) + 1 + len(body))
	b.Run("sized", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			if f := AppendFrame(make([]byte, 0, size), path, "", body); len(f) != int(size) {
				b.Fatalf("frame is %d bytes, want %d", len(f), size)
			}
		}
	})
	b.Run("reused", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			buf = AppendFrame(buf[:0], path, "", body)
		}
		if len(buf) != int(size) {
			b.Fatalf("frame is %d bytes, want %d", len(buf), size)
		}
	})
}
