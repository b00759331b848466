package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// countingLimiter is a SharedLimiter that allows allowN tokens per key,
// then refuses, or fails every call when down.
type countingLimiter struct {
	mu     sync.Mutex
	allowN int
	taken  map[string]int
	down   bool
	asked  []string
}

func (c *countingLimiter) Allow(_ context.Context, key string, perSecond, burst int) (time.Duration, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, key)
	if c.down {
		return 0, false, errors.New("down")
	}
	if c.taken[key] >= c.allowN {
		return 300 * time.Millisecond, false, nil
	}
	c.taken[key]++
	return 0, true, nil
}

// TestSharedLimiterSeam: with a shared limiter the per-user buckets are
// its (named by limiter and user), and a shared limiter that fails falls
// back to this node's bucket at the same rate.
func TestSharedLimiterSeam(t *testing.T) {
	shared := &countingLimiter{allowN: 2, taken: map[string]int{}}
	l := newUserLimiter(10, 5)
	l.share(shared, "sends")
	now := time.Now()
	for i := range 2 {
		if _, ok := l.allow(7, now); !ok {
			t.Fatalf("token %d refused", i)
		}
	}
	wait, ok := l.allow(7, now)
	if ok || wait != 300*time.Millisecond {
		t.Fatalf("third token: ok %v wait %s; want the shared limiter's refusal and wait", ok, wait)
	}
	if shared.asked[0] != "sends:7" {
		t.Fatalf("key %q, want sends:7", shared.asked[0])
	}
	shared.down = true
	for i := range 5 {
		if _, ok := l.allow(7, now); !ok {
			t.Fatalf("local fallback token %d of the burst of 5 refused", i)
		}
	}
	if _, ok := l.allow(7, now); ok {
		t.Fatal("local fallback allowed past its burst")
	}
}
