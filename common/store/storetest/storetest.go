// Package storetest is the conformance suite every store engine runs (the
// embedded SQLite one, and PostgreSQL): one set of behaviour tests, so the
// engines cannot drift apart. An engine's test calls
//
//	storetest.Run(t, func(t *testing.T) storetest.Engine { ... })
//
// where open returns a fresh, empty store and arranges for it to be closed
// when t ends (closing it twice must be harmless). Only tests import this
// package.
package storetest

import (
	"context"
	"testing"
	"time"

	"dce/common/model"
)

// Engine is the store as the service layer uses it.
type Engine interface {
	Close() error

	CreateUser(ctx context.Context, nickname, passwordHash, brief string) (model.Account, error)
	UserByNickname(ctx context.Context, nickname string) (model.Account, error)
	UserByID(ctx context.Context, id int64) (model.Account, error)
	UsersByID(ctx context.Context, ids []int64) (map[int64]model.User, error)
	SetPasswordHash(ctx context.Context, id int64, hash string) error
	UpdateProfile(ctx context.Context, id int64, brief, avatar string) (model.User, error)
	SetAdmin(ctx context.Context, id int64, admin bool) error
	SetBannedUntil(ctx context.Context, id int64, until time.Time) error
	SetMutedUntil(ctx context.Context, id int64, until time.Time) error
	CountUsers(ctx context.Context) (int64, error)

	SaveSession(ctx context.Context, sidHash string, userID int64, created, expires time.Time) error
	LoadSession(ctx context.Context, sidHash string) (userID int64, created, expires time.Time, err error)
	DeleteSession(ctx context.Context, sidHash string) error
	DeleteUserSessions(ctx context.Context, userID int64) ([]string, error)
	DeleteExpiredSessions(ctx context.Context) (int64, error)

	Append(ctx context.Context, m model.NewMessage) (msg model.Message, duplicate bool, err error)
	// AppendLater queues the message and returns a wait for Append's
	// result; messages queued in turn by one goroutine are stored in order.
	// published, when not nil, runs after the commit, for a message stored
	// anew only, before the wait returns; the published calls of all
	// writes come one at a time, on one goroutine, in increasing seq order
	// (service.Store states the contract; AppendPublishedInSeqOrder
	// tests it).
	AppendLater(ctx context.Context, m model.NewMessage, published func(model.Message)) func() (model.Message, bool, error)
	Load(ctx context.Context, key model.ConvKey, before, after int64, limit int) (msgs []model.Message, more bool, err error)
	Sync(ctx context.Context, userID, since int64, limit int) (msgs []model.Message, latest int64, more bool, err error)
	Conversations(ctx context.Context, userID int64) ([]model.Conversation, error)
	MarkRead(ctx context.Context, userID int64, key model.ConvKey, id int64) error
	LastSeq(ctx context.Context) (int64, error)

	// MessageFor, EditLater, DeleteLater and Search: service.Store states
	// their contracts; edits.go and search.go test them.
	MessageFor(ctx context.Context, reader, id int64) (model.Message, error)
	EditLater(ctx context.Context, id int64, text string, published func(model.Message)) func() (model.Message, error)
	DeleteLater(ctx context.Context, id int64, published func(model.Message)) func() (msg model.Message, already bool, err error)
	Search(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) (msgs []model.Message, more bool, next int64, err error)
	CountMessages(ctx context.Context) (int64, error)
	IntegrityCheck(ctx context.Context) (string, error)

	// Group writes; service.Store states their contract (the
	// after-commit action as AppendLater's published).
	Groups(ctx context.Context) ([]model.GroupMembers, error)
	CreateGroup(ctx context.Context, g model.NewGroup, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error)
	AddGroupMember(ctx context.Context, group, user, by int64, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error)
	RemoveGroupMember(ctx context.Context, group, user, by int64, committed func(model.GroupChange)) (model.GroupChange, error)
	RenameGroup(ctx context.Context, group int64, name string, by int64, committed func(model.GroupChange)) (model.GroupChange, error)
}

// Run runs the whole suite, each test against a fresh store from open.
func Run(t *testing.T, open func(t *testing.T) Engine) {
	tests := []struct {
		name string
		test func(t *testing.T, db Engine)
	}{
		{"CreateUserAndLookUp", testCreateUserAndLookUp},
		{"NicknameFoldConflict", testNicknameFoldConflict},
		{"ConcurrentCreateUserOneWins", testConcurrentCreateUserOneWins},
		{"UsersByID", testUsersByID},
		{"UserUpdates", testUserUpdates},
		{"UserUpdatesOfMissingUser", testUserUpdatesOfMissingUser},
		{"SessionRoundTrip", testSessionRoundTrip},
		{"SessionExpiry", testSessionExpiry},
		{"SessionDelete", testSessionDelete},
		{"SessionOfMissingUser", testSessionOfMissingUser},
		{"AppendReturnsTheMessage", testAppendReturnsTheMessage},
		{"AppendOrdering", testAppendOrdering},
		{"AppendLaterKeepsOrder", testAppendLaterKeepsOrder},
		{"AppendPublishedInSeqOrder", testAppendPublishedInSeqOrder},
		{"AppendConcurrentOrdering", testAppendConcurrentOrdering},
		{"AppendIdempotent", testAppendIdempotent},
		{"AppendSameCIDRace", testAppendSameCIDRace},
		{"AppendMissingSender", testAppendMissingSender},
		{"LoadPaging", testLoadPaging},
		{"LoadLimits", testLoadLimits},
		{"SyncVisibility", testSyncVisibility},
		{"SyncPaging", testSyncPaging},
		{"SyncNeverSkipsUnderConcurrentWrites", testSyncNeverSkips},
		{"Conversations", testConversations},
		{"MarkReadMonotonic", testMarkReadMonotonic},
		{"CloseRefusesWrites", testCloseRefusesWrites},
		{"CloseWithWritesInFlight", testCloseWithWritesInFlight},
		{"IntegrityCheck", testIntegrityCheck},
		{"MessageForReadability", testMessageForReadability},
		{"EditAndDelete", testEditAndDelete},
		{"EditsAndDeletesPublishedInSeqOrder", testChangesPublishedInSeqOrder},
		{"SearchScriptsAndCase", testSearchScriptsAndCase},
		{"SearchReadableOnly", testSearchReadableOnly},
		{"SearchPaging", testSearchPaging},
		{"SearchShortQueries", testSearchShortQueries},
		{"SearchFollowsEditsAndDeletes", testSearchFollowsEditsAndDeletes},
		{"GroupCreate", testGroupCreate},
		{"GroupMembership", testGroupMembership},
		{"GroupReading", testGroupReading},
		{"GroupCommittedInOrder", testGroupCommittedInOrder},
		{"GroupIDNotReused", testGroupIDNotReused},
		{"GroupCreateMany", testGroupCreateMany},
		{"GroupWritesCheckWhoAsks", testGroupWritesCheckWhoAsks},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			test.test(t, open(t))
		})
	}
}

// MustCreateUser creates a user with a placeholder hash and fails the test
// if it cannot.
func MustCreateUser(tb testing.TB, db Engine, nickname string) model.Account {
	tb.Helper()
	account, err := db.CreateUser(context.Background(), nickname, "hash-of-"+nickname, "brief of "+nickname)
	if err != nil {
		tb.Fatalf("CreateUser(%q): %v", nickname, err)
	}
	return account
}

// LobbyMessage is a text message from sender to the lobby.
func LobbyMessage(sender int64, text, cid string) model.NewMessage {
	return model.NewMessage{Key: model.LobbyKey, Sender: sender, To: model.Lobby, Kind: model.KindText,
		Text: text, CID: cid, TS: time.Now().UnixMilli()}
}

// DirectMessage is a private text message from sender to recipient.
func DirectMessage(sender, recipient int64, text, cid string) model.NewMessage {
	to := model.Address{Kind: model.AddrUser, ID: recipient}
	return model.NewMessage{Key: to.Key(sender), Sender: sender, To: to.String(), ToUser: recipient,
		Kind: model.KindText, Text: text, CID: cid, TS: time.Now().UnixMilli()}
}

// MustAppend appends m and fails the test if it cannot or if it was a
// duplicate.
func MustAppend(tb testing.TB, db Engine, m model.NewMessage) model.Message {
	tb.Helper()
	msg, duplicate, err := db.Append(context.Background(), m)
	if err != nil {
		tb.Fatalf("Append(%+v): %v", m, err)
	}
	if duplicate {
		tb.Fatalf("Append(%+v): duplicate, want a new message", m)
	}
	return msg
}

// sameInstant reports whether two times are equal to the millisecond, the
// precision every engine keeps.
func sameInstant(a, b time.Time) bool {
	difference := a.Sub(b)
	return difference > -time.Millisecond && difference < time.Millisecond
}

func ids(msgs []model.Message) []int64 {
	list := make([]int64, len(msgs))
	for i, msg := range msgs {
		list[i] = msg.ID
	}
	return list
}
