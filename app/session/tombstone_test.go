package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"dce/app/session"
)

// pausingStore holds LoadSession after it has read the row, until released,
// so a Delete can run in the gap between a refill's read and its put.
type pausingStore struct {
	*memStore
	loaded, release chan struct{}
}

func (p *pausingStore) LoadSession(ctx context.Context, h string) (int64, time.Time, time.Time, error) {
	user, created, expires, err := p.memStore.LoadSession(ctx, h)
	p.loaded <- struct{}{}
	<-p.release
	return user, created, expires, err
}

// TestDeleteDuringRefill: a session deleted while a cold cache is reading
// it from the store does not come back to life in the cache.
func TestDeleteDuringRefill(t *testing.T) {
	for _, whole := range []bool{false, true} {
		clk := &clock{t: time.Now()}
		mem := newMemStore(clk.now)
		warm := session.New(mem, 1<<20, lifetime, clk.now)
		s, err := warm.Create(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		ps := &pausingStore{memStore: mem, loaded: make(chan struct{}), release: make(chan struct{})}
		cold := session.New(ps, 1<<20, lifetime, clk.now) // a restarted server: nothing cached
		got := make(chan error, 1)
		go func() { _, err := cold.Get(ctx, s.SID); got <- err }()
		<-ps.loaded
		if whole {
			err = cold.DeleteUser(ctx, 7)
		} else {
			err = cold.Delete(ctx, s.SID)
		}
		if err != nil {
			t.Fatal(err)
		}
		close(ps.release)
		if err := <-got; !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("whole=%v: the refill racing the delete returned %v, want ErrNoSession", whole, err)
		}
		ps.loaded = make(chan struct{}, 1)
		if _, err := cold.Get(ctx, s.SID); !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("whole=%v: the deleted session came back: %v", whole, err)
		}
	}
}
