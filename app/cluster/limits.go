package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Limiter is the per-user rate limits in Redis (service.SharedLimiter):
// GCRA buckets (go-redis/redis_rate) at rate:PREFIX+NAME:USER, so a user
// meets the same limit whichever nodes they use.
//
// A node does not ask Redis for every token: it takes a lease of up to an
// eighth of the burst (at most maxLease) at once and spends it locally
// for at most leaseFor, so a busy sender costs one round trip per lease
// rather than per message. The tokens of every lease come out of the one
// shared bucket, so the sum over the nodes never passes the limit; a
// lease left unspent when its holder moves to another node is lost,
// which can refuse a sender at most an eighth of the burst early per node.
// With a burst below 16 every token is asked for alone: the limit is exact.
type Limiter struct {
	c  *Cluster
	rl *redis_rate.Limiter

	mu     sync.Mutex
	leases map[string]*lease
	swept  time.Time
}

// lease is tokens taken from a shared bucket and not spent yet.
type lease struct {
	tokens  int
	expires time.Time
}

const (
	maxLease = 64
	leaseFor = time.Second
)

// errDown is a limit not asked of a Redis that failed a moment ago: the
// caller uses this node's bucket at once rather than wait for a timeout.
var errDown = errors.New("redis is down")

// Limiter returns the node's shared rate limiter.
func (c *Cluster) Limiter() *Limiter {
	return &Limiter{c: c, rl: redis_rate.NewLimiter(c.rdb), leases: make(map[string]*lease)}
}

// Allow takes a token from key's bucket of perSecond with burst, or says
// how long until one is free.
func (l *Limiter) Allow(ctx context.Context, key string, perSecond, burst int) (time.Duration, bool, error) {
	burst = max(burst, 1)
	size := min(max(burst/8, 1), maxLease)
	now := time.Now()
	if size > 1 && l.spend(key, now) {
		return 0, true, nil
	}
	if l.c.down.Load() {
		return 0, false, errDown
	}
	res, err := l.rl.AllowAtMost(ctx, l.c.keys.prefix+key, redis_rate.Limit{Rate: perSecond, Burst: burst, Period: time.Second}, size)
	if err != nil {
		l.c.failed("rate limit", err)
		return 0, false, err
	}
	if res.Allowed == 0 {
		return max(res.RetryAfter, time.Millisecond), false, nil
	}
	if res.Allowed > 1 {
		l.keep(key, res.Allowed-1, now)
	}
	return 0, true, nil
}

// spend takes a token of key's lease, if it holds one.
func (l *Limiter) spend(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.leases[key]
	if le == nil {
		return false
	}
	if le.tokens == 0 || now.After(le.expires) {
		delete(l.leases, key)
		return false
	}
	le.tokens--
	return true
}

// keep holds tokens taken from key's bucket for leaseFor.
func (l *Limiter) keep(key string, tokens int, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > leaseFor {
		for k, le := range l.leases {
			if now.After(le.expires) {
				delete(l.leases, k)
			}
		}
		l.swept = now
	}
	if le := l.leases[key]; le != nil && !now.After(le.expires) {
		le.tokens += tokens
		return
	}
	l.leases[key] = &lease{tokens: tokens, expires: now.Add(leaseFor)}
}
