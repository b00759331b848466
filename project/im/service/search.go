package service

import (
	"context"
	"time"
	"unicode/utf8"

	"dce/app/node"
	"dce/common/config"
	"dce/common/model"
)

// Search and the history around a search result (PROTOCOL.md section 5,
// im/search; im/load's around is the README's).

// maxQuery is the longest im/search q, in characters.
const maxQuery = 256

// searchLimits bound the work im/search puts on the store, which each
// search also bounds itself (sqlite.SearchExamined): a token bucket per
// user, at half the rate and burst of messages (a search costs about as
// much as two sends; by default 5 a second, bursts of 10), and at most
// searchesAtOnce searches running server-wide, so that im/load and
// im/sync always find a reader connection of the store free (it has four
// at least). A search that finds no slot within searchWait is
// rate_limited.
type searchLimits struct {
	perUser *userLimiter
	running chan struct{} // one token per running search
}

const (
	searchesAtOnce = 2
	searchWait     = 250 * time.Millisecond
)

func newSearchLimits(l config.Limits) searchLimits {
	rate, burst := searchRate(l)
	return searchLimits{perUser: newUserLimiter(rate, burst), running: make(chan struct{}, searchesAtOnce)}
}

// searchRate is the per-user rate and burst of im/search under l.
func searchRate(l config.Limits) (perSecond, burst int) {
	return max(1, l.MessagesPerSecond/2), max(1, l.MessageBurst/2)
}

// setRate applies reloaded limits.
func (sl searchLimits) setRate(l config.Limits) { sl.perUser.setRate(searchRate(l)) }

// acquire takes user's token and a running slot, or says rate_limited;
// release gives the slot back.
func (sl searchLimits) acquire(ctx context.Context, user int64, now time.Time) (release func(), err error) {
	if wait, ok := sl.perUser.allow(user, now); !ok {
		return nil, node.RateLimited(wait, "too many searches; slow down")
	}
	release = func() { <-sl.running }
	select {
	case sl.running <- struct{}{}:
		return release, nil
	default:
	}
	timer := time.NewTimer(searchWait)
	defer timer.Stop()
	select {
	case sl.running <- struct{}{}:
		return release, nil
	case <-timer.C:
		return nil, node.RateLimited(searchWait, "the server is busy with other searches; try again")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SearchResult is im/search's result. When More is true, NextBefore is
// the id to pass as before for the next page: the last message's id when
// the page is full, or, when the search stopped at its bound on the rows
// it examines (fewer messages than the limit, none even), the oldest id
// it examined.
type SearchResult struct {
	Messages   []model.Message `json:"messages"`
	More       bool            `json:"more"`
	NextBefore int64           `json:"next_before,omitempty"`
}

// Search finds the messages user may read (one conversation when with is
// not "") that contain q, newest first, below message id before (0: from
// the newest), at most limit (default 20, max 100). It is rate-limited
// (searchLimits), checked after the arguments.
func (s *Service) Search(ctx context.Context, user int64, q, with string, before int64, limit int) (SearchResult, error) {
	if !utf8.ValidString(q) {
		return SearchResult{}, node.Errorf(node.CodeBadRequest, "q is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(q); n == 0 || n > maxQuery {
		return SearchResult{}, node.Errorf(node.CodeBadRequest, "q must be 1 to %d characters", maxQuery)
	}
	for i := 0; i < len(q); i++ {
		if q[i] == 0 {
			return SearchResult{}, node.Errorf(node.CodeBadRequest, "q contains NUL")
		}
	}
	if before < 0 || limit < 0 {
		return SearchResult{}, node.Errorf(node.CodeBadRequest, "before and limit must not be negative")
	}
	var key model.ConvKey
	if with != "" {
		var err error
		if key, err = s.convKey(ctx, user, with); err != nil {
			return SearchResult{}, err
		}
	}
	release, err := s.searches.acquire(ctx, user, s.Now())
	if err != nil {
		return SearchResult{}, err
	}
	defer release()
	msgs, more, next, err := s.Store.Search(ctx, user, q, key, before, clamp(limit, 20, 100))
	if err != nil {
		return SearchResult{}, err
	}
	viewFor(msgs, user)
	return SearchResult{Messages: msgs, More: more, NextBefore: next}, nil
}

// AroundResult is im/load's result with around: More says older messages
// exist, Newer that newer ones do.
type AroundResult struct {
	Messages []model.Message `json:"messages"`
	More     bool            `json:"more"`
	Newer    bool            `json:"newer"`
}

// LoadAround returns message around of the conversation with and the
// messages about it, oldest first: of limit (default 50, max 100), about
// half older and half newer. A message that is not in that conversation,
// or that user may not read, is not_found.
func (s *Service) LoadAround(ctx context.Context, user int64, with string, around int64, limit int) (AroundResult, error) {
	if around <= 0 || limit < 0 {
		return AroundResult{}, node.Errorf(node.CodeBadRequest, "around must be a message id, and limit not negative")
	}
	key, err := s.convKey(ctx, user, with)
	if err != nil {
		return AroundResult{}, err
	}
	target, err := s.readableMessage(ctx, user, around)
	if err != nil {
		return AroundResult{}, err
	}
	if target.Key != key {
		return AroundResult{}, node.Errorf(node.CodeNotFound, "no message %d in %s", around, with)
	}
	limit = clamp(limit, 50, 100)
	older := (limit - 1) / 2
	newer := limit - 1 - older
	// Each side is read with at least one row, so that More and Newer are
	// known even when that side gets none.
	olderMsgs, more, err := s.Store.Load(ctx, key, around, 0, max(older, 1))
	if err != nil {
		return AroundResult{}, err
	}
	if older == 0 {
		olderMsgs, more = nil, len(olderMsgs) > 0
	}
	newerMsgs, hasNewer, err := s.Store.Load(ctx, key, 0, around, max(newer, 1))
	if err != nil {
		return AroundResult{}, err
	}
	if newer == 0 {
		newerMsgs, hasNewer = nil, len(newerMsgs) > 0
	}
	msgs := make([]model.Message, 0, len(olderMsgs)+1+len(newerMsgs))
	msgs = append(append(append(msgs, olderMsgs...), target), newerMsgs...)
	viewFor(msgs, user)
	return AroundResult{Messages: msgs, More: more, Newer: hasNewer}, nil
}
