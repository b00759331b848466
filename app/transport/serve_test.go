package transport

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/node"
)

// TestBadFramesWindow: the bad-frame counter allows exactly the limit in a
// minute and starts over after it (TESTPLAN P3, unit).
func TestBadFramesWindow(t *testing.T) {
	var b badFrames
	start := time.Unix(1763800000, 0)
	for i := 1; i <= 100; i++ {
		if b.add(start.Add(time.Duration(i)*time.Millisecond), 100) {
			t.Fatalf("bad frame %d of 100 is over the limit", i)
		}
	}
	if !b.add(start.Add(59*time.Second), 100) {
		t.Fatal("the 101st bad frame within a minute is not over the limit")
	}
	if b.add(start.Add(time.Minute+time.Millisecond), 100) {
		t.Fatal("the window did not start over after a minute")
	}
	var unlimited badFrames
	for i := 0; i < 1000; i++ {
		if unlimited.add(start, 0) {
			t.Fatal("a limit of 0 is no limit")
		}
	}
}

// TestOriginAllowed: no Origin, this server's own origin, or an allowed
// one; anything else is cross-site (TESTPLAN A1's cases, unit).
func TestOriginAllowed(t *testing.T) {
	const host = "127.0.0.1:20461"
	allowed := []string{"https://chat.example"}
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://127.0.0.1:20461", true},
		{"HTTP://127.0.0.1:20461", true},
		{"https://127.0.0.1:20461", true},
		{"https://CHAT.example", true},
		{"http://evil.example", false},
		{"http://127.0.0.1:20462", false},
		{"http://127.0.0.1", false},
		{"null", false},
		{"http://127.0.0.1:20461.evil.example", false},
		{"http://user@127.0.0.1:20461", false},
		{"http://127.0.0.1:20461/path", false},
		{"ws://127.0.0.1:20461", false},
		{"file://", false},
		{"%zz", false},
	}
	for _, tt := range tests {
		if got := originAllowed(tt.origin, host, allowed); got != tt.ok {
			t.Errorf("originAllowed(%q) = %v, want %v", tt.origin, got, tt.ok)
		}
	}
}

// TestHasToken: Sec-WebSocket-Version is a comma-separated list.
func TestHasToken(t *testing.T) {
	for header, want := range map[string]bool{"13": true, " 13 ": true, "8, 13": true, "8": false, "": false, "130": false, "1,3": false} {
		if got := hasToken(header, "13"); got != want {
			t.Errorf("hasToken(%q, 13) = %v, want %v", header, got, want)
		}
	}
}

// refusing is an Admission that refuses every connection with a wait of a
// second.
type refusing struct{}

func (refusing) AllowConnect(context.Context, string, string) error {
	return node.RateLimited(time.Second, "connecting too fast")
}

// TestDelayedRefusalsAreBounded: a refused connection waits out its delay
// before it is told, but only maxDelayedRefusals at a time; the rest are
// refused at once, so parallel attempts cannot pile up sockets by being
// refused.
func TestDelayedRefusalsAreBounded(t *testing.T) {
	o := &Options{Admission: refusing{}}
	const attempts = maxDelayedRefusals + 50
	var wg sync.WaitGroup
	var quick atomic.Int64
	start := time.Now()
	for range attempts {
		wg.Go(func() {
			if e := o.allowConnect(context.Background(), "127.0.0.1", ""); e == nil || e.Code != node.CodeRateLimited {
				t.Errorf("refusal: %v", e)
			}
			if time.Since(start) < maxRefusalDelay/2 {
				quick.Add(1)
			}
		})
	}
	wg.Wait()
	if n := quick.Load(); n < attempts-maxDelayedRefusals {
		t.Fatalf("%d of %d refusals came at once, want at least %d", n, attempts, attempts-maxDelayedRefusals)
	}
	if n := quick.Load(); n == attempts {
		t.Fatal("no refusal waited out its delay")
	}
	if n := o.delayedRefusals.Load(); n != 0 {
		t.Fatalf("%d delayed refusals still counted", n)
	}
}
