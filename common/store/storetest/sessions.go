package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"dce/common/store"
)

func testSessionRoundTrip(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	created := time.Now()
	expires := created.Add(time.Hour)
	if err := db.SaveSession(ctx, "hash-1", ann.ID, created, expires); err != nil {
		t.Fatal(err)
	}
	userID, gotCreated, gotExpires, err := db.LoadSession(ctx, "hash-1")
	if err != nil || userID != ann.ID || !sameInstant(gotCreated, created) || !sameInstant(gotExpires, expires) {
		t.Fatalf("LoadSession = %d, %v, %v, %v; want %d, %v, %v", userID, gotCreated, gotExpires, err, ann.ID, created, expires)
	}
	// Saving again replaces the session.
	later := expires.Add(time.Hour)
	if err := db.SaveSession(ctx, "hash-1", bob.ID, created, later); err != nil {
		t.Fatal(err)
	}
	userID, _, gotExpires, err = db.LoadSession(ctx, "hash-1")
	if err != nil || userID != bob.ID || !sameInstant(gotExpires, later) {
		t.Errorf("after replacing: %d, %v, %v; want %d, %v", userID, gotExpires, err, bob.ID, later)
	}
	if _, _, _, err := db.LoadSession(ctx, "hash-unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LoadSession(unknown) error = %v, want ErrNotFound", err)
	}
}

func testSessionExpiry(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	now := time.Now()
	sessions := map[string]time.Time{
		"expired-long-ago": now.Add(-24 * time.Hour),
		"expired-just-now": now.Add(-time.Second),
		"live-a":           now.Add(time.Hour),
		"live-b":           now.Add(24 * time.Hour),
	}
	for sidHash, expires := range sessions {
		if err := db.SaveSession(ctx, sidHash, ann.ID, now.Add(-48*time.Hour), expires); err != nil {
			t.Fatal(err)
		}
	}
	for _, sidHash := range []string{"expired-long-ago", "expired-just-now"} {
		if _, _, _, err := db.LoadSession(ctx, sidHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LoadSession(%s) error = %v, want ErrNotFound", sidHash, err)
		}
	}
	removed, err := db.DeleteExpiredSessions(ctx)
	if err != nil || removed != 2 {
		t.Errorf("DeleteExpiredSessions = %d, %v; want 2", removed, err)
	}
	for _, sidHash := range []string{"live-a", "live-b"} {
		if userID, _, _, err := db.LoadSession(ctx, sidHash); err != nil || userID != ann.ID {
			t.Errorf("LoadSession(%s) = %d, %v; want %d", sidHash, userID, err, ann.ID)
		}
	}
	if removed, err := db.DeleteExpiredSessions(ctx); err != nil || removed != 0 {
		t.Errorf("second DeleteExpiredSessions = %d, %v; want 0", removed, err)
	}
}

func testSessionDelete(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	now := time.Now()
	save := func(sidHash string, userID int64) {
		t.Helper()
		if err := db.SaveSession(ctx, sidHash, userID, now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	save("ann-1", ann.ID)
	save("ann-2", ann.ID)
	save("ann-3", ann.ID)
	save("bob-1", bob.ID)

	if err := db.DeleteSession(ctx, "ann-3"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.LoadSession(ctx, "ann-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted session: error = %v, want ErrNotFound", err)
	}
	if err := db.DeleteSession(ctx, "ann-3"); err != nil {
		t.Errorf("deleting a missing session: %v", err)
	}

	removed, err := db.DeleteUserSessions(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if !slices.Equal(removed, []string{"ann-1", "ann-2"}) {
		t.Errorf("DeleteUserSessions = %q, want [ann-1 ann-2]", removed)
	}
	for _, sidHash := range []string{"ann-1", "ann-2"} {
		if _, _, _, err := db.LoadSession(ctx, sidHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LoadSession(%s) error = %v, want ErrNotFound", sidHash, err)
		}
	}
	if userID, _, _, err := db.LoadSession(ctx, "bob-1"); err != nil || userID != bob.ID {
		t.Errorf("another user's session: %d, %v", userID, err)
	}
	if removed, err := db.DeleteUserSessions(ctx, ann.ID); err != nil || len(removed) != 0 {
		t.Errorf("second DeleteUserSessions = %q, %v; want none", removed, err)
	}
}

func testSessionOfMissingUser(t *testing.T, db Engine) {
	ctx := context.Background()
	missing := MustCreateUser(t, db, "Ann").ID + 1000
	err := db.SaveSession(ctx, "hash", missing, time.Now(), time.Now().Add(time.Hour))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveSession(missing user) error = %v, want ErrNotFound", err)
	}
	if _, _, _, err := db.LoadSession(ctx, "hash"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LoadSession after the refused save: error = %v, want ErrNotFound", err)
	}
}
