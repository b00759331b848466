package service

import (
	"context"
	"sort"

	"dce/common/model"
)

// presenceEvent is im/presence's body.
type presenceEvent struct {
	User   model.User `json:"user"`
	Online bool       `json:"online"`
	Places int        `json:"places"`
}

// PresenceChanged is the hub's presence callback, told every change in
// order: an im/presence to every logged-in connection that watches
// presence, never the whole list, at most one a second per user with the
// changes in between folded into it (presencefold.go).
func (s *Service) PresenceChanged(user int64, online bool, places int) {
	s.presence.change(user, online, places, s.Now())
}

// pushPresence sends one im/presence about user.
func (s *Service) pushPresence(user int64, online bool, places int) {
	acct, err := s.account(context.Background(), user)
	if err != nil {
		s.Log.Warn("presence: unknown user", "user", user, "err", err)
		return
	}
	s.Bus.BroadcastPresence(push("im/presence", presenceEvent{acct.User, online, places}))
}

// Users lists everyone online now with their places, by nickname.
func (s *Service) Users(ctx context.Context) ([]model.Online, error) {
	online := s.Hub.Online()
	ids := make([]int64, len(online))
	for i, o := range online {
		ids[i] = o.UserID
	}
	users, err := s.Store.UsersByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]model.Online, 0, len(online))
	for _, o := range online {
		if u, ok := users[o.UserID]; ok {
			out = append(out, model.Online{User: u, Places: o.Places})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Nickname < out[j].Nickname })
	return out, nil
}
