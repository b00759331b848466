package service

import (
	"context"
	"testing"

	"dce/common/model"
)

// countingStore answers UserByID for any id and counts the reads; the
// rest of Store is not used here.
type countingStore struct {
	Store
	reads int
}

func (s *countingStore) UserByID(_ context.Context, id int64) (model.Account, error) {
	s.reads++
	return model.Account{User: model.User{ID: id}}, nil
}

// The service's copies of accounts stay bounded however many users are
// read: past the bound they are forgotten at once and read again from the
// store; within it, a second read costs the store nothing.
func TestAccountCacheBounded(t *testing.T) {
	defer func(n int) { accountCache = n }(accountCache)
	accountCache = 100
	st := &countingStore{}
	s := &Service{Deps: Deps{Store: st}}
	ctx := context.Background()
	for id := int64(1); id <= 1000; id++ {
		if a, err := s.account(ctx, id); err != nil || a.ID != id {
			t.Fatalf("account %d: %+v %v", id, a, err)
		}
		if n := s.cached; n > accountCache {
			t.Fatalf("after %d accounts %d copies are kept, over the bound %d", id, n, accountCache)
		}
	}
	kept := 0
	s.users.Range(func(any, any) bool { kept++; return true })
	if kept != s.cached || kept == 0 || kept > 100 {
		t.Fatalf("%d copies kept, counted %d", kept, s.cached)
	}
	reads := st.reads
	if _, err := s.account(ctx, 1000); err != nil || st.reads != reads {
		t.Fatalf("a kept account was read from the store again (%d reads, had %d)", st.reads, reads)
	}
	s.AccountChanged(1000)
	if s.cached != kept-1 {
		t.Fatalf("after a change %d counted, want %d", s.cached, kept-1)
	}
	if _, err := s.account(ctx, 1000); err != nil || st.reads != reads+1 {
		t.Fatal("a changed account was not read again")
	}
}
