// Package session maps a sid to its session: freecache in process memory in
// front of the store, written through so that a restart or an eviction never
// logs anyone out. The cache is keyed by a SHA-256 of the sid, as the store
// is, so a raw sid lives only in the client and in the connection holding it.
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

// Cache is the session cache.
type Cache struct {
	fc       *freecache.Cache
	store    Store
	lifetime time.Duration
	now      func() time.Time
	refills  atomic.Uint64
}

// New makes a cache of about cacheBytes in front of st.
func New(st Store, cacheBytes int, lifetime time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{fc: freecache.NewCache(cacheBytes), store: st, lifetime: lifetime, now: now}
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
	c.put(key[:], s)
	return s, nil
}

// Get returns the live session for sid, from the cache or else the store.
func (c *Cache) Get(ctx context.Context, sid string) (*model.Session, error) {
	if !WellFormed(sid) {
		return nil, ErrNoSession
	}
	key := hashKey(sid)
	now := c.now()
	if v, err := c.fc.Get(key[:]); err == nil && len(v) == 24 {
		s := &model.Session{SID: sid, UserID: int64(binary.LittleEndian.Uint64(v)),
			Created: time.UnixMilli(int64(binary.LittleEndian.Uint64(v[8:]))),
			Expires: time.UnixMilli(int64(binary.LittleEndian.Uint64(v[16:])))}
		if now.Before(s.Expires) {
			return s, nil
		}
		c.fc.Del(key[:])
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
	c.put(key[:], s)
	// A Delete may have run between the store read and the put; its
	// tombstone, written before it deleted anything, says so.
	if c.ended(key[:], s) {
		c.fc.Del(key[:])
		return nil, ErrNoSession
	}
	c.refills.Add(1)
	return s, nil
}

// tombstoneSeconds is how long a deletion is remembered: longer than any
// store read that could have begun before it.
const tombstoneSeconds = 60

func sessionTombstone(key []byte) []byte { return append([]byte("ended-sid:"), key...) }

func userTombstone(userID int64) []byte {
	return binary.LittleEndian.AppendUint64([]byte("ended-user:"), uint64(userID))
}

// ended reports whether s was deleted, alone or with all its user's
// sessions, after it was read.
func (c *Cache) ended(key []byte, s *model.Session) bool {
	if _, err := c.fc.Get(sessionTombstone(key)); err == nil {
		return true
	}
	v, err := c.fc.Get(userTombstone(s.UserID))
	return err == nil && len(v) == 8 && s.Created.UnixMilli() <= int64(binary.LittleEndian.Uint64(v))
}

// Delete ends the session sid.
func (c *Cache) Delete(ctx context.Context, sid string) error {
	key := hashKey(sid)
	_ = c.fc.Set(sessionTombstone(key[:]), nil, tombstoneSeconds)
	c.fc.Del(key[:])
	return c.store.DeleteSession(ctx, hex.EncodeToString(key[:]))
}

// DeleteUser ends every session of user (a ban, a password change).
func (c *Cache) DeleteUser(ctx context.Context, userID int64) error {
	_ = c.fc.Set(userTombstone(userID), binary.LittleEndian.AppendUint64(nil, uint64(c.now().UnixMilli())), tombstoneSeconds)
	hashes, err := c.store.DeleteUserSessions(ctx, userID)
	for _, h := range hashes {
		if key, decodeErr := hex.DecodeString(h); decodeErr == nil {
			c.fc.Del(key)
		}
	}
	return err
}

func (c *Cache) put(key []byte, s *model.Session) {
	var v [24]byte
	binary.LittleEndian.PutUint64(v[:], uint64(s.UserID))
	binary.LittleEndian.PutUint64(v[8:], uint64(s.Created.UnixMilli()))
	binary.LittleEndian.PutUint64(v[16:], uint64(s.Expires.UnixMilli()))
	ttl := int(s.Expires.Sub(c.now()).Seconds()) + 1
	_ = c.fc.Set(key, v[:], ttl) // only fails for oversized entries, which 32+24 bytes never are
}

// Stats are the cache's counters, for metrics.
type Stats struct {
	Entries, Evacuated, Expired int64
	Refills                     uint64
	HitRate                     float64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
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
