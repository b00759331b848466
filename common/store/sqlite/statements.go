package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// messageColumns selects a model.Message (see scanMessage) from messages m
// joined with its sender u.
const messageColumns = `m.id, m.seq, m.conv_key, m.sender, u.nickname, u.brief, u.avatar, u.admin,
	m.to_addr, m.to_user, m.kind, m.text, COALESCE(m.cid, ''), m.ts, m.edited, m.deleted`

// readableBy is the condition "user ?2 may read message m": the lobby,
// their private conversations, and the groups they are in now (a list
// SQLite builds once per query from group_members_user).
const readableBy = `(m.conv_key = 'room:lobby' OR (m.to_user <> 0 AND (m.sender = ?2 OR m.to_user = ?2))
	OR m.conv_key IN (SELECT 'group:' || group_id FROM group_members WHERE user_id = ?2))`

// The statements on the hot paths, prepared once. Writer statements are
// prepared on the writer's single connection and bound to each batch's
// transaction once (inTx); reader statements are prepared lazily on each
// pooled connection by database/sql.
const (
	insertMessageSQL = `INSERT INTO messages (seq, conv_key, sender, to_addr, to_user, kind, text, file_id, cid, ts)
		VALUES (?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?)
		ON CONFLICT (sender, cid) WHERE cid IS NOT NULL DO NOTHING`

	// insertDirectSQL lists a private conversation for both its parties
	// (noteDirect).
	insertDirectSQL = `INSERT OR IGNORE INTO direct_conversations (user_id, conv_key) VALUES (?1, ?3), (?2, ?3)`

	messageByCIDSQL = `SELECT id, seq, conv_key, to_addr, to_user, kind, text, ts, edited, deleted
		FROM messages WHERE sender = ? AND cid = ?`

	// ?1 conv_key, ?2 below this id, ?3 above this id, ?4 limit.
	loadNewestSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
		WHERE m.conv_key = ?1 AND m.id < ?2 AND m.id > ?3 ORDER BY m.id DESC LIMIT ?4`
	loadOldestSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
		WHERE m.conv_key = ?1 AND m.id < ?2 AND m.id > ?3 ORDER BY m.id ASC LIMIT ?4`

	// ?1 since, ?2 user, ?3 limit.
	syncSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
		WHERE m.seq > ?1 AND ` + readableBy + ` ORDER BY m.seq LIMIT ?3`

	lastSeqSQL = `SELECT COALESCE(MAX(seq), 0) FROM messages`
)

// statements holds the prepared statements.
type statements struct {
	insertMessage *sql.Stmt // writer
	insertDirect  *sql.Stmt // writer
	messageByCID  *sql.Stmt // writer
	writerLastSeq *sql.Stmt // writer
	loadNewest    *sql.Stmt // reader
	loadOldest    *sql.Stmt // reader
	sync          *sql.Stmt // reader
	lastSeq       *sql.Stmt // reader
}

func (s *statements) prepare(ctx context.Context, writer, reader *sql.DB) error {
	for _, p := range []struct {
		into  **sql.Stmt
		db    *sql.DB
		query string
	}{
		{&s.insertMessage, writer, insertMessageSQL},
		{&s.insertDirect, writer, insertDirectSQL},
		{&s.messageByCID, writer, messageByCIDSQL},
		{&s.writerLastSeq, writer, lastSeqSQL},
		{&s.loadNewest, reader, loadNewestSQL},
		{&s.loadOldest, reader, loadOldestSQL},
		{&s.sync, reader, syncSQL},
		{&s.lastSeq, reader, lastSeqSQL},
	} {
		statement, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("sqlite: preparing %q: %w", p.query, err)
		}
		*p.into = statement
	}
	return nil
}

func (s *statements) close() error {
	var err error
	for _, statement := range []*sql.Stmt{s.insertMessage, s.insertDirect, s.messageByCID, s.writerLastSeq, s.loadNewest, s.loadOldest, s.sync, s.lastSeq} {
		if statement != nil {
			err = errors.Join(err, statement.Close())
		}
	}
	return err
}

// boundStatements caches the writer statements bound to one transaction:
// tx.Stmt costs a few allocations and a lock each call, and the writer
// would pay that for every message. Owned by the writer goroutine.
type boundStatements struct {
	tx    *sql.Tx
	bound map[*sql.Stmt]*sql.Stmt
}

// inTx returns statement bound to tx, binding it once per transaction.
// Call it only from a write closure, with the tx it was given.
func (db *DB) inTx(tx *sql.Tx, statement *sql.Stmt) *sql.Stmt {
	if db.boundStatements.tx != tx {
		db.boundStatements = boundStatements{tx: tx, bound: make(map[*sql.Stmt]*sql.Stmt, 2)}
	}
	bound, ok := db.boundStatements.bound[statement]
	if !ok {
		bound = tx.Stmt(statement)
		db.boundStatements.bound[statement] = bound
	}
	return bound
}
