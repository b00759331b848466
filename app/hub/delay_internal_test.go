package hub

import (
	"testing"
	"time"
)

// The write delay grows with the hot connections: the base for up to
// 1,000, in proportion above, at most ten times the base.
func TestWriteDelayScalesWithHotConnections(t *testing.T) {
	h := New(Options{WriteDelay: 30 * time.Millisecond})
	for _, tc := range []struct {
		hot  int64
		want time.Duration
	}{
		{0, 30 * time.Millisecond},
		{999, 30 * time.Millisecond},
		{2000, 60 * time.Millisecond},
		{4500, 135 * time.Millisecond},
		{10_000, 300 * time.Millisecond},
		{50_000, 300 * time.Millisecond},
	} {
		h.hotConns.Store(tc.hot)
		if got := h.writeDelay(); got != tc.want {
			t.Errorf("%d hot connections: delay %s, want %s", tc.hot, got, tc.want)
		}
	}
}
