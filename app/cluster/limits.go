package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Limiter is the per-user rate limits in Redis (service.SharedLimiter):
// GCRA buckets (go-redis/redis_rate) at rate:PREFIX+NAME:USER, so a user
// meets the same limit whichever nodes they use.
type Limiter struct {
	c  *Cluster
	rl *redis_rate.Limiter
}

// errDown is a limit not asked of a Redis that failed a moment ago: the
// caller uses this node's bucket at once rather than wait for a timeout.
var errDown = errors.New("redis is down")

// Limiter returns the node's shared rate limiter.
func (c *Cluster) Limiter() *Limiter { return &Limiter{c: c, rl: redis_rate.NewLimiter(c.rdb)} }

// Allow takes a token from key's bucket of perSecond with burst, or says
// how long until one is free.
func (l *Limiter) Allow(ctx context.Context, key string, perSecond, burst int) (time.Duration, bool, error) {
	if l.c.down.Load() {
		return 0, false, errDown
	}
	res, err := l.rl.Allow(ctx, l.c.keys.prefix+key, redis_rate.Limit{Rate: perSecond, Burst: max(burst, 1), Period: time.Second})
	if err != nil {
		l.c.failed("rate limit", err)
		return 0, false, err
	}
	if res.Allowed > 0 {
		return 0, true, nil
	}
	return max(res.RetryAfter, time.Millisecond), false, nil
}
