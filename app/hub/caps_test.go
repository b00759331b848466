package hub_test

import (
	"errors"
	"testing"

	"dce/app/hub"
	"dce/app/node"
)

// SetCaps moves each cap while the hub runs, both ways; 0 lifts it, and a
// lowered cap refuses new connections only.
func TestSetCapsWhileRunning(t *testing.T) {
	h := hub.New(hub.Options{MaxConns: 2, MaxConnsPerUser: 1, MaxAnonPerIP: 1})
	a := register(t, h, newSink(), "10.0.0.1")
	if _, err := h.Register(newSink(), node.TCP, "10.0.0.1", 0); !errors.Is(err, hub.ErrTooManyAnon) {
		t.Fatalf("2nd anonymous with the cap at 1: %v", err)
	}
	h.SetCaps(2, 1, 2)
	b := register(t, h, newSink(), "10.0.0.1")
	if _, err := h.Register(newSink(), node.TCP, "10.0.0.2", 0); !errors.Is(err, hub.ErrServerFull) {
		t.Fatalf("3rd connection with max 2: %v", err)
	}
	if err := a.SetSession(session(7, "s")); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSession(session(7, "s")); !errors.Is(err, hub.ErrTooManyForUser) {
		t.Fatalf("2nd connection of a user with the cap at 1: %v", err)
	}
	h.SetCaps(0, 2, 0)
	if err := b.SetSession(session(7, "s")); err != nil {
		t.Fatalf("2nd connection of a user with the cap raised to 2: %v", err)
	}
	for range 5 {
		register(t, h, newSink(), "10.0.0.3") // no cap on the node or on anonymous ones
	}
	h.SetCaps(0, 0, 1) // lowered under what is open: those stay, new ones are refused
	if !h.OverAnonCap("10.0.0.3") {
		t.Error("5 anonymous with the cap lowered to 1: OverAnonCap is false")
	}
	if _, err := h.Register(newSink(), node.TCP, "10.0.0.3", 0); !errors.Is(err, hub.ErrTooManyAnon) {
		t.Fatalf("a 6th anonymous after lowering the cap: %v", err)
	}
	if places, _ := h.Places(7); places != 2 {
		t.Errorf("user 7 has %d places, want 2", places)
	}
}
