package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Slots count every user's connections over the nodes for the per-user
// connection cap (hub.UserSlots). Each node keeps its own counts in its
// hash (node:NAME:conns, user -> connections); an acquire sums the user's
// count over the live nodes' hashes and takes a slot in one Lua script, so
// two nodes admitting the same user at once cannot both pass the cap. A
// node that dies stops counting as soon as it is no longer live. While
// Redis fails, a node admits on its own count (the hub's cap still holds
// per node) and writes its hash whole once Redis answers again.
type Slots struct {
	c *Cluster
	// rw: acquires and releases hold it shared while they change Redis
	// and the local counts together; a whole rewrite holds it alone.
	rw    sync.RWMutex
	mu    sync.Mutex // guards local and dirty
	local map[int64]int
	dirty bool
	rel   chan int64
}

var acquireScript = redis.NewScript(`
local sum = 0
for i = 1, #KEYS do
  sum = sum + tonumber(redis.call('HGET', KEYS[i], ARGV[1]) or '0')
end
local limit = tonumber(ARGV[2])
if limit > 0 and sum >= limit then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
`)

var releaseScript = redis.NewScript(`
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`)

func newSlots(c *Cluster) *Slots {
	return &Slots{c: c, local: map[int64]int{}, rel: make(chan int64, 4096)}
}

// Slots returns the node's shared connection slots (hub.UserSlots).
func (c *Cluster) Slots() *Slots { return c.slots }

// Acquire takes one of user's slots unless limit (> 0) are taken on the
// live nodes already.
func (s *Slots) Acquire(user int64, limit int) bool {
	c := s.c
	s.rw.RLock()
	defer s.rw.RUnlock()
	if !c.down.Load() {
		others := c.pres.others()
		ks := make([]string, 0, 1+len(others))
		ks = append(ks, c.keys.conns(c.opts.Node))
		for _, o := range others {
			ks = append(ks, c.keys.conns(o))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n, err := acquireScript.Run(ctx, c.rdb, ks, user, limit).Int()
		cancel()
		if err == nil {
			if n == 0 {
				return false
			}
			s.mu.Lock()
			s.local[user]++
			s.mu.Unlock()
			return true
		}
		c.failed("connection slots", err)
	}
	s.mu.Lock()
	s.local[user]++
	s.dirty = true
	s.mu.Unlock()
	return true
}

// Release gives one of user's slots back. It does not wait for Redis.
func (s *Slots) Release(user int64) {
	s.rw.RLock()
	defer s.rw.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local[user] <= 1 {
		delete(s.local, user)
	} else {
		s.local[user]--
	}
	select {
	case s.rel <- user:
	default:
		s.dirty = true
	}
}

// releaseLoop gives released slots back in Redis, and writes the hash
// whole after a failure.
func (s *Slots) releaseLoop() {
	c := s.c
	t := time.NewTicker(c.opts.Beat)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			s.mu.Lock()
			dirty := s.dirty
			s.mu.Unlock()
			if dirty {
				s.rewrite()
			}
		case user := <-s.rel:
			s.rw.RLock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := releaseScript.Run(ctx, c.rdb, []string{c.keys.conns(c.opts.Node)}, user).Err()
			cancel()
			if err != nil {
				s.mu.Lock()
				s.dirty = true
				s.mu.Unlock()
			}
			s.rw.RUnlock()
		}
	}
}

// rewrite puts this node's counts in its hash whole.
func (s *Slots) rewrite() {
	c := s.c
	s.rw.Lock()
	defer s.rw.Unlock()
	for drained := false; !drained; { // the counts below already hold these releases
		select {
		case <-s.rel:
		default:
			drained = true
		}
	}
	s.mu.Lock()
	fields := make([]any, 0, 2*len(s.local))
	for u, n := range s.local {
		fields = append(fields, u, n)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	key := c.keys.conns(c.opts.Node)
	pipe := c.rdb.TxPipeline()
	pipe.Del(ctx, key)
	if len(fields) > 0 {
		pipe.HSet(ctx, key, fields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.failed("connection slots", err)
		return
	}
	c.ok()
	s.mu.Lock()
	s.dirty = false
	s.mu.Unlock()
}
