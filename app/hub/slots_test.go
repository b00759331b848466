package hub_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"dce/app/hub"
)

// countSlots is a UserSlots with a fixed count per user, as several nodes'
// shared count would be.
type countSlots struct {
	mu    sync.Mutex
	taken map[int64]int
}

func (s *countSlots) Acquire(user int64, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.taken[user] >= limit {
		return false
	}
	s.taken[user]++
	return true
}

func (s *countSlots) Release(user int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken[user]--
}

func (s *countSlots) count(user int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taken[user]
}

// TestSlots: a login takes a shared slot and a refusal by the slots is the
// per-user cap's error; a re-login as the same user takes none; a switch
// of user, a logout and a close give the slot back.
func TestSlots(t *testing.T) {
	slots := &countSlots{taken: map[int64]int{5: 1}} // one connection of user 5 on another node
	h := hub.New(hub.Options{MaxConnsPerUser: 2, Slots: slots})
	a := register(t, h, newSink(), "10.0.0.1")
	b := register(t, h, newSink(), "10.0.0.1")
	if err := a.SetSession(session(5, "s")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSession(session(5, "s2")); err != nil || slots.count(5) != 2 {
		t.Fatalf("same user again: %v, %d slots taken, want 2", err, slots.count(5))
	}
	if err := b.SetSession(session(5, "s")); !errors.Is(err, hub.ErrTooManyForUser) {
		t.Fatalf("3rd over the nodes with the cap at 2: %v", err)
	}
	if slots.count(5) != 2 {
		t.Fatalf("a refused login kept a slot: %d", slots.count(5))
	}
	if err := a.SetSession(session(6, "t")); err != nil || slots.count(5) != 1 || slots.count(6) != 1 {
		t.Fatalf("switch of user: %v, slots %d and %d, want 1 and 1", err, slots.count(5), slots.count(6))
	}
	if err := a.SetSession(nil); err != nil || slots.count(6) != 0 {
		t.Fatalf("logout: %v, %d slots of user 6", err, slots.count(6))
	}
	if err := b.SetSession(session(5, "s")); err != nil {
		t.Fatal(err)
	}
	b.Close(1000, "")
	b.Finish()
	if slots.count(5) != 1 {
		t.Fatalf("after close, user 5 holds %d slots, want 1 (the other node's)", slots.count(5))
	}
}

// TestRawPresence: with RawPresence the callback hears the grace's start
// (online, 0 places) and repeats, which the folded reports leave out.
func TestRawPresence(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := hub.New(hub.Options{PresenceGrace: 50 * time.Millisecond, RawPresence: true,
		OnPresence: func(user int64, online bool, places int) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, map[bool]string{true: "on", false: "off"}[online]+string(rune('0'+places)))
		}})
	a := register(t, h, newSink(), "10.0.0.1")
	if err := a.SetSession(session(5, "s")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSession(nil); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSession(session(5, "s")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSession(nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"on1", "on0", "on1", "on0", "off0"}
	if len(got) != len(want) {
		t.Fatalf("raw presence %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("raw presence %v, want %v", got, want)
		}
	}
}
