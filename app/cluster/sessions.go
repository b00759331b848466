package cluster

import (
	"context"
	"encoding/hex"
	"time"
)

// SessionTier is the session cache in Redis (session.Tier), shared by
// every node: sess:HEX(key) holds a session's entry (or a tombstone) with
// its expiry as TTL. The store stays the truth: the cache writes through
// to it, and a miss (or a Redis that fails) reads it.
type SessionTier struct{ c *Cluster }

// SessionTier returns the node's session tier, for session.NewTiered.
func (c *Cluster) SessionTier() SessionTier { return SessionTier{c} }

func (t SessionTier) key(k []byte) string { return t.c.keys.session(hex.EncodeToString(k)) }

// Get returns the entry at key; redis.Nil when there is none.
func (t SessionTier) Get(ctx context.Context, key []byte) ([]byte, error) {
	v, err := t.c.rdb.Get(ctx, t.key(key)).Bytes()
	return v, err
}

// Set puts value at key for expireSeconds.
func (t SessionTier) Set(ctx context.Context, key, value []byte, expireSeconds int) error {
	return t.c.rdb.Set(ctx, t.key(key), value, time.Duration(expireSeconds)*time.Second).Err()
}

// Del removes key.
func (t SessionTier) Del(ctx context.Context, key []byte) error {
	return t.c.rdb.Del(ctx, t.key(key)).Err()
}
