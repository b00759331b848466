package model

import (
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
)

// AppendJSON writes exactly what json.Marshal writes, for every field and
// for strings that need escaping.
func TestMessageAppendJSON(t *testing.T) {
	tricky := []string{"", "hi", `quote " and \ backslash`, "tab\tnewline\ncr\r", "\x00\x01\x1f\x7f",
		"<script>&amp;</script>", "ünïcødé 中文 😀", "line\u2028sep\u2029", "\ufffd", strings.Repeat("long ", 400)}
	var msgs []Message
	for i, s := range tricky {
		m := Message{ID: int64(i) + 1, Seq: int64(i) * 7, Conv: "user:" + s, To: s, Kind: "text", Text: s, CID: s, TS: 1763800000123,
			Edited: i%2 == 0, Deleted: i%3 == 0, Key: "dm:1:2", ToUser: 9,
			From: User{ID: -int64(i), Nickname: s, Brief: s + "b", Avatar: "/files/" + s, Admin: i%2 == 1}}
		if i%4 == 0 {
			m.File = &File{ID: "f_" + s, Name: s, Size: int64(i) << 20, MIME: "image/png", URL: "/files/x", Thumb: s, Width: i, Height: -i}
		}
		msgs = append(msgs, m)
	}
	msgs = append(msgs, Message{}) // every zero value
	for _, m := range msgs {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.AppendJSON([]byte("prefix;")); string(got) != "prefix;"+string(want) {
			t.Errorf("AppendJSON:\n got %s\nwant prefix;%s", got, want)
		}
	}
}

func BenchmarkMessageJSON(b *testing.B) {
	m := Message{ID: 1042, Seq: 5310, Conv: "user:7", From: User{ID: 7, Nickname: "ann"}, To: "user:9", Kind: "text",
		Text: strings.Repeat("a chat message. ", 6), CID: "c-81", TS: 1763800000123}
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = m.AppendJSON(buf[:0])
		}
	})
}
