package service

import (
	"context"
	"unicode/utf8"

	"dce/app/node"
	"dce/common/model"
)

// Search and the history around a search result (PROTOCOL.md section 5,
// im/search; im/load's around is the README's).

// maxQuery is the longest im/search q, in characters.
const maxQuery = 256

// Search finds the messages user may read (one conversation when with is
// not "") that contain q, newest first, below message id before (0: from
// the newest), at most limit (default 20, max 100).
func (s *Service) Search(ctx context.Context, user int64, q, with string, before int64, limit int) (LoadResult, error) {
	if !utf8.ValidString(q) {
		return LoadResult{}, node.Errorf(node.CodeBadRequest, "q is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(q); n == 0 || n > maxQuery {
		return LoadResult{}, node.Errorf(node.CodeBadRequest, "q must be 1 to %d characters", maxQuery)
	}
	for i := 0; i < len(q); i++ {
		if q[i] == 0 {
			return LoadResult{}, node.Errorf(node.CodeBadRequest, "q contains NUL")
		}
	}
	if before < 0 || limit < 0 {
		return LoadResult{}, node.Errorf(node.CodeBadRequest, "before and limit must not be negative")
	}
	var key model.ConvKey
	if with != "" {
		var err error
		if key, err = s.convKey(ctx, user, with); err != nil {
			return LoadResult{}, err
		}
	}
	msgs, more, err := s.Store.Search(ctx, user, q, key, before, clamp(limit, 20, 100))
	if err != nil {
		return LoadResult{}, err
	}
	viewFor(msgs, user)
	return LoadResult{Messages: msgs, More: more}, nil
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
