package service

import (
	"context"
	"errors"
	"time"

	"dce/app/node"
	"dce/common/model"
	"dce/common/store"
)

// Moderation: admin/kick, admin/ban and admin/mute (PROTOCOL.md section
// 5). Each takes effect on every node before it returns (section 8): the
// account's new state is committed first, then every node forgets its
// cached copy, then the connections are closed everywhere.

// Bounds of the moderation requests.
const (
	maxReason  = 200                 // characters of a kick or ban reason
	maxMinutes = 100 * 365 * 24 * 60 // a hundred years: "for good"
)

// Peers is what the chat tells the other nodes, which cache what this one
// changed; nil with one node.
type Peers interface {
	// AccountChanged makes every other live node drop its cached copy of
	// user's account, and returns when they have (or a bounded wait for a
	// node that does not answer has passed).
	AccountChanged(user int64)
}

// Kick closes every connection user holds, on every node, with 4001
// after an im/kicked push carrying reason. The session stays: the user
// may come back.
func (s *Service) Kick(ctx context.Context, by, user int64, reason string) error {
	if err := s.moderated(ctx, by, user, reason); err != nil {
		return err
	}
	if reason == "" {
		reason = "an admin closed your connections"
	}
	s.Hub.Kick(user, kickedPush(reason), node.CloseKicked, reason)
	return nil
}

// Ban keeps user out for minutes (nil: for good; 0 lifts a ban): it ends
// every session of theirs, and their connections on every node get
// im/kicked and close with 4503. Until it ends they can neither log in
// nor resume nor send, on any transport and any node.
func (s *Service) Ban(ctx context.Context, by, user int64, minutes *int, reason string) error {
	m := maxMinutes
	if minutes != nil {
		m = *minutes
	}
	until, err := s.until(m)
	if err != nil {
		return err
	}
	if err := s.moderated(ctx, by, user, reason); err != nil {
		return err
	}
	if err := s.Store.SetBannedUntil(ctx, user, until); err != nil {
		return storeError(err)
	}
	s.accountChanged(user)
	if until.IsZero() {
		return nil
	}
	if err := s.Sessions.DeleteUser(ctx, user); err != nil {
		return err
	}
	if reason == "" {
		reason = "banned until " + until.UTC().Format(time.RFC3339)
	}
	s.Hub.Kick(user, kickedPush(reason), node.CloseBanned, reason)
	return nil
}

// Mute keeps user from sending, editing and deleting for minutes (0 lifts
// a mute); they stay connected and go on reading.
func (s *Service) Mute(ctx context.Context, by, user int64, minutes int) error {
	until, err := s.until(minutes)
	if err != nil {
		return err
	}
	if err := s.moderated(ctx, by, user, ""); err != nil {
		return err
	}
	if err := s.Store.SetMutedUntil(ctx, user, until); err != nil {
		return storeError(err)
	}
	s.accountChanged(user)
	return nil
}

// moderated checks a moderation request: a reason that fits, a user that
// exists, and not the admin themselves (who would lock themselves out).
func (s *Service) moderated(ctx context.Context, by, user int64, reason string) error {
	if err := model.CheckText(reason, maxReason); err != nil {
		return node.Errorf(node.CodeBadRequest, "reason: %v", err)
	}
	if user <= 0 {
		return node.Errorf(node.CodeBadRequest, "user: required")
	}
	if user == by {
		return node.Errorf(node.CodeBadRequest, "user: not yourself")
	}
	if _, err := s.Store.UserByID(ctx, user); err != nil {
		return storeError(err)
	}
	return nil
}

// until is the end of a ban or mute of minutes from now; 0 is the zero
// time, which lifts it.
func (s *Service) until(minutes int) (time.Time, error) {
	if minutes < 0 || minutes > maxMinutes {
		return time.Time{}, node.Errorf(node.CodeBadRequest, "minutes: from 0 to %d", maxMinutes)
	}
	if minutes == 0 {
		return time.Time{}, nil
	}
	return s.Now().Add(time.Duration(minutes) * time.Minute), nil
}

// storeError names a user the store does not have.
func storeError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return node.Errorf(node.CodeNotFound, "no such user")
	}
	return err
}

// kickedPush is im/kicked {"reason"}.
func kickedPush(reason string) []byte {
	return push("im/kicked", struct {
		Reason string `json:"reason"`
	}{reason})
}

// accountChanged drops every node's cached copy of user's account, this
// node's first, after a change of it was committed.
func (s *Service) accountChanged(user int64) {
	s.AccountChanged(user)
	if s.Peers != nil {
		s.Peers.AccountChanged(user)
	}
}

// AccountChanged drops this node's cached copy of user's account: another
// node changed it (cluster.Events.AccountChanged), or this one did.
func (s *Service) AccountChanged(user int64) {
	s.accountMu.Lock()
	defer s.accountMu.Unlock()
	s.accountGen.Add(1)
	if _, had := s.users.LoadAndDelete(user); had {
		s.cached--
	}
}
