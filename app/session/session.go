// Package session maps a sid to its session: a cache (freecache in process
// memory on one node, Redis shared by several nodes: a Tier) in front of the
// store, written through so that a restart or an eviction never logs anyone
// out. The cache is keyed by a SHA-256 of the sid, as the store is, so a raw
// sid lives only in the client and in the connection holding it.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"

	"dce/common/model"
	"dce/common/store"

	"github.com/coocood/freecache"
)

// sidBytes is the sid's randomness: 128 bits.
const sidBytes = 16

// SIDLength is the length of a sid's text: 16 bytes in unpadded base64url.
var SIDLength = base64.RawURLEncoding.EncodedLen(sidBytes)

// ErrNoSession is returned for a sid that names no live session.
var ErrNoSession = errors.New("no such session")

// Store is the durable side of the cache.
type Store interface {
	SaveSession(ctx context.Context, sidHash string, userID int64, created, expires time.Time) error
	LoadSession(ctx context.Context, sidHash string) (userID int64, created, expires time.Time, err error)
	DeleteSession(ctx context.Context, sidHash string) error
	DeleteUserSessions(ctx context.Context, userID int64) ([]string, error)
}

// Tier is where the cache keeps its entries (a session's 24 bytes, keyed
// by its sid's hash) and its tombstones. Entries expire by themselves
// after expireSeconds. Get fails for a missing key and for a tier that
// cannot answer; the cache then asks the store, so a failing tier costs
// speed, never a session.
type Tier interface {
	Get(ctx context.Context, key []byte) ([]byte, error)
	Set(ctx context.Context, key, value []byte, expireSeconds int) error
	Del(ctx context.Context, key []byte) error
}

// localTier is freecache: one node's process memory.
type localTier struct{ fc *freecache.Cache }

func (t localTier) Get(_ context.Context, key []byte) ([]byte, error) { return t.fc.Get(key) }
func (t localTier) Set(_ context.Context, key, value []byte, expireSeconds int) error {
	return t.fc.Set(key, value, expireSeconds)
}
func (t localTier) Del(_ context.Context, key []byte) error { t.fc.Del(key); return nil }

// Cache is the session cache.
type Cache struct {
	tier     Tier
	fc       *freecache.Cache // the tier when it is local, for Stats; nil otherwise
	store    Store
	lifetime time.Duration
	// tombstoneSeconds is how long a deletion is remembered: longer than
	// any store read that could have begun before it.
	tombstoneSeconds int
	now              func() time.Time
	refills          atomic.Uint64
}

// New makes a cache of about cacheBytes of process memory in front of st.
func New(st Store, cacheBytes int, lifetime time.Duration, now func() time.Time) *Cache {
	fc := freecache.NewCache(cacheBytes)
	c := NewTiered(st, localTier{fc}, lifetime, now)
	c.fc, c.tombstoneSeconds = fc, localTombstoneSeconds
	return c
}

// NewTiered makes a cache held in tier in front of st: a shared tier
// (Redis) lets a session made on one node resume on any other. Its
// tombstones last a session lifetime, so that a node whose store read of
// a session began before the session ended, however long ago, never
// brings it back.
func NewTiered(st Store, tier Tier, lifetime time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{tier: tier, store: st, lifetime: lifetime, now: now,
		tombstoneSeconds: max(localTombstoneSeconds, int(lifetime/time.Second)+1)}
}

// Create issues a new session for user: a fresh random sid, saved durably
// before it is returned.
func (c *Cache) Create(ctx context.Context, userID int64) (*model.Session, error) {
	var raw [sidBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	now := c.now()
	s := &model.Session{SID: base64.RawURLEncoding.EncodeToString(raw[:]), UserID: userID,
		Created: now, Expires: now.Add(c.lifetime)}
	key := hashKey(s.SID)
	if err := c.store.SaveSession(ctx, hex.EncodeToString(key[:]), userID, s.Created, s.Expires); err != nil {
		return nil, err
	}
	c.put(ctx, key[:], s)
	return s, nil
}

// Get returns the live session for sid, from the cache or else the store.
func (c *Cache) Get(ctx context.Context, sid string) (*model.Session, error) {
	if !WellFormed(sid) {
		return nil, ErrNoSession
	}
	key := hashKey(sid)
	now := c.now()
	if v, err := c.tier.Get(ctx, key[:]); err == nil && len(v) == 24 {
		s := &model.Session{SID: sid, UserID: int64(binary.LittleEndian.Uint64(v)),
			Created: time.UnixMilli(int64(binary.LittleEndian.Uint64(v[8:]))),
			Expires: time.UnixMilli(int64(binary.LittleEndian.Uint64(v[16:])))}
		if now.Before(s.Expires) {
			return s, nil
		}
		_ = c.tier.Del(ctx, key[:])
		return nil, ErrNoSession
	}
	userID, created, expires, err := c.store.LoadSession(ctx, hex.EncodeToString(key[:]))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	if !now.Before(expires) {
		return nil, ErrNoSession
	}
	s := &model.Session{SID: sid, UserID: userID, Created: created, Expires: expires}
	c.put(ctx, key[:], s)
	// A Delete may have run between the store read and the put; its
	// tombstone, written before it deleted anything, says so.
	if c.ended(ctx, key[:], s) {
		_ = c.tier.Del(ctx, key[:])
		return nil, ErrNoSession
	}
	c.refills.Add(1)
	return s, nil
}

// localTombstoneSeconds is how long the local tier remembers a deletion:
// longer than any store read on this node that could have begun before it.
const localTombstoneSeconds = 60

func sessionTombstone(key []byte) []byte { return append([]byte("ended-sid:"), key...) }

func userTombstone(userID int64) []byte {
	return binary.LittleEndian.AppendUint64([]byte("ended-user:"), uint64(userID))
}

// ended reports whether s was deleted, alone or with all its user's
// sessions, after it was read.
func (c *Cache) ended(ctx context.Context, key []byte, s *model.Session) bool {
	if _, err := c.tier.Get(ctx, sessionTombstone(key)); err == nil {
		return true
	}
	v, err := c.tier.Get(ctx, userTombstone(s.UserID))
	return err == nil && len(v) == 8 && s.Created.UnixMilli() <= int64(binary.LittleEndian.Uint64(v))
}

// Delete ends the session sid. It is deleted from the store even when the
// tier fails, and the tier's error is returned then: a shared tier that
// missed the deletion may still hold the session, so the caller must not
// report it ended.
func (c *Cache) Delete(ctx context.Context, sid string) error {
	key := hashKey(sid)
	tombErr := c.tier.Set(ctx, sessionTombstone(key[:]), []byte{1}, c.tombstoneSeconds)
	delErr := c.tier.Del(ctx, key[:])
	return errors.Join(c.store.DeleteSession(ctx, hex.EncodeToString(key[:])), tombErr, delErr)
}

// DeleteUser ends every session of user (a ban, a password change), with
// Delete's contract on a failing tier.
func (c *Cache) DeleteUser(ctx context.Context, userID int64) error {
	tombErr := c.tier.Set(ctx, userTombstone(userID), binary.LittleEndian.AppendUint64(nil, uint64(c.now().UnixMilli())), c.tombstoneSeconds)
	hashes, err := c.store.DeleteUserSessions(ctx, userID)
	var delErr error
	for _, h := range hashes {
		if key, decodeErr := hex.DecodeString(h); decodeErr == nil {
			delErr = errors.Join(delErr, c.tier.Del(ctx, key))
		}
	}
	return errors.Join(err, tombErr, delErr)
}

func (c *Cache) put(ctx context.Context, key []byte, s *model.Session) {
	var v [24]byte
	binary.LittleEndian.PutUint64(v[:], uint64(s.UserID))
	binary.LittleEndian.PutUint64(v[8:], uint64(s.Created.UnixMilli()))
	binary.LittleEndian.PutUint64(v[16:], uint64(s.Expires.UnixMilli()))
	ttl := int(s.Expires.Sub(c.now()).Seconds()) + 1
	_ = c.tier.Set(ctx, key, v[:], ttl) // a tier that fails costs a store read next time, nothing else
}

// Stats are the cache's counters, for metrics.
type Stats struct {
	Entries, Evacuated, Expired int64
	Refills                     uint64
	HitRate                     float64
}

// Stats returns the cache's counters (only Refills for a shared tier,
// whose own counters are its server's).
func (c *Cache) Stats() Stats {
	if c.fc == nil {
		return Stats{Refills: c.refills.Load()}
	}
	return Stats{Entries: c.fc.EntryCount(), Evacuated: c.fc.EvacuateCount(), Expired: c.fc.ExpiredCount(),
		Refills: c.refills.Load(), HitRate: c.fc.HitRate()}
}

// WellFormed reports whether sid has the shape of a sid this server issues,
// so that junk never reaches the store.
func WellFormed(sid string) bool {
	if len(sid) != SIDLength {
		return false
	}
	for i := 0; i < len(sid); i++ {
		ch := sid[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

func hashKey(sid string) [32]byte { return sha256.Sum256([]byte(sid)) }
