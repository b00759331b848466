package service

import (
	"context"
	"errors"
	"strconv"

	"dce/app/node"
	"dce/common/model"
	"dce/common/store"

	"github.com/go-json-experiment/json/jsontext"
)

// SendRequest is im/send's body.
type SendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
	Kind string `json:"kind"`
	File string `json:"file"`
	CID  string `json:"cid"`
}

// SendResult is im/send's result.
type SendResult struct {
	ID   int64  `json:"id"`
	TS   int64  `json:"ts"`
	CID  string `json:"cid"`
	Conv string `json:"conv"`
}

// AppendJSON encodes r as json.Marshal does (node.JSONAppender): every
// message sent is answered with one.
func (r SendResult) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, r.ID, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, r.TS, 10)
	b = append(b, `,"cid":`...)
	b, _ = jsontext.AppendQuote(b, r.CID) // invalid UTF-8 never gets this far (see model.Message.AppendJSON)
	b = append(b, `,"conv":`...)
	b, _ = jsontext.AppendQuote(b, r.Conv)
	return append(b, '}')
}

const maxCID = 64

// Send stores a message durably, then pushes it to every reader's
// connections (the sender's other connections included; conn, the one it
// came on, gets the reply instead). A cid already used by this sender
// returns the first message's result and delivers nothing again.
func (s *Service) Send(ctx context.Context, conn uint64, user int64, req SendRequest) (SendResult, error) {
	wait, err := s.SendLater(ctx, conn, user, req)
	if err != nil {
		return SendResult{}, err
	}
	return wait()
}

// SendLater is Send in two steps: it checks the message and queues it for
// the store now, and returns a function that waits for the commit and
// returns the reply. The store pushes the message to its readers after the
// commit and before the reply, in seq order with every other stored change
// (Store.AppendLater), so every connection gets pushes in seq order.
func (s *Service) SendLater(ctx context.Context, conn uint64, user int64, req SendRequest) (func() (SendResult, error), error) {
	lim := s.Limits()
	to, err := model.ParseAddress(req.To)
	if err != nil {
		return nil, node.Errorf(node.CodeBadRequest, "to: %v", err)
	}
	if req.Kind != "" && req.Kind != model.KindText {
		return nil, node.Errorf(node.CodeBadRequest, "kind: only text messages are accepted by this server")
	}
	if req.File != "" {
		return nil, node.Errorf(node.CodeBadRequest, "file: attachments are not accepted by this server")
	}
	if err := checkText(req.Text, lim.TextMax, "text is empty"); err != nil {
		return nil, err
	}
	if err := checkCID(req.CID); err != nil {
		return nil, err
	}
	now := s.Now()
	sender, err := s.account(ctx, user)
	if err != nil {
		return nil, err
	}
	if sender.Banned(now) || sender.Muted(now) {
		return nil, node.Errorf(node.CodeForbidden, "you may not send messages now")
	}
	var toUser int64
	switch to.Kind {
	case model.AddrUser:
		if _, err := s.account(ctx, to.ID); errors.Is(err, store.ErrNotFound) {
			return nil, node.Errorf(node.CodeNotFound, "no such user: %s", req.To)
		} else if err != nil {
			return nil, err
		}
		toUser = to.ID
	case model.AddrGroup:
		if _, _, err := s.groupFor(to.ID, user, false); err != nil {
			return nil, err
		}
	}
	if wait, ok := s.sends.allow(user, now); !ok {
		return nil, node.RateLimited(wait, "sending too fast")
	}
	from := sender.User
	stored := s.Store.AppendLater(ctx, model.NewMessage{Key: to.Key(user), Sender: user, To: to.String(),
		ToUser: toUser, Kind: model.KindText, Text: req.Text, CID: req.CID, TS: now.UnixMilli()},
		func(msg model.Message) { // on the store's publisher, in seq order (Store)
			msg.From = from
			s.sent.Add(1)
			s.deliverStored(msg, conn, messagePush)
		})
	return func() (SendResult, error) {
		msg, _, err := stored()
		if err != nil {
			return SendResult{}, err
		}
		return SendResult{ID: msg.ID, TS: msg.TS, CID: msg.CID, Conv: msg.Key.ViewFor(user)}, nil
	}, nil
}

// checkText applies a message text's rules (im/send, im/edit): at most
// max characters, none it may not hold, and not empty (ifEmpty says why).
func checkText(text string, max int, ifEmpty string) error {
	if err := model.CheckText(text, max); errors.Is(err, model.ErrTooLong) {
		return node.Errorf(node.CodeTooLarge, "text is over %d characters", max)
	} else if err != nil {
		return node.Errorf(node.CodeBadRequest, "text: %v", err)
	}
	if text == "" {
		return node.Errorf(node.CodeBadRequest, "%s", ifEmpty)
	}
	return nil
}

func checkCID(cid string) error {
	if len(cid) > maxCID {
		return node.Errorf(node.CodeBadRequest, "cid is over %d characters", maxCID)
	}
	for i := 0; i < len(cid); i++ {
		if cid[i] < 0x21 || cid[i] > 0x7e {
			return node.Errorf(node.CodeBadRequest, "cid must be printable ASCII without spaces")
		}
	}
	return nil
}

// deliverStored pushes a stored change of msg (a new message, an edit, a
// delete) to every connection of its conversation's readers but
// exceptConn: the lobby to everyone, a private message to its two parties,
// a group message to the group's members now. encode builds the push frame
// from msg with Conv set to one reader's view; it is called once per view
// (a private message has two, as conv names the other party; the lobby
// and a group have one) and the same bytes go to every reader of that
// view. Call it from the change's after-commit action (on the store's
// publisher), so that pushes follow seq order and group membership as of
// the commit.
func (s *Service) deliverStored(msg model.Message, exceptConn uint64, encode func(*model.Message) []byte) {
	if group, ok := msg.Key.GroupID(); ok {
		if members := s.groups.members(group); len(members) > 0 {
			msg.Conv = string(msg.Key)
			s.Stored.Deliver(members, encode(&msg), exceptConn)
		}
		return
	}
	switch {
	case msg.Key == model.LobbyKey:
		msg.Conv = string(msg.Key)
		s.Stored.Broadcast(encode(&msg), exceptConn, 0)
	case msg.ToUser == msg.From.ID: // a note to oneself
		s.deliverView(msg, msg.From.ID, exceptConn, encode)
	default:
		s.deliverView(msg, msg.From.ID, exceptConn, encode)
		s.deliverView(msg, msg.ToUser, exceptConn, encode)
	}
}

// holder is what a Stored bus may also say: whether user holds a
// connection it delivers to (bus.Local does).
type holder interface{ Holds(user int64) bool }

// deliverView pushes a private message to one party, as that party sees
// its conversation. With several nodes every node follows every stored
// change, and most private messages have no party on this one: those are
// not encoded at all.
func (s *Service) deliverView(msg model.Message, user int64, exceptConn uint64, encode func(*model.Message) []byte) {
	if h, ok := s.Stored.(holder); ok && !h.Holds(user) {
		return
	}
	msg.Conv = msg.Key.ViewFor(user)
	s.Stored.Deliver([]int64{user}, encode(&msg), exceptConn)
}

// convKey checks that user may read the conversation `with` names and
// returns its key.
func (s *Service) convKey(ctx context.Context, user int64, with string) (model.ConvKey, error) {
	addr, err := model.ParseAddress(with)
	if err != nil {
		return "", node.Errorf(node.CodeBadRequest, "with: %v", err)
	}
	switch addr.Kind {
	case model.AddrUser:
		if _, err := s.account(ctx, addr.ID); errors.Is(err, store.ErrNotFound) {
			return "", node.Errorf(node.CodeNotFound, "no such user: %s", with)
		} else if err != nil {
			return "", err
		}
	case model.AddrGroup:
		if _, _, err := s.groupFor(addr.ID, user, false); err != nil {
			return "", err
		}
	}
	return addr.Key(user), nil
}

// LoadResult is im/load's result.
type LoadResult struct {
	Messages []model.Message `json:"messages"`
	More     bool            `json:"more"`
}

// Load pages through one conversation's history.
func (s *Service) Load(ctx context.Context, user int64, with string, before, after int64, limit int) (LoadResult, error) {
	if before < 0 || after < 0 || limit < 0 {
		return LoadResult{}, node.Errorf(node.CodeBadRequest, "before, after and limit must not be negative")
	}
	if before > 0 && after > 0 {
		return LoadResult{}, node.Errorf(node.CodeBadRequest, "give before or after, not both")
	}
	key, err := s.convKey(ctx, user, with)
	if err != nil {
		return LoadResult{}, err
	}
	limit = clamp(limit, 50, 100)
	msgs, more, err := s.Store.Load(ctx, key, before, after, limit)
	if err != nil {
		return LoadResult{}, err
	}
	viewFor(msgs, user)
	return LoadResult{Messages: msgs, More: more}, nil
}

// SyncResult is im/sync's result.
type SyncResult struct {
	Messages []model.Message `json:"messages"`
	Seq      int64           `json:"seq"`
	More     bool            `json:"more"`
}

// Sync returns every change the user may read after seq since.
func (s *Service) Sync(ctx context.Context, user, since int64, limit int) (SyncResult, error) {
	if since < 0 || limit < 0 {
		return SyncResult{}, node.Errorf(node.CodeBadRequest, "since and limit must not be negative")
	}
	msgs, latest, more, err := s.Store.Sync(ctx, user, since, clamp(limit, 500, 1000))
	if err != nil {
		return SyncResult{}, err
	}
	viewFor(msgs, user)
	return SyncResult{Messages: msgs, Seq: latest, More: more}, nil
}

// Conversations lists the user's conversations, newest first.
func (s *Service) Conversations(ctx context.Context, user int64) ([]model.Conversation, error) {
	convs, err := s.Store.Conversations(ctx, user)
	if err != nil {
		return nil, err
	}
	for i := range convs {
		convs[i].Conv = convs[i].Last.Key.ViewFor(user)
		convs[i].Last.Conv = convs[i].Conv
	}
	return convs, nil
}

// Read marks a conversation read up to id and tells the reader's other
// connections (all but conn) and, in a private conversation, the other
// party.
func (s *Service) Read(ctx context.Context, conn uint64, user int64, with string, id int64) error {
	if id <= 0 {
		return node.Errorf(node.CodeBadRequest, "id must be a message id")
	}
	if err := s.allowUpdate(user); err != nil {
		return err
	}
	key, err := s.convKey(ctx, user, with)
	if err != nil {
		return err
	}
	if err := s.Store.MarkRead(ctx, user, key, id); err != nil {
		return err
	}
	// Read marks go to the reader's other connections, and to the other
	// party of a private conversation; in the lobby or a group they would
	// be noise to everyone else.
	type readEvent struct {
		Conv string `json:"conv"`
		User int64  `json:"user"`
		ID   int64  `json:"id"`
	}
	s.Bus.Deliver([]int64{user}, push("im/read", readEvent{key.ViewFor(user), user, id}), conn)
	if addr, _ := model.ParseAddress(with); addr.Kind == model.AddrUser && addr.ID != user {
		s.Bus.Deliver([]int64{addr.ID}, push("im/read", readEvent{key.ViewFor(addr.ID), user, id}), 0)
	}
	return nil
}

// Typing tells the conversation's other readers that user is typing. Over
// the typing rate it is dropped without an error, before anything is read
// from the store; within it, a user who does not exist is not_found.
func (s *Service) Typing(ctx context.Context, user int64, to string) error {
	addr, err := model.ParseAddress(to)
	if err != nil {
		return node.Errorf(node.CodeBadRequest, "to: %v", err)
	}
	switch addr.Kind {
	case model.AddrGroup:
		if _, _, err := s.groupFor(addr.ID, user, false); err != nil {
			return err
		}
	}
	if _, ok := s.typing.allow(user, s.Now()); !ok {
		return nil
	}
	if addr.Kind == model.AddrUser { // after the limiter: a store read when not cached
		if _, err := s.account(ctx, addr.ID); errors.Is(err, store.ErrNotFound) {
			return node.Errorf(node.CodeNotFound, "no such user: %s", to)
		} else if err != nil {
			return err
		}
	}
	acct, err := s.account(ctx, user)
	if err != nil {
		return err
	}
	type typing struct {
		From model.User `json:"from"`
		Conv string     `json:"conv"`
	}
	switch addr.Kind {
	case model.AddrRoom:
		s.Bus.Broadcast(push("im/typing", typing{acct.User, model.Lobby}), 0, user)
		return nil
	case model.AddrGroup:
		members := s.groups.members(addr.ID)
		others := make([]int64, 0, len(members))
		for _, member := range members {
			if member != user {
				others = append(others, member)
			}
		}
		if len(others) > 0 {
			s.Bus.Deliver(others, push("im/typing", typing{acct.User, addr.String()}), 0)
		}
		return nil
	}
	if addr.ID != user {
		s.Bus.Deliver([]int64{addr.ID}, push("im/typing", typing{acct.User, addr.Key(user).ViewFor(addr.ID)}), 0)
	}
	return nil
}

func viewFor(msgs []model.Message, user int64) {
	for i := range msgs {
		msgs[i].Conv = msgs[i].Key.ViewFor(user)
	}
}

func clamp(v, def, most int) int {
	if v == 0 {
		return def
	}
	return min(v, most)
}
