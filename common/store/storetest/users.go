package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store"
)

func testCreateUserAndLookUp(t *testing.T, db Engine) {
	ctx := context.Background()
	before := time.Now()
	created, err := db.CreateUser(ctx, "Ann", "$argon2id$hash", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if created.ID <= 0 || created.Nickname != "Ann" || created.Brief != "hello" || created.PasswordHash != "$argon2id$hash" {
		t.Fatalf("CreateUser returned %+v", created)
	}
	if created.Created.Before(before.Add(-time.Second)) || created.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, want about %v", created.Created, before)
	}
	for _, lookup := range []string{"Ann", "ann", "ANN"} {
		found, err := db.UserByNickname(ctx, lookup)
		if err != nil {
			t.Fatalf("UserByNickname(%q): %v", lookup, err)
		}
		if found.User != created.User || found.PasswordHash != created.PasswordHash || !sameInstant(found.Created, created.Created) {
			t.Errorf("UserByNickname(%q) = %+v, want %+v", lookup, found, created)
		}
	}
	byID, err := db.UserByID(ctx, created.ID)
	if err != nil || byID.User != created.User || byID.Banned(time.Now()) || byID.Muted(time.Now()) {
		t.Errorf("UserByID = %+v, %v; want %+v, not banned or muted", byID, err, created)
	}
	if _, err := db.UserByNickname(ctx, "Bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByNickname(missing) error = %v, want ErrNotFound", err)
	}
	if _, err := db.UserByID(ctx, created.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByID(missing) error = %v, want ErrNotFound", err)
	}
	second := MustCreateUser(t, db, "Bob")
	if second.ID == created.ID {
		t.Errorf("two users got id %d", second.ID)
	}
	if count, err := db.CountUsers(ctx); err != nil || count != 2 {
		t.Errorf("CountUsers = %d, %v; want 2", count, err)
	}
}

func testNicknameFoldConflict(t *testing.T, db Engine) {
	ctx := context.Background()
	MustCreateUser(t, db, "Ann")
	MustCreateUser(t, db, "Straße")
	for _, nickname := range []string{"ann", "ANN", "aNn", "STRASSE", "strasse"} {
		if _, err := db.CreateUser(ctx, nickname, "h", ""); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateUser(%q) error = %v, want ErrConflict", nickname, err)
		}
	}
	if model.FoldNickname("Anne") == model.FoldNickname("Ann") {
		t.Fatal("fold test is broken")
	}
	MustCreateUser(t, db, "Anne") // a different fold still works after conflicts
	if count, err := db.CountUsers(ctx); err != nil || count != 3 {
		t.Errorf("CountUsers = %d, %v; want 3", count, err)
	}
	found, err := db.UserByNickname(ctx, "ANN")
	if err != nil || found.Nickname != "Ann" {
		t.Errorf("UserByNickname(ANN) = %+v, %v; want the first Ann", found, err)
	}
}

func testConcurrentCreateUserOneWins(t *testing.T, db Engine) {
	ctx := context.Background()
	const racers = 24
	variants := []string{"Zoe", "zoe", "ZOE", "zOe"}
	var (
		wait      sync.WaitGroup
		mutex     sync.Mutex
		winners   []model.Account
		conflicts int
	)
	for i := range racers {
		wait.Go(func() {
			account, err := db.CreateUser(ctx, variants[i%len(variants)], fmt.Sprint("hash", i), "")
			mutex.Lock()
			defer mutex.Unlock()
			switch {
			case err == nil:
				winners = append(winners, account)
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("CreateUser: %v", err)
			}
		})
	}
	wait.Wait()
	if len(winners) != 1 || conflicts != racers-1 {
		t.Fatalf("%d winners and %d conflicts, want 1 and %d", len(winners), conflicts, racers-1)
	}
	found, err := db.UserByNickname(ctx, "zoe")
	if err != nil || found.ID != winners[0].ID || found.PasswordHash != winners[0].PasswordHash {
		t.Errorf("stored %+v, %v; the winner was %+v", found, err, winners[0])
	}
	if count, err := db.CountUsers(ctx); err != nil || count != 1 {
		t.Errorf("CountUsers = %d, %v; want 1", count, err)
	}
}

func testUsersByID(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	users, err := db.UsersByID(ctx, []int64{ann.ID, bob.ID, bob.ID + 1000, ann.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[ann.ID] != ann.User || users[bob.ID] != bob.User {
		t.Errorf("UsersByID = %+v, want Ann and Bob only", users)
	}
	users, err = db.UsersByID(ctx, nil)
	if err != nil || len(users) != 0 {
		t.Errorf("UsersByID(nil) = %v, %v; want empty", users, err)
	}
}

func testUserUpdates(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	other := MustCreateUser(t, db, "Bob")
	if err := db.SetPasswordHash(ctx, ann.ID, "new-hash"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAdmin(ctx, ann.ID, true); err != nil {
		t.Fatal(err)
	}
	banned, muted := time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
	if err := db.SetBannedUntil(ctx, ann.ID, banned); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMutedUntil(ctx, ann.ID, muted); err != nil {
		t.Fatal(err)
	}
	user, err := db.UpdateProfile(ctx, ann.ID, "new brief", "/files/f_avatar")
	if err != nil {
		t.Fatal(err)
	}
	want := model.User{ID: ann.ID, Nickname: "Ann", Brief: "new brief", Avatar: "/files/f_avatar", Admin: true}
	if user != want {
		t.Errorf("UpdateProfile = %+v, want %+v", user, want)
	}
	stored, err := db.UserByID(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.User != want || stored.PasswordHash != "new-hash" ||
		!sameInstant(stored.BannedUntil, banned) || !sameInstant(stored.MutedUntil, muted) {
		t.Errorf("stored %+v, want %+v with the new hash, banned until %v, muted until %v", stored, want, banned, muted)
	}
	if !stored.Banned(time.Now()) || !stored.Muted(time.Now()) {
		t.Error("the user should be banned and muted now")
	}

	// The zero time lifts a ban; false withdraws admin.
	if err := db.SetBannedUntil(ctx, ann.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAdmin(ctx, ann.ID, false); err != nil {
		t.Fatal(err)
	}
	stored, err = db.UserByID(ctx, ann.ID)
	if err != nil || !stored.BannedUntil.IsZero() || stored.Banned(time.Now()) || stored.Admin {
		t.Errorf("after lifting: %+v, %v", stored, err)
	}

	// Nothing leaked to the other user.
	if bob, err := db.UserByID(ctx, other.ID); err != nil || bob.User != other.User || bob.PasswordHash != other.PasswordHash ||
		!bob.BannedUntil.IsZero() || !bob.MutedUntil.IsZero() {
		t.Errorf("the other user changed: %+v, %v", bob, err)
	}
}

func testUserUpdatesOfMissingUser(t *testing.T, db Engine) {
	ctx := context.Background()
	missing := MustCreateUser(t, db, "Ann").ID + 1000
	checks := map[string]error{
		"SetPasswordHash": db.SetPasswordHash(ctx, missing, "h"),
		"SetAdmin":        db.SetAdmin(ctx, missing, true),
		"SetBannedUntil":  db.SetBannedUntil(ctx, missing, time.Now()),
		"SetMutedUntil":   db.SetMutedUntil(ctx, missing, time.Now()),
	}
	_, checks["UpdateProfile"] = db.UpdateProfile(ctx, missing, "b", "")
	for name, err := range checks {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s(missing user) error = %v, want ErrNotFound", name, err)
		}
	}
}
