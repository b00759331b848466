package service

import (
	"context"
	"time"

	"dce/common/model"
	"dce/common/store"
)

// Remote is the after-commit action of a change another node stored: the
// store's publisher calls it in seq order with this node's own changes
// (store.Change), and it does here what the writing node's action did
// there: group membership first, then the pushes to this node's
// connections. No connection of this node made the change, so none is
// spared.
func (s *Service) Remote(c store.Change) {
	switch c.Kind {
	case store.ChangeMessage:
		s.deliverStored(c.Message, 0, messagePush)
	case store.ChangeEdit:
		s.deliverStored(c.Message, 0, editedPush)
	case store.ChangeDelete:
		s.deliverStored(c.Message, 0, deletedPush)
	case store.ChangeGroup:
		event, about, added := remoteGroupEvent(c)
		var user *model.User
		if about != 0 {
			if u, err := s.remoteUser(about); err == nil {
				user = &u
			} else {
				s.Log.Warn("a group change names a user this node cannot read", "user", about, "err", err)
				user = &model.User{ID: about}
			}
		}
		s.pushGroup(event, user, added, 0)(c.Group)
	default:
		s.Log.Error("a change of an unknown kind", "kind", c.Kind, "seq", c.Seq)
	}
}

// remoteGroupEvent is the im/group event of a group change, whom it is
// about, and whether it added them (membership.apply's added).
func remoteGroupEvent(c store.Change) (event string, about int64, added bool) {
	switch c.GroupOp {
	case store.GroupCreate:
		return GroupCreated, c.Group.Group.Owner, false
	case store.GroupAdd:
		if c.By == c.Group.User {
			return GroupJoined, c.Group.User, true
		}
		return GroupInvited, c.Group.User, true
	case store.GroupRemove:
		if c.By == c.Group.User {
			return GroupLeft, c.Group.User, false
		}
		return GroupRemoved, c.Group.User, false
	default:
		return GroupRenamed, 0, false
	}
}

// remoteUser reads the user a remote group change is about (the accounts
// cache, else the store: a read bounded in time, as the publisher must not
// wait long).
func (s *Service) remoteUser(id int64) (model.User, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.knownUser(ctx, id)
}
