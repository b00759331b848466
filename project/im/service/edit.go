package service

import (
	"context"
	"errors"
	"strconv"
	"time"

	"dce/app/node"
	"dce/app/wire"
	"dce/common/model"
	"dce/common/store"

	"github.com/go-json-experiment/json/jsontext"
)

// Edits and deletions (PROTOCOL.md section 5, im/edit and im/delete; the
// choices where it is silent are the README's): each is a stored change
// with a seq of its own, acknowledged after its commit, and pushed to the
// message's readers by the store's publisher in seq order with every other
// change (Store.EditLater, Store.DeleteLater).

// EditResult is im/edit's result.
type EditResult struct {
	Message model.Message `json:"message"`
}

// EditLater checks an edit of message id by user and queues it for the
// store, and returns a function that waits for the commit and returns the
// reply. The message's other readers, and user's other connections (conn,
// the one it came on, gets the reply), get im/edited with the whole
// message after the commit.
func (s *Service) EditLater(ctx context.Context, conn uint64, user, id int64, text string) (func() (EditResult, error), error) {
	lim := s.Limits()
	if id <= 0 {
		return nil, node.Errorf(node.CodeBadRequest, "id must be a message id")
	}
	if err := checkText(text, lim.TextMax, "text is empty (to remove a message, delete it)"); err != nil {
		return nil, err
	}
	now := s.Now()
	editor, err := s.account(ctx, user)
	if err != nil {
		return nil, err
	}
	if editor.Banned(now) || editor.Muted(now) {
		return nil, node.Errorf(node.CodeForbidden, "you may not send messages now")
	}
	if wait, ok := s.sends.allow(user, now); !ok {
		return nil, node.RateLimited(wait, "changing messages too fast")
	}
	msg, err := s.readableMessage(ctx, user, id)
	if err != nil {
		return nil, err
	}
	if msg.Deleted {
		return nil, node.Errorf(node.CodeNotFound, "message %d is deleted", id)
	}
	if msg.From.ID != user {
		return nil, node.Errorf(node.CodeForbidden, "you may edit only your own messages")
	}
	if err := s.checkEditWindow(msg, now, lim.EditWindow.Duration); err != nil {
		return nil, err
	}
	stored := s.Store.EditLater(ctx, id, text, func(msg model.Message) { // on the store's publisher, in seq order
		s.deliverStored(msg, conn, editedPush)
	})
	return func() (EditResult, error) {
		msg, err := stored()
		if errors.Is(err, store.ErrNotFound) { // deleted meanwhile
			return EditResult{}, node.Errorf(node.CodeNotFound, "message %d is deleted", id)
		} else if err != nil {
			return EditResult{}, err
		}
		msg.Conv = msg.Key.ViewFor(user)
		return EditResult{Message: msg}, nil
	}, nil
}

// DeleteLater checks a deletion of message id by user and queues it for
// the store, and returns a function that waits for the commit. Authors
// delete their own messages (within limits.edit_window), admins any they
// can read. The readers get im/deleted {"id","conv","seq"} after the
// commit. A message deleted already is answered at once, with no push.
func (s *Service) DeleteLater(ctx context.Context, conn uint64, user, id int64) (func() error, error) {
	if id <= 0 {
		return nil, node.Errorf(node.CodeBadRequest, "id must be a message id")
	}
	now := s.Now()
	if wait, ok := s.sends.allow(user, now); !ok {
		return nil, node.RateLimited(wait, "changing messages too fast")
	}
	msg, err := s.readableMessage(ctx, user, id)
	if err != nil {
		return nil, err
	}
	if msg.Deleted {
		return func() error { return nil }, nil
	}
	// The author within the window needs no role; anyone else, or the
	// author past it, must be an admin now (read from the store: a role
	// granted or taken while the server runs counts at once).
	pastWindow := s.checkEditWindow(msg, now, s.Limits().EditWindow.Duration)
	if msg.From.ID != user || pastWindow != nil {
		admin, err := s.IsAdmin(ctx, user)
		switch {
		case err != nil:
			return nil, err
		case admin:
		case msg.From.ID != user:
			return nil, node.Errorf(node.CodeForbidden, "you may delete only your own messages")
		default:
			return nil, pastWindow
		}
	}
	deleted := s.Store.DeleteLater(ctx, id, func(msg model.Message) { // on the store's publisher, in seq order
		s.deliverStored(msg, conn, deletedPush)
	})
	return func() error {
		_, _, err := deleted()
		return err
	}, nil
}

// readableMessage is message id if user may read it, else not_found.
func (s *Service) readableMessage(ctx context.Context, user, id int64) (model.Message, error) {
	msg, err := s.Store.MessageFor(ctx, user, id)
	if errors.Is(err, store.ErrNotFound) {
		return model.Message{}, node.Errorf(node.CodeNotFound, "no such message: %d", id)
	}
	return msg, err
}

// checkEditWindow refuses an author's change past limits.edit_window.
func (s *Service) checkEditWindow(msg model.Message, now time.Time, window time.Duration) error {
	if window > 0 && now.Sub(time.UnixMilli(msg.TS)) > window {
		return node.Errorf(node.CodeForbidden, "messages can be changed for %v after they are sent", window)
	}
	return nil
}

// editedPush is im/edited: the whole message, as im/message carries it.
func editedPush(msg *model.Message) []byte { return wholeMessagePush("im/edited", msg) }

// deletedPush is im/deleted {"id","conv","seq"}: seq, so that the highest
// seq a client has seen stays a safe im/sync since.
func deletedPush(msg *model.Message) []byte {
	b := wire.AppendHead(make([]byte, 0, 64), "im/deleted", "")
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, msg.ID, 10)
	b = append(b, `,"conv":`...)
	b, _ = jsontext.AppendQuote(b, msg.Conv)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, msg.Seq, 10)
	return append(b, '}')
}
