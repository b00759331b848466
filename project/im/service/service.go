// Package service is the chat's logic: accounts, conversations, history,
// presence. It knows no transport: controllers hand it a node.Peer and
// plain values, and it pushes pre-encoded frames through the Bus.
package service

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/session"
	"dce/app/wire"
	"dce/common/config"
	"dce/common/model"

	"github.com/go-json-experiment/json"
)

// Store is what the chat needs from the durable store.
type Store interface {
	CreateUser(ctx context.Context, nickname, passwordHash, brief string) (model.Account, error)
	UserByNickname(ctx context.Context, nickname string) (model.Account, error)
	UserByID(ctx context.Context, id int64) (model.Account, error)
	UsersByID(ctx context.Context, ids []int64) (map[int64]model.User, error)
	SetPasswordHash(ctx context.Context, id int64, hash string) error
	UpdateProfile(ctx context.Context, id int64, brief, avatar string) (model.User, error)
	SetAdmin(ctx context.Context, id int64, admin bool) error
	// SetBannedUntil and SetMutedUntil ban or mute a user until a time;
	// the zero time lifts it. store.ErrNotFound: no such user.
	SetBannedUntil(ctx context.Context, id int64, until time.Time) error
	SetMutedUntil(ctx context.Context, id int64, until time.Time) error
	CountUsers(ctx context.Context) (int64, error)

	Append(ctx context.Context, m model.NewMessage) (model.Message, bool, error)
	// AppendLater queues m for the store and returns a function that waits
	// for its commit and returns what Append would; messages queued in turn
	// by one goroutine are stored in that order. published (if not nil)
	// is the message's after-commit action, its push, and the store owes
	// it this contract, which makes PROTOCOL.md section 1's ordering hold:
	// it is called only after the commit that holds the message is
	// durable, and only if the message was stored (never for a duplicate
	// cid, an unknown sender or a failed write), before the returned
	// function returns (or, if ctx ended first, still, if the message was
	// stored); and the after-commit actions of every stored change (every
	// message, and the edits and deletes to come, whoever sent them) are
	// called in increasing seq order, one at a time, on one goroutine. So
	// published must not wait for long and must not call the store's
	// writes; handing frames to the Bus is what it is for.
	AppendLater(ctx context.Context, m model.NewMessage, published func(model.Message)) func() (model.Message, bool, error)
	Load(ctx context.Context, key model.ConvKey, before, after int64, limit int) ([]model.Message, bool, error)
	Sync(ctx context.Context, userID, since int64, limit int) ([]model.Message, int64, bool, error)
	Conversations(ctx context.Context, userID int64) ([]model.Conversation, error)
	MarkRead(ctx context.Context, userID int64, key model.ConvKey, id int64) error
	CountMessages(ctx context.Context) (int64, error)

	// MessageFor returns message id, its sender joined in and Conv the
	// canonical key, if reader may read it (the lobby, their private
	// conversations, their groups); store.ErrNotFound otherwise, and for
	// an id that does not exist. A deleted message is returned, deleted.
	MessageFor(ctx context.Context, reader, id int64) (model.Message, error)
	// EditLater queues an edit of message id: its text becomes text, it
	// is marked edited, it takes a new seq (PROTOCOL.md section 3) and
	// the search index finds it by the new text only, all in one
	// transaction. The returned function waits for the commit and returns
	// the message as stored (sender joined in); store.ErrNotFound if
	// there is no such message or it is deleted. published is the edit's
	// after-commit action, its push, under AppendLater's contract: called
	// only after the commit is durable and only if the edit was stored,
	// before the returned function returns, and in increasing seq order,
	// one at a time, on one goroutine, with the actions of every other
	// stored change (messages, edits, deletions). Who may edit is the
	// caller's to check.
	EditLater(ctx context.Context, id int64, text string, published func(model.Message)) func() (model.Message, error)
	// DeleteLater queues the deletion of message id: it keeps its id,
	// sender, conversation and time, loses its text and file (in the row,
	// the search index, and the space they took in the store's files),
	// is marked deleted and takes a new seq. The returned function waits
	// for the commit and returns the message as stored; a message deleted
	// already stores nothing and comes back with already=true (no new
	// seq, nothing published); store.ErrNotFound if there is no such
	// message. published is as EditLater's.
	DeleteLater(ctx context.Context, id int64, published func(model.Message)) func() (msg model.Message, already bool, err error)
	// Search returns the messages reader may read whose text contains q
	// (case-insensitive, any script, any substring), never a deleted one,
	// newest first, ids below before (when > 0), in conversation key
	// when it is not "", at most limit (1..100, 20 when 0); more reports
	// further matches, and next is then the id to pass as before to go
	// on: a search may examine a bounded number of candidates only, and
	// then return fewer than limit (none, even) with more and the oldest
	// id it examined. A message is found once its Append has returned.
	// One- and two-character queries look through a bounded window of
	// the newest readable messages only (the engine documents its size).
	Search(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) (msgs []model.Message, more bool, next int64, err error)
	// Groups returns every group with its members in join order, by id:
	// what the chat loads into memory when it starts.
	Groups(ctx context.Context) ([]model.GroupMembers, error)
	// CreateGroup, AddGroupMember, RemoveGroupMember and RenameGroup
	// change groups. Each returns only after the commit that holds the
	// change is durable. committed (if not nil) is the change's
	// after-commit action, and the store owes it AppendLater's contract:
	// it is called only after that commit, only if something changed
	// (never for a refusal or a no-op: an add of a member, a removal of a
	// non-member), before the method returns (or, if ctx ended first,
	// still, if the change was stored), and in seq order with every
	// message's published, one at a time, on one goroutine. The chat
	// changes its membership in memory there, so messages committed after
	// a change are delivered by the membership after it.
	//
	// CreateGroup makes the owner the first member and g.Members (without
	// duplicates or the owner) the next, lowest id first; the change
	// lists every member (Members). AddGroupMember puts user last in the
	// join order. RemoveGroupMember takes user out; when the owner goes,
	// the member first in join order becomes owner; when the last member
	// goes the group is dissolved (Dissolved): it is gone from Groups and
	// from every later write (store.ErrNotFound), its id is never given
	// to another group, and its messages stay, readable by no one.
	//
	// by is who asks, and the store checks in the write's own
	// transaction, as of the commits before it, that they may, so no
	// permission the chat saw in memory can be stale by the time it
	// applies: an add by user themselves is a join (the group must be
	// open), by anyone else an invite (by must be a member); a removal of
	// user by anyone else needs by to be the owner (and the owner cannot
	// be removed so); a rename needs by to be the owner.
	//
	// Refusals, with nothing written and nothing published:
	// store.ErrNotFound for no such group or user, store.ErrForbidden
	// when by may not make the change, store.ErrFull when a create or an
	// add would take the group past maxMembers (when above 0).
	CreateGroup(ctx context.Context, g model.NewGroup, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error)
	AddGroupMember(ctx context.Context, group, user, by int64, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error)
	RemoveGroupMember(ctx context.Context, group, user, by int64, committed func(model.GroupChange)) (model.GroupChange, error)
	RenameGroup(ctx context.Context, group int64, name string, by int64, committed func(model.GroupChange)) (model.GroupChange, error)
}

// Bus fans pre-encoded frames out to users' connections, on this node and
// (with a multi-node bus) on the others.
type Bus interface {
	Deliver(users []int64, frame []byte, exceptConn uint64)
	Broadcast(frame []byte, exceptConn uint64, exceptUser int64)
	BroadcastPresence(frame []byte)
}

// Hub is what the chat asks of the live connections.
type Hub interface {
	Online() []hub.Online
	// Places is how many connections user holds now, and whether they
	// count as online.
	Places(user int64) (int, bool)
	EndSession(user int64, sid string)
	// Kick sends frame to every connection of user and closes them with
	// code and reason; with several nodes, on all of them before it
	// returns.
	Kick(user int64, frame []byte, code node.CloseCode, reason string) int
	Stats() hub.Stats
}

// Deps are the service's dependencies.
type Deps struct {
	Store    Store
	Sessions *session.Cache
	Bus      Bus
	// Stored is where the pushes of stored changes (messages, edits,
	// deletions, group changes) go: with several nodes, this node's
	// connections only, as every node follows the store's changes itself
	// (Remote); nil: Bus.
	Stored Bus
	Hub    Hub
	Log    *slog.Logger
	Now    func() time.Time
	// Limiter, when set, holds the per-user rate limits for every node
	// (several nodes on one Redis); nil keeps them in this process.
	Limiter SharedLimiter
	// Peers, with several nodes, is told what changed here that the other
	// nodes cache (moderation.go); nil with one.
	Peers Peers
}

// Service is the chat.
type Service struct {
	Deps
	limits   atomic.Pointer[config.Limits]
	hasher   *Hasher
	failures *windowLimiter // failed logins
	signups  *windowLimiter // registrations per address
	sends    *userLimiter
	typing   *userLimiter
	updates  *userLimiter // read marks and profile changes, which push to others
	// creations: group creations, stricter than updates (a creation
	// writes a row per member): creationRate of the message limits.
	creations *userLimiter
	searches  searchLimits // im/search (search.go)
	users     sync.Map     // int64 -> model.Account: the accounts of recent senders
	// accountGen counts the accounts changed (AccountChanged): a copy
	// read from the store while one changed may be stale and is not kept.
	// accountMu orders keeping a copy with the changes, and guards cached:
	// how many copies users holds. Past accountCache they are all
	// forgotten at once, so that they stay bounded however many users the
	// store has.
	accountGen atomic.Uint64
	accountMu  sync.Mutex
	cached     int
	sent       atomic.Uint64
	stop       chan struct{}
	stopOnce   sync.Once
	started    time.Time

	admission *admission // new connections and resumes
	presence  *presenceFolder
	groups    *membership // who is in which group (membership.go)
}

// New makes the service and starts its janitor (Close stops it).
func New(d Deps, cfg config.Config) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Stored == nil {
		d.Stored = d.Bus
	}
	slots := cfg.Auth.HashSlots
	if slots <= 0 {
		slots = numCPU()
	}
	s := &Service{
		Deps: d,
		hasher: NewHasher(ArgonParams{MemoryKiB: uint32(cfg.Auth.ArgonMemoryKiB), Time: uint32(cfg.Auth.ArgonTime),
			Threads: uint8(max(1, cfg.Auth.ArgonThreads))}, slots, cfg.Auth.HashWait.Duration),
		failures:  newWindowLimiter(time.Duration(cfg.Limits.FailedLoginWindowSeconds) * time.Second),
		signups:   newWindowLimiter(time.Hour),
		sends:     newUserLimiter(cfg.Limits.MessagesPerSecond, cfg.Limits.MessageBurst),
		typing:    newUserLimiter(cfg.Limits.TypingPerSecond, cfg.Limits.TypingPerSecond),
		updates:   newUserLimiter(cfg.Limits.MessagesPerSecond, cfg.Limits.MessageBurst),
		creations: newUserLimiter(creationRate(cfg.Limits)),
		searches:  newSearchLimits(cfg.Limits),
		stop:      make(chan struct{}),
		started:   d.Now(),
		groups:    newMembership(),
	}
	s.admission = newAdmission(cfg.Limits)
	s.shareLimits(d.Limiter)
	s.presence = newPresenceFolder(presenceInterval, s.pushPresence)
	limits := cfg.Limits
	s.limits.Store(&limits)
	if cfg.Auth.ArgonMemoryKiB < 19456 || cfg.Auth.ArgonTime < 2 {
		s.Log.Warn("argon2id parameters are below the OWASP minimum (m=19456 KiB, t=2)",
			"m", cfg.Auth.ArgonMemoryKiB, "t", cfg.Auth.ArgonTime)
	}
	go s.janitor()
	return s
}

// Limits are the limits in force now.
func (s *Service) Limits() *config.Limits { return s.limits.Load() }

// Reload applies new limits.
func (s *Service) Reload(l config.Limits) {
	s.limits.Store(&l)
	s.sends.setRate(l.MessagesPerSecond, l.MessageBurst)
	s.typing.setRate(l.TypingPerSecond, l.TypingPerSecond)
	s.updates.setRate(l.MessagesPerSecond, l.MessageBurst)
	s.creations.setRate(creationRate(l))
	s.searches.setRate(l)
	s.admission.setRate(l)
}

// Close stops the janitor.
func (s *Service) Close() { s.stopOnce.Do(func() { close(s.stop); s.presence.close() }) }

func (s *Service) janitor() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.Now()
			s.failures.sweep(now)
			s.signups.sweep(now)
			s.sends.sweep(now)
			s.typing.sweep(now)
			s.updates.sweep(now)
			s.creations.sweep(now)
			s.searches.perUser.sweep(now)
			s.admission.sweep(now)
			s.presence.sweep(now)
		}
	}
}

// creationRate is the group creations a user may make a second, and at
// once: a tenth of the messages and a quarter of the burst, at least one
// of each (with the defaults, 1 a second, bursts of 5).
func creationRate(l config.Limits) (perSecond, burst int) {
	return max(1, l.MessagesPerSecond/10), max(1, l.MessageBurst/4)
}

// account returns a user's account, cached: sends check bans and mutes on
// every message, and the store need not be asked each time.
func (s *Service) account(ctx context.Context, id int64) (model.Account, error) {
	if a, ok := s.users.Load(id); ok {
		return a.(model.Account), nil
	}
	gen := s.accountGen.Load()
	a, err := s.Store.UserByID(ctx, id)
	if err != nil {
		return a, err
	}
	s.accountMu.Lock()
	if s.accountGen.Load() == gen { // else it may have changed after our read: ask again next time
		if _, had := s.users.Swap(id, a); !had {
			s.cached++
		}
		if s.cached > accountCache {
			s.users.Clear()
			s.users.Store(id, a)
			s.cached = 1
		}
	}
	s.accountMu.Unlock()
	return a, nil
}

// accountCache is how many accounts the service keeps copies of (about
// 250 bytes each).
var accountCache = 65536

// allowUpdate rate-limits a change that pushes to other users.
func (s *Service) allowUpdate(user int64) error {
	if wait, ok := s.updates.allow(user, s.Now()); !ok {
		return node.RateLimited(wait, "too many changes; slow down")
	}
	return nil
}

// push encodes body once and returns the push frame PATH;BODY.
func push(path string, body any) []byte {
	b, err := json.Marshal(body)
	if err != nil {
		panic("service: push body does not encode: " + err.Error()) // our own types always encode
	}
	return wire.AppendFrame(make([]byte, 0, len(path)+1+len(b)), path, "", b)
}

// messagePush encodes an im/message push without reflection: it is built
// for every message, once per view.
func messagePush(msg *model.Message) []byte { return wholeMessagePush("im/message", msg) }

// wholeMessagePush is the push frame PATH;Message (im/message, im/edited).
func wholeMessagePush(path string, msg *model.Message) []byte {
	return msg.AppendJSON(wire.AppendHead(make([]byte, 0, 256+len(msg.Text)), path, ""))
}

// Stats is what admin/stats and `dce websocket status` report.
type Stats struct {
	Connections int    `json:"connections"`
	Online      int    `json:"online"`
	Messages    int64  `json:"messages"`
	Sent        uint64 `json:"sent"`
	UptimeS     int64  `json:"uptime_s"`
}

// Sent is how many messages this process has accepted since it started.
func (s *Service) Sent() uint64 { return s.sent.Load() }

// Stats reads the counters.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	hs := s.Hub.Stats()
	n, err := s.Store.CountMessages(ctx)
	return Stats{Connections: hs.Connections, Online: hs.Online, Messages: n, Sent: s.sent.Load(),
		UptimeS: int64(s.Now().Sub(s.started).Seconds())}, err
}
