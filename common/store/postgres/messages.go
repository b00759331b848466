package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"dce/common/model"
	"dce/common/store"
)

// Limits of Load and Sync, the embedded engine's.
const (
	DefaultLoadLimit = 50
	MaxLoadLimit     = 100
	DefaultSyncLimit = 500
	MaxSyncLimit     = 1000
)

// messageColumns selects a model.Message (scanMessage) from messages m
// joined with its sender u.
const messageColumns = `m.id, m.seq, m.conv_key, m.sender, u.nickname, u.brief, u.avatar, u.admin,
	m.to_addr, m.to_user, m.kind, m.text, COALESCE(m.cid, ''), m.ts, m.edited, m.deleted`

// readableBy is the condition "user $n may read message m": the lobby,
// their private conversations, and the groups they are in now.
func readableBy(n int) string {
	p := fmt.Sprintf("$%d", n)
	return `(m.conv_key = 'room:lobby' OR (m.to_user <> 0 AND (m.sender = ` + p + ` OR m.to_user = ` + p + `))
	OR m.conv_key IN (SELECT 'group:' || group_id FROM group_members WHERE user_id = ` + p + `))`
}

const (
	// Inserted only if the sender exists, and not if (sender, cid) is
	// taken: both expected outcomes return no row instead of an error,
	// which would abort the batch's transaction.
	insertMessageSQL = `INSERT INTO messages (seq, conv_key, sender, to_addr, to_user, kind, text, fold, file_id, cid, ts)
		SELECT $1::bigint, $2::text, $3::bigint, $4::text, $5::bigint, $6::text, $7::text, $8::text,
			NULLIF($9::text, ''), NULLIF($10::text, ''), $11::bigint
		WHERE EXISTS (SELECT 1 FROM users WHERE id = $3::bigint)
		ON CONFLICT (sender, cid) WHERE cid IS NOT NULL DO NOTHING
		RETURNING id`

	// insertMessageSQL for a batch, from arrays, in seq order (so ids grow
	// with seqs); RETURNING says which rows went in.
	insertMessagesSQL = `INSERT INTO messages (seq, conv_key, sender, to_addr, to_user, kind, text, fold, file_id, cid, ts)
		SELECT r.seq, r.conv_key, r.sender, r.to_addr, r.to_user, r.kind, r.text, r.fold,
			NULLIF(r.file_id, ''), NULLIF(r.cid, ''), r.ts
		FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::bigint[]) AS r (seq, conv_key, sender, to_addr, to_user, kind, text, fold, file_id, cid, ts)
		WHERE EXISTS (SELECT 1 FROM users WHERE id = r.sender)
		ORDER BY r.seq
		ON CONFLICT (sender, cid) WHERE cid IS NOT NULL DO NOTHING
		RETURNING id, seq`

	messageByCIDSQL = `SELECT id, seq, conv_key, to_addr, to_user, kind, text, ts, edited, deleted
		FROM messages WHERE sender = $1 AND cid = $2`

	loadNewestSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
		WHERE m.conv_key = $1 AND m.id < $2 AND m.id > $3 ORDER BY m.id DESC LIMIT $4`
	loadOldestSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
		WHERE m.conv_key = $1 AND m.id < $2 AND m.id > $3 ORDER BY m.id ASC LIMIT $4`

	lastSeqSQL = `SELECT v FROM seq_counter`
)

var syncSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
	WHERE m.seq > $1 AND ` + readableBy(2) + ` ORDER BY m.seq LIMIT $3`

// Append stores a message and returns it once the commit that holds it is
// durable; the contract is the embedded engine's (sqlite.DB.Append).
func (db *DB) Append(ctx context.Context, m model.NewMessage) (msg model.Message, duplicate bool, err error) {
	return db.AppendLater(ctx, m, nil)()
}

// AppendLater is Append in two steps, with published as its after-commit
// action (service.Store states the contract; writer.go keeps it across
// instances).
func (db *DB) AppendLater(ctx context.Context, m model.NewMessage, published func(model.Message)) func() (model.Message, bool, error) {
	a := &appending{db: db, m: m, published: published, fold: foldCase(m.Text)}
	a.request = writeRequest{ctx: ctx, write: a, done: make(chan error, 1)}
	a.err = db.submit(&a.request)
	return a.wait
}

type appending struct {
	request   writeRequest
	db        *DB
	m         model.NewMessage
	fold      string
	published func(model.Message)
	err       error

	stored                     model.Message
	isDuplicate, missingSender bool
}

func (a *appending) takesSeqs() bool { return true }

func (a *appending) apply(t *txn) error {
	m := &a.m
	a.isDuplicate, a.missingSender = false, false
	seq, err := t.reserveSeq()
	if err != nil {
		return err
	}
	a.stored = model.Message{
		Seq: seq, Key: m.Key, Conv: string(m.Key), From: model.User{ID: m.Sender},
		To: m.To, ToUser: m.ToUser, Kind: m.Kind, Text: m.Text, CID: m.CID, TS: m.TS,
	}
	err = t.tx.QueryRow(t.ctx, insertMessageSQL, seq, string(m.Key), m.Sender, m.To, m.ToUser, m.Kind, m.Text, a.fold,
		m.FileID, m.CID, m.TS).Scan(&a.stored.ID)
	if err == nil {
		t.logChange(seq, store.ChangeMessage, a.stored.ID, nil)
		if m.ToUser != 0 {
			return t.noteDirect(m.Sender, m.ToUser, string(m.Key))
		}
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	t.giveBack(seq)
	if m.CID == "" {
		a.missingSender = true
		return nil
	}
	a.stored = model.Message{From: model.User{ID: m.Sender}, CID: m.CID}
	var key string
	err = t.tx.QueryRow(t.ctx, messageByCIDSQL, m.Sender, m.CID).Scan(&a.stored.ID, &a.stored.Seq, &key,
		&a.stored.To, &a.stored.ToUser, &a.stored.Kind, &a.stored.Text, &a.stored.TS, &a.stored.Edited, &a.stored.Deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		a.stored = model.Message{}
		a.missingSender = true
		return nil
	}
	a.isDuplicate = err == nil
	a.stored.Key, a.stored.Conv = model.ConvKey(key), key
	return err
}

// appendRun stores the live appends of run with one statement: each takes
// its seq in turn and all rows go in from arrays (one parse, one plan, one
// round trip for the batch). An append that stores nothing (a duplicate
// cid, an unknown sender) would leave its seq a gap among the others', so
// appendRun then fails, and the batch runs again one write at a time
// (writer.go), where such an append gives its seq back.
func (t *txn) appendRun(run []*writeRequest) error {
	var (
		live                           []*appending
		seqs, senders, toUsers, tss    []int64
		keys, tos, kinds, texts, folds []string
		files, cids                    []string
	)
	for _, request := range run {
		if request.err != nil {
			continue
		}
		a := request.write.(*appending)
		m := &a.m
		a.isDuplicate, a.missingSender = false, false
		seq, err := t.reserveSeq()
		if err != nil {
			return err
		}
		a.stored = model.Message{
			Seq: seq, Key: m.Key, Conv: string(m.Key), From: model.User{ID: m.Sender},
			To: m.To, ToUser: m.ToUser, Kind: m.Kind, Text: m.Text, CID: m.CID, TS: m.TS,
		}
		live = append(live, a)
		seqs, senders, toUsers, tss = append(seqs, seq), append(senders, m.Sender), append(toUsers, m.ToUser), append(tss, m.TS)
		keys, tos, kinds = append(keys, string(m.Key)), append(tos, m.To), append(kinds, m.Kind)
		texts, folds, files, cids = append(texts, m.Text), append(folds, a.fold), append(files, m.FileID), append(cids, m.CID)
	}
	if len(live) == 0 {
		return nil
	}
	rows, err := t.tx.Query(t.ctx, insertMessagesSQL, seqs, keys, senders, tos, toUsers, kinds, texts, folds, files, cids, tss)
	if err != nil {
		return err
	}
	first := live[0].stored.Seq
	stored := 0
	for rows.Next() {
		var id, seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return err
		}
		if i := seq - first; i >= 0 && i < int64(len(live)) {
			live[i].stored.ID = id
			stored++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if stored < len(live) {
		return errBatchRetry
	}
	for _, a := range live {
		t.logChange(a.stored.Seq, store.ChangeMessage, a.stored.ID, nil)
		if a.m.ToUser != 0 {
			if err := t.noteDirect(a.m.Sender, a.m.ToUser, string(a.m.Key)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *appending) committed() {
	if a.published != nil && !a.isDuplicate && !a.missingSender {
		a.published(a.stored)
	}
}

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

// directPair is one row of direct_conversations.
type directPair struct {
	user int64
	conv string
}

const maxDirectKnown = 1 << 16

// noteDirect lists a private conversation for both its parties unless the
// instance knows the rows are there (they are never removed).
func (t *txn) noteDirect(sender, to int64, conv string) error {
	db := t.db
	db.directMu.Lock()
	_, senderKnown := db.directKnown[directPair{sender, conv}]
	_, toKnown := db.directKnown[directPair{to, conv}]
	db.directMu.Unlock()
	if senderKnown && toKnown {
		return nil
	}
	if _, err := t.tx.Exec(t.ctx, `INSERT INTO direct_conversations (user_id, conv_key) VALUES ($1, $3), ($2, $3)
		ON CONFLICT DO NOTHING`, sender, to, conv); err != nil {
		return err
	}
	db.directMu.Lock()
	if db.directKnown == nil || len(db.directKnown) >= maxDirectKnown {
		db.directKnown = make(map[directPair]struct{})
	}
	for _, p := range []directPair{{sender, conv}, {to, conv}} {
		db.directKnown[p] = struct{}{}
		t.direct = append(t.direct, p)
	}
	db.directMu.Unlock()
	return nil
}

// forgetDirect forgets pairs whose rows a rollback removed.
func (db *DB) forgetDirect(pairs []directPair) {
	if len(pairs) == 0 {
		return
	}
	db.directMu.Lock()
	for _, p := range pairs {
		delete(db.directKnown, p)
	}
	db.directMu.Unlock()
}

// Load returns messages of a conversation, as the embedded engine's Load.
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
	query := loadNewestSQL
	if after > 0 {
		query = loadOldestSQL
	}
	rows, err := db.pool.Query(ctx, query, string(key), before, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	msgs, err = scanMessages(rows)
	if err != nil {
		return nil, false, err
	}
	more = len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	if after == 0 {
		slices.Reverse(msgs)
	}
	return msgs, more, nil
}

// Sync returns every message userID may read whose seq is above since, in
// seq order, as the embedded engine's Sync. The messages and latest come
// from one snapshot, which holds a prefix of the change sequence
// (writer.go), so no change is skipped.
func (db *DB) Sync(ctx context.Context, userID, since int64, limit int) (msgs []model.Message, latest int64, more bool, err error) {
	if err := db.checkOpen(); err != nil {
		return nil, 0, false, err
	}
	limit = clampLimit(limit, DefaultSyncLimit, MaxSyncLimit)
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, false, err
	}
	defer tx.Rollback(context.Background())
	rows, err := tx.Query(ctx, syncSQL, since, userID, limit+1)
	if err != nil {
		return nil, 0, false, err
	}
	msgs, err = scanMessages(rows)
	if err != nil {
		return nil, 0, false, err
	}
	if len(msgs) > limit {
		msgs = msgs[:limit]
		return msgs, msgs[limit-1].Seq, true, nil
	}
	if err := tx.QueryRow(ctx, lastSeqSQL).Scan(&latest); err != nil {
		return nil, 0, false, err
	}
	return msgs, latest, false, nil
}

var conversationsSQL = `
WITH keys (conv_key) AS (
	SELECT 'room:lobby'
	UNION ALL SELECT conv_key FROM direct_conversations WHERE user_id = $1
	UNION ALL SELECT 'group:' || group_id FROM group_members WHERE user_id = $1
), lasts (conv_key, last_id) AS (
	SELECT conv_key, (SELECT MAX(id) FROM messages WHERE messages.conv_key = keys.conv_key) FROM keys
)
SELECT ` + messageColumns + `,
	(SELECT COUNT(*) FROM messages c
		WHERE c.conv_key = lasts.conv_key AND c.id > COALESCE(r.last_read_id, 0) AND c.sender <> $1)
FROM lasts
JOIN messages m ON m.id = lasts.last_id
JOIN users u ON u.id = m.sender
LEFT JOIN read_marks r ON r.user_id = $1 AND r.conv_key = lasts.conv_key
ORDER BY m.id DESC`

// Conversations lists the conversations userID can see that have
// messages, as the embedded engine's.
func (db *DB) Conversations(ctx context.Context, userID int64) ([]model.Conversation, error) {
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, conversationsSQL, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var conversations []model.Conversation
	for rows.Next() {
		var conversation model.Conversation
		var unread int64
		if conversation.Last, err = scanMessage(rows, &unread); err != nil {
			return nil, err
		}
		conversation.Unread = int(unread)
		conversation.Conv = conversation.Last.Conv
		conversations = append(conversations, conversation)
	}
	return conversations, rows.Err()
}

// MarkRead records that userID has read conversation key up to message
// id; the mark only moves forward, never past the conversation's last
// message. store.ErrNotFound if there is no such user.
func (db *DB) MarkRead(ctx context.Context, userID int64, key model.ConvKey, id int64) error {
	missingUser := false
	err := db.write(ctx, func(t *txn) error {
		tag, err := t.tx.Exec(t.ctx, `INSERT INTO read_marks (user_id, conv_key, last_read_id)
			SELECT $1, $2, LEAST($3::bigint, (SELECT COALESCE(MAX(id), 0) FROM messages WHERE conv_key = $2))
			WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
			ON CONFLICT (user_id, conv_key) DO UPDATE
			SET last_read_id = GREATEST(read_marks.last_read_id, excluded.last_read_id)`, userID, string(key), id)
		missingUser = err == nil && tag.RowsAffected() == 0
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
	err := db.pool.QueryRow(ctx, lastSeqSQL).Scan(&seq)
	return seq, err
}

// CountMessages returns how many messages are stored, deleted ones
// included.
func (db *DB) CountMessages(ctx context.Context) (int64, error) {
	if err := db.checkOpen(); err != nil {
		return 0, err
	}
	var count int64
	err := db.pool.QueryRow(ctx, `SELECT COUNT(*) FROM messages`).Scan(&count)
	return count, err
}

func clampLimit(limit, defaultLimit, maxLimit int) int {
	if limit == 0 {
		return defaultLimit
	}
	return min(max(limit, 1), maxLimit)
}

// scanMessages reads every row of messageColumns and closes rows.
func scanMessages(rows pgx.Rows) ([]model.Message, error) {
	defer rows.Close()
	var msgs []model.Message
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, rows.Err()
}

func scanMessage(rows pgx.Rows, extra ...any) (model.Message, error) {
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

// oneMessage reads the first message of a query; store.ErrNotFound if
// there is none.
func oneMessage(rows pgx.Rows, err error) (model.Message, error) {
	if err != nil {
		return model.Message{}, err
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return model.Message{}, err
	}
	if len(msgs) == 0 {
		return model.Message{}, store.ErrNotFound
	}
	return msgs[0], nil
}

// storedGroupChange is a group change as the changes log holds it.
type storedGroupChange struct {
	Change model.GroupChange `json:"change"`
	Op     store.GroupOp     `json:"op"`
	By     int64             `json:"by"`
}

// readChanges reads the log above after (up to upTo when above 0), at
// most catchUpPage rows, with their messages as stored now; own reports
// which were written by this instance.
func (db *DB) readChanges(ctx context.Context, after, upTo int64) ([]store.Change, []bool, error) {
	if upTo <= 0 {
		upTo = math.MaxInt64
	}
	rows, err := db.pool.Query(ctx, `SELECT seq, kind, COALESCE(message_id, 0), group_change, origin = $3
		FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $4`, after, upTo, db.origin, catchUpPage)
	if err != nil {
		return nil, nil, err
	}
	var (
		changes  []store.Change
		own      []bool
		messages []int64
	)
	for rows.Next() {
		var (
			change    store.Change
			kind      int16
			messageID int64
			group     []byte
			mine      bool
		)
		if err := rows.Scan(&change.Seq, &kind, &messageID, &group, &mine); err != nil {
			rows.Close()
			return nil, nil, err
		}
		change.Kind = store.ChangeKind(kind)
		if group != nil {
			var stored storedGroupChange
			if err := json.Unmarshal(group, &stored); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("postgres: change %d: %w", change.Seq, err)
			}
			change.Group, change.GroupOp, change.By = stored.Change, stored.Op, stored.By
		} else {
			change.Message.ID = messageID
			messages = append(messages, messageID)
		}
		changes = append(changes, change)
		own = append(own, mine)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(messages) > 0 {
		rows, err := db.pool.Query(ctx, `SELECT `+messageColumns+` FROM messages m JOIN users u ON u.id = m.sender
			WHERE m.id = ANY($1)`, messages)
		if err != nil {
			return nil, nil, err
		}
		msgs, err := scanMessages(rows)
		if err != nil {
			return nil, nil, err
		}
		byID := make(map[int64]model.Message, len(msgs))
		for _, msg := range msgs {
			byID[msg.ID] = msg
		}
		for i := range changes {
			if changes[i].Kind != store.ChangeGroup {
				// The message as it is now: a later change (an edit, a
				// deletion) may have superseded this one since. It is
				// handed on with this change's seq all the same, so the
				// pushes stay in seq order and each change gives one (a
				// newer text, or none if deleted since, is what the
				// later change's push brings anyway); the later change
				// follows with its own seq.
				msg := byID[changes[i].Message.ID]
				msg.Seq = changes[i].Seq
				changes[i].Message = msg
			}
		}
	}
	return changes, own, nil
}
