package session_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/session"
	"dce/common/config"
	"dce/common/store"
)

// memStore is the durable side in memory; it counts loads so tests can
// tell a cache hit from a refill, and it records every key it was given.
type memStore struct {
	mu    sync.Mutex
	rows  map[string]row
	keys  []string
	loads atomic.Int64
	now   func() time.Time
}

type row struct {
	user             int64
	created, expires time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{rows: map[string]row{}, now: now}
}

func (m *memStore) SaveSession(_ context.Context, h string, user int64, created, expires time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[h] = row{user, created, expires}
	m.keys = append(m.keys, h)
	return nil
}

func (m *memStore) LoadSession(_ context.Context, h string) (int64, time.Time, time.Time, error) {
	m.loads.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[h]
	if !ok || !m.now().Before(r.expires) {
		return 0, time.Time{}, time.Time{}, store.ErrNotFound
	}
	return r.user, r.created, r.expires, nil
}

func (m *memStore) DeleteSession(_ context.Context, h string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, h)
	return nil
}

func (m *memStore) DeleteUserSessions(_ context.Context, user int64) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for h, r := range m.rows {
		if r.user == user {
			out = append(out, h)
			delete(m.rows, h)
		}
	}
	return out, nil
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const lifetime = time.Hour

func newCache(t *testing.T) (*session.Cache, *memStore, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	st := newMemStore(clk.now)
	return session.New(st, 1<<20, lifetime, clk.now), st, clk
}

var ctx = context.Background()

// A sid is 128 random bits in URL-safe base64, unique, and the store only
// ever sees its hash.
func TestCreateIssuesFreshWellFormedSIDs(t *testing.T) {
	c, st, _ := newCache(t)
	seen := map[string]bool{}
	for range 1000 {
		s, err := c.Create(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.SID) != 22 || !session.WellFormed(s.SID) {
			t.Fatalf("sid %q is not 22 base64url characters", s.SID)
		}
		if seen[s.SID] {
			t.Fatalf("sid %q issued twice", s.SID)
		}
		seen[s.SID] = true
		if s.UserID != 7 || s.Expires.Sub(s.Created) != lifetime {
			t.Fatalf("session %+v", s)
		}
	}
	for _, k := range st.keys {
		if seen[k] || len(k) != 64 {
			t.Fatalf("the store was given %q, not a SHA-256 of the sid", k)
		}
		for sid := range seen {
			if strings.Contains(k, sid) {
				t.Fatal("a raw sid reached the store")
			}
		}
	}
}

// A session resolves from the cache; after a restart (a new, empty cache)
// it resolves from the store once and from the cache after that.
func TestGetFromCacheThenStore(t *testing.T) {
	c, st, clk := newCache(t)
	s, err := c.Create(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, s.SID)
	if err != nil || got.UserID != 3 || st.loads.Load() != 0 {
		t.Fatalf("get from the cache: %+v %v, %d store loads", got, err, st.loads.Load())
	}
	restarted := session.New(st, 1<<20, lifetime, clk.now)
	for range 3 {
		got, err = restarted.Get(ctx, s.SID)
		if err != nil || got.UserID != 3 || got.Expires.UnixMilli() != s.Expires.UnixMilli() {
			t.Fatalf("get after a restart: %+v %v", got, err)
		}
	}
	if n := st.loads.Load(); n != 1 {
		t.Fatalf("%d store loads for three gets after a restart, want 1", n)
	}
	if r := restarted.Stats().Refills; r != 1 {
		t.Fatalf("Refills = %d, want 1", r)
	}
}

// Junk never reaches the store; unknown well-formed sids are not adopted.
func TestGetRefusesJunkAndUnknown(t *testing.T) {
	c, st, _ := newCache(t)
	for _, sid := range []string{"", "short", strings.Repeat("A", 23), strings.Repeat("A", 21) + "=", strings.Repeat("A", 21) + "/",
		strings.Repeat("A", 21) + "\x00", "' OR 1=1 --AAAAAAAAAAAA"} {
		if _, err := c.Get(ctx, sid); !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("Get(%q): %v, want ErrNoSession", sid, err)
		}
	}
	if n := st.loads.Load(); n != 0 {
		t.Fatalf("malformed sids reached the store %d times", n)
	}
	if _, err := c.Get(ctx, strings.Repeat("A", 22)); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("an unknown sid: %v, want ErrNoSession", err)
	}
}

// The absolute lifetime holds in the cache and in the store alike.
func TestExpiry(t *testing.T) {
	c, st, clk := newCache(t)
	s, err := c.Create(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(lifetime - time.Second)
	if _, err := c.Get(ctx, s.SID); err != nil {
		t.Fatalf("a second before the end: %v", err)
	}
	clk.add(time.Second)
	if _, err := c.Get(ctx, s.SID); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("at the end of its lifetime: %v, want ErrNoSession", err)
	}
	if _, err := session.New(st, 1<<20, lifetime, clk.now).Get(ctx, s.SID); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("expired, from the store: %v, want ErrNoSession", err)
	}
}

// Delete ends one session; DeleteUser ends all of a user's, in the cache
// as well as the store.
func TestDeleteAndDeleteUser(t *testing.T) {
	c, _, _ := newCache(t)
	a, _ := c.Create(ctx, 1)
	b, _ := c.Create(ctx, 1)
	other, _ := c.Create(ctx, 2)
	if err := c.Delete(ctx, a.SID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, a.SID); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("deleted session: %v", err)
	}
	if _, err := c.Get(ctx, b.SID); err != nil {
		t.Fatalf("the user's other session: %v", err)
	}
	if err := c.DeleteUser(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, b.SID); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("after DeleteUser: %v", err)
	}
	if _, err := c.Get(ctx, other.SID); err != nil {
		t.Fatalf("another user's session after DeleteUser: %v", err)
	}
}

// R4, unit level: the default cache size holds 50,000 sessions without
// evicting one, and all of them resolve without asking the store.
func TestDefaultCacheHolds50000Sessions(t *testing.T) {
	const n = 50_000
	clk := &clock{t: time.Now()}
	st := newMemStore(clk.now)
	def := config.Default().Session
	c := session.New(st, def.CacheBytes, def.Lifetime.Duration, clk.now)
	sids := make([]string, n)
	for i := range sids {
		s, err := c.Create(ctx, int64(i%500+1))
		if err != nil {
			t.Fatal(err)
		}
		sids[i] = s.SID
	}
	for i, sid := range sids {
		s, err := c.Get(ctx, sid)
		if err != nil || s.UserID != int64(i%500+1) {
			t.Fatalf("session %d: %+v %v", i, s, err)
		}
	}
	st2 := c.Stats()
	if st2.Evacuated != 0 || st.loads.Load() != 0 || st2.Entries != n {
		t.Fatalf("entries %d, evacuated %d, store loads %d; want %d, 0, 0", st2.Entries, st2.Evacuated, st.loads.Load(), n)
	}
}

// Concurrent creates and gets are safe (run with -race).
func TestConcurrentUse(t *testing.T) {
	c, _, _ := newCache(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				s, err := c.Create(ctx, int64(w+1))
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := c.Get(ctx, s.SID); err != nil || got.UserID != int64(w+1) {
					t.Errorf("get: %+v %v", got, err)
					return
				}
			}
			if err := c.DeleteUser(ctx, int64(w+1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
