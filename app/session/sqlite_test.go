package session_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"dce/app/session"
	"dce/common/store/sqlite"
)

// Over the real store: a session past its lifetime is not served from the
// cache although freecache still holds it (its TTL is rounded up to whole
// seconds), nor after a restart from the store, and the store's janitor
// removes its row from the file.
func TestExpiredSessionOverSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	st, err := sqlite.Open(ctx, sqlite.Options{Path: path, Synchronous: "NORMAL", SessionSweep: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ann, err := st.CreateUser(ctx, "Ann", "hash", "")
	if err != nil {
		t.Fatal(err)
	}
	const lifetime = 300 * time.Millisecond
	cache := session.New(st, 1<<20, lifetime, nil)
	short, err := cache.Create(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	live, err := session.New(st, 1<<20, time.Hour, nil).Create(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, short.SID); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	time.Sleep(time.Until(short.Expires) + 10*time.Millisecond)
	if entries := cache.Stats().Entries; entries != 1 {
		t.Fatalf("freecache holds %d entries, want the expired one still there", entries)
	}
	if s, err := cache.Get(ctx, short.SID); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("expired, from the cache: %+v, %v; want ErrNoSession", s, err)
	}
	if s, err := session.New(st, 1<<20, lifetime, nil).Get(ctx, short.SID); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("expired, from the store: %+v, %v; want ErrNoSession", s, err)
	}
	if s, err := session.New(st, 1<<20, lifetime, nil).Get(ctx, live.SID); err != nil || s.UserID != ann.ID {
		t.Fatalf("live, from the store: %+v, %v", s, err)
	}

	file, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		var rows int
		if err := file.QueryRow(`SELECT COUNT(*) FROM sessions`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d session rows in the file 2 s after expiry, want the live one only", rows)
		}
	}
}
