package sqlite

import (
	"context"
	"database/sql"
	"math"
	"slices"

	"dce/common/model"
	"dce/common/store"
)

// Limits of Load and Sync.
const (
	DefaultLoadLimit = 50
	MaxLoadLimit     = 100
	DefaultSyncLimit = 500
	MaxSyncLimit     = 1000
)

// Append stores a message and returns it once the commit that holds it is
// durable. If the sender already stored a message with the same non-empty
// CID, nothing is stored and that message is returned with duplicate=true
// (this includes a retry in the same group commit). The message's From
// carries only the sender's id; Conv is the canonical key. An unknown
// sender gives store.ErrNotFound. If ctx ends while waiting, Append returns
// ctx.Err() and the message may or may not be stored.
func (db *DB) Append(ctx context.Context, m model.NewMessage) (msg model.Message, duplicate bool, err error) {
	return db.AppendLater(ctx, m, nil)()
}

// AppendLater is Append in two steps: it queues the message for the writer
// now and returns a function that waits for the commit and returns what
// Append would. Messages queued one after another by one goroutine are
// stored in that order, so a connection can send the next message while
// the previous one is committing.
//
// published, if not nil, is called with the message (as Append returns
// it) once the commit that holds it is durable, if it was stored: not for
// a duplicate cid, an unknown sender or a failed write. It is called on
// the store's publisher goroutine, in seq order with every other change's
// (see writer.go), before the returned function returns; also when ctx
// ends first, if the message was stored all the same.
func (db *DB) AppendLater(ctx context.Context, m model.NewMessage, published func(model.Message)) func() (model.Message, bool, error) {
	a := &appending{db: db, m: m, published: published}
	a.request = writeRequest{ctx: ctx, write: a, done: make(chan error, 1)}
	a.err = db.submit(&a.request)
	return a.wait
}

// appending is one AppendLater: the write, and its outcome. The outcome is
// read only once the request has been answered: if ctx ends first, the
// writer may still be running it.
type appending struct {
	request   writeRequest
	db        *DB
	m         model.NewMessage
	published func(model.Message)
	err       error // from submit

	stored                     model.Message
	isDuplicate, missingSender bool
}

func (a *appending) apply(tx *sql.Tx) error {
	db, m := a.db, &a.m
	a.stored = model.Message{
		Seq: db.takeSeq(), Key: m.Key, Conv: string(m.Key), From: model.User{ID: m.Sender},
		To: m.To, ToUser: m.ToUser, Kind: m.Kind, Text: m.Text, CID: m.CID, TS: m.TS,
	}
	a.isDuplicate, a.missingSender = false, false
	// Exec, not RETURNING: RETURNING buffers its rows in a temporary
	// table, which costs the single writer measurably more per row.
	result, err := db.inTx(tx, db.statements.insertMessage).Exec(a.stored.Seq, string(m.Key), m.Sender, m.To, m.ToUser,
		m.Kind, m.Text, m.FileID, m.CID, m.TS)
	if isForeignKeyViolation(err) {
		db.nextSeq = a.stored.Seq // the seq goes back unused
		a.missingSender = true    // the statement was undone alone; the transaction goes on
		return nil
	}
	if err != nil {
		return err
	}
	inserted, err := result.RowsAffected()
	if err != nil {
		return err
	}
	if inserted == 1 {
		if a.stored.ID, err = result.LastInsertId(); err != nil {
			return err
		}
		if m.ToUser != 0 {
			return db.noteDirect(tx, m.Sender, m.ToUser, string(m.Key))
		}
		return nil
	}
	// ON CONFLICT DO NOTHING: (sender, cid) is taken. The seq goes back
	// unused; the stored message is the answer.
	db.nextSeq = a.stored.Seq
	a.isDuplicate = true
	a.stored = model.Message{From: model.User{ID: m.Sender}, CID: m.CID}
	var key string
	err = db.inTx(tx, db.statements.messageByCID).QueryRow(m.Sender, m.CID).Scan(&a.stored.ID, &a.stored.Seq, &key,
		&a.stored.To, &a.stored.ToUser, &a.stored.Kind, &a.stored.Text, &a.stored.TS, &a.stored.Edited, &a.stored.Deleted)
	a.stored.Key, a.stored.Conv = model.ConvKey(key), key
	return err
}

// committed publishes a message stored anew.
func (a *appending) committed() {
	if a.published != nil && !a.isDuplicate && !a.missingSender {
		a.published(a.stored)
	}
}

// wait is AppendLater's returned function.
func (a *appending) wait() (model.Message, bool, error) {
	err := a.err
	if err == nil {
		err = a.db.wait(&a.request)
	}
	if err != nil {
		return model.Message{}, false, err
	}
	if a.missingSender {
		return model.Message{}, false, store.ErrNotFound
	}
	return a.stored, a.isDuplicate, nil
}

// Load returns messages of the conversation key, oldest first, at most
// limit (clamped to 1..MaxLoadLimit; DefaultLoadLimit when 0): with
// after > 0 the oldest ids above after, otherwise the newest ids below
// before (when before > 0) or the newest of all. Both may be given: the
// oldest ids between them. more reports whether further rows exist in the
// direction read (older without after, newer with it).
func (db *DB) Load(ctx context.Context, key model.ConvKey, before, after int64, limit int) (msgs []model.Message, more bool, err error) {
	if err := db.checkOpen(); err != nil {
		return nil, false, err
	}
	limit = clampLimit(limit, DefaultLoadLimit, MaxLoadLimit)
	if before <= 0 {
		before = math.MaxInt64
	}
	if after < 0 {
		after = 0
	}
	statement := db.statements.loadNewest
	if after > 0 {
		statement = db.statements.loadOldest
	}
	rows, err := statement.QueryContext(ctx, string(key), before, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	msgs, err = scanMessages(rows, limit)
	if err != nil {
		return nil, false, err
	}
	more = len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	if after == 0 {
		slices.Reverse(msgs) // read newest first; returned oldest first
	}
	return msgs, more, nil
}

// Sync returns every message userID may read whose seq is above since, in
// seq order, at most limit (clamped to 1..MaxSyncLimit; DefaultSyncLimit
// when 0). latest is the seq to pass as since next time: the last row's
// when more is true, else the store's current last seq. Both are read
// from one snapshot, so no change between them is skipped.
func (db *DB) Sync(ctx context.Context, userID, since int64, limit int) (msgs []model.Message, latest int64, more bool, err error) {
	if err := db.checkOpen(); err != nil {
		return nil, 0, false, err
	}
	limit = clampLimit(limit, DefaultSyncLimit, MaxSyncLimit)
	tx, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, false, err
	}
	defer tx.Rollback()
	rows, err := tx.StmtContext(ctx, db.statements.sync).QueryContext(ctx, since, userID, limit+1)
	if err != nil {
		return nil, 0, false, err
	}
	msgs, err = scanMessages(rows, limit)
	if err != nil {
		return nil, 0, false, err
	}
	if len(msgs) > limit {
		msgs = msgs[:limit]
		return msgs, msgs[limit-1].Seq, true, nil
	}
	if err := tx.StmtContext(ctx, db.statements.lastSeq).QueryRowContext(ctx).Scan(&latest); err != nil {
		return nil, 0, false, err
	}
	return msgs, latest, false, nil
}

// conversationsSQL lists the conversations ?1 can see that have messages:
// the lobby, each private conversation they sent to or received from, and
// each group they are in, with the last message and the count of others'
// messages after their read mark, newest first.
const conversationsSQL = `
WITH keys (conv_key) AS (
	SELECT 'room:lobby'
	UNION ALL SELECT conv_key FROM direct_conversations WHERE user_id = ?1
	UNION ALL SELECT 'group:' || group_id FROM group_members WHERE user_id = ?1
), lasts (conv_key, last_id) AS (
	SELECT conv_key, (SELECT MAX(id) FROM messages WHERE messages.conv_key = keys.conv_key) FROM keys
)
SELECT ` + messageColumns + `,
	(SELECT COUNT(*) FROM messages c
		WHERE c.conv_key = lasts.conv_key AND c.id > COALESCE(r.last_read_id, 0) AND c.sender <> ?1)
FROM lasts
JOIN messages m ON m.id = lasts.last_id
JOIN users u ON u.id = m.sender
LEFT JOIN read_marks r ON r.user_id = ?1 AND r.conv_key = lasts.conv_key
ORDER BY m.id DESC`

// Conversations lists the conversations userID can see that have messages,
// each with its last message and unread count (messages from others above
// the user's read mark), newest last message first. Conv and Last.Conv
// are canonical keys.
func (db *DB) Conversations(ctx context.Context, userID int64) ([]model.Conversation, error) {
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, conversationsSQL, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var conversations []model.Conversation
	for rows.Next() {
		var conversation model.Conversation
		if conversation.Last, err = scanMessage(rows, &conversation.Unread); err != nil {
			return nil, err
		}
		conversation.Conv = conversation.Last.Conv
		conversations = append(conversations, conversation)
	}
	return conversations, rows.Err()
}

// MarkRead records that userID has read conversation key up to message id.
// The mark only moves forward, and never past the conversation's last
// message. store.ErrNotFound if there is no such user.
func (db *DB) MarkRead(ctx context.Context, userID int64, key model.ConvKey, id int64) error {
	missingUser := false
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO read_marks (user_id, conv_key, last_read_id)
			VALUES (?1, ?2, MIN(?3, (SELECT COALESCE(MAX(id), 0) FROM messages WHERE conv_key = ?2)))
			ON CONFLICT (user_id, conv_key) DO UPDATE
			SET last_read_id = MAX(last_read_id, excluded.last_read_id)`, userID, string(key), id)
		missingUser = isForeignKeyViolation(err)
		if missingUser {
			return nil
		}
		return err
	})
	if err == nil && missingUser {
		return store.ErrNotFound
	}
	return err
}

// LastSeq returns the highest committed change sequence, 0 when empty.
func (db *DB) LastSeq(ctx context.Context) (int64, error) {
	if err := db.checkOpen(); err != nil {
		return 0, err
	}
	var seq int64
	err := db.statements.lastSeq.QueryRowContext(ctx).Scan(&seq)
	return seq, err
}

// CountMessages returns how many messages are stored, deleted ones
// included. It counts an index, so it costs time in proportion.
func (db *DB) CountMessages(ctx context.Context) (int64, error) {
	if err := db.checkOpen(); err != nil {
		return 0, err
	}
	var count int64
	err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages`).Scan(&count)
	return count, err
}

func clampLimit(limit, defaultLimit, maxLimit int) int {
	if limit == 0 {
		return defaultLimit
	}
	return min(max(limit, 1), maxLimit)
}

// scanMessages reads up to limit+1 messages and closes rows.
func scanMessages(rows *sql.Rows, limit int) ([]model.Message, error) {
	defer rows.Close()
	msgs := make([]model.Message, 0, min(limit+1, 64))
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, rows.Err()
}

// scanMessage reads the messageColumns of one row, then any extra columns
// into extra.
func scanMessage(rows *sql.Rows, extra ...any) (model.Message, error) {
	var (
		msg model.Message
		key string
	)
	err := rows.Scan(append([]any{&msg.ID, &msg.Seq, &key, &msg.From.ID, &msg.From.Nickname, &msg.From.Brief,
		&msg.From.Avatar, &msg.From.Admin, &msg.To, &msg.ToUser, &msg.Kind, &msg.Text, &msg.CID, &msg.TS,
		&msg.Edited, &msg.Deleted}, extra...)...)
	msg.Key, msg.Conv = model.ConvKey(key), key
	return msg, err
}
