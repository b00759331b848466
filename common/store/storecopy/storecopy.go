// Package storecopy moves an embedded deployment to PostgreSQL: it copies
// every user, session, message, group, member and read mark of a SQLite
// store file into an empty PostgreSQL store, keeping every id and seq, so
// that im/sync positions (seqs) and message ids clients hold stay valid.
package storecopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"dce/common/store/postgres"
	"dce/common/store/sqlite"
)

// Counts is what Copy copied, table by table.
type Counts struct {
	Users, Sessions, Messages, DirectConversations, ReadMarks, Groups, GroupMembers int64
	// LastSeq is the seq the PostgreSQL store goes on from.
	LastSeq int64
}

// Copy copies the SQLite store at fromPath into the PostgreSQL database
// toDSN. Both are first opened by their engines, so each is migrated to
// this program's schema; the PostgreSQL store must be empty (no user, no
// message, no group), else Copy refuses and writes nothing. Everything is
// written in one transaction: a copy that fails leaves the database
// empty. After it the counter and the id sequences stand past the copied
// values, and the changes log begins above the last copied seq (the
// embedded store's seqs have gaps where edits gave messages new ones).
// No server may write to the SQLite file meanwhile.
func Copy(ctx context.Context, fromPath, toDSN string) (Counts, error) {
	var counts Counts
	// Migrate both to this program's schema, then read and write them
	// directly.
	source, err := sqlite.Open(ctx, sqlite.Options{Path: fromPath, SessionSweep: -1})
	if err != nil {
		return counts, err
	}
	if err := source.Close(); err != nil {
		return counts, err
	}
	target, err := postgres.Open(ctx, postgres.Options{DSN: toDSN, SessionSweep: -1})
	if err != nil {
		return counts, err
	}
	if err := target.Close(); err != nil {
		return counts, err
	}
	path, err := filepath.Abs(fromPath)
	if err != nil {
		return counts, err
	}
	from, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro")
	if err != nil {
		return counts, err
	}
	defer from.Close()
	snapshot, err := from.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return counts, err
	}
	defer snapshot.Rollback()
	to, err := pgx.Connect(ctx, toDSN)
	if err != nil {
		return counts, err
	}
	defer to.Close(context.Background())
	err = pgx.BeginFunc(ctx, to, func(tx pgx.Tx) error {
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM messages)
			OR EXISTS (SELECT 1 FROM groups) OR (SELECT v FROM seq_counter) <> 0`).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return errors.New("storecopy: the PostgreSQL store is not empty")
		}
		for _, table := range []struct {
			name    string
			query   string
			columns []string
			convert func(row []any) error
			count   *int64
		}{
			{"users", `SELECT id, nickname, fold, password_hash, brief, avatar, admin <> 0, banned_until, muted_until, created FROM users ORDER BY id`,
				[]string{"id", "nickname", "fold", "password_hash", "brief", "avatar", "admin", "banned_until", "muted_until", "created"}, bools(6), &counts.Users},
			{"sessions", `SELECT sid_hash, user_id, created, expires FROM sessions`,
				[]string{"sid_hash", "user_id", "created", "expires"}, nil, &counts.Sessions},
			{"messages", `SELECT id, seq, conv_key, sender, to_addr, to_user, kind, text, '', file_id, cid, ts, edited <> 0, deleted <> 0 FROM messages ORDER BY id`,
				[]string{"id", "seq", "conv_key", "sender", "to_addr", "to_user", "kind", "text", "fold", "file_id", "cid", "ts", "edited", "deleted"},
				func(row []any) error {
					text, _ := row[7].(string)
					row[8] = postgres.Fold(text)
					return bools(12, 13)(row)
				}, &counts.Messages},
			{"direct_conversations", `SELECT user_id, conv_key FROM direct_conversations`,
				[]string{"user_id", "conv_key"}, nil, &counts.DirectConversations},
			{"read_marks", `SELECT user_id, conv_key, last_read_id FROM read_marks`,
				[]string{"user_id", "conv_key", "last_read_id"}, nil, &counts.ReadMarks},
			{"groups", `SELECT id, name, owner, private <> 0, members, created FROM groups ORDER BY id`,
				[]string{"id", "name", "owner", "private", "members", "created"}, bools(3), &counts.Groups},
			{"group_members", `SELECT group_id, user_id, joined, joined_at FROM group_members`,
				[]string{"group_id", "user_id", "joined", "joined_at"}, nil, &counts.GroupMembers},
		} {
			n, err := copyTable(ctx, snapshot, tx, table.name, table.query, table.columns, table.convert)
			if err != nil {
				return fmt.Errorf("storecopy: %s: %w", table.name, err)
			}
			*table.count = n
		}
		if err := snapshot.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM messages`).Scan(&counts.LastSeq); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE seq_counter SET v = $1, base = $1`, counts.LastSeq); err != nil {
			return err
		}
		for _, table := range []string{"users", "messages", "groups"} {
			if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('`+table+`', 'id'),
				COALESCE((SELECT MAX(id) FROM `+table+`), 0) + 1, false)`); err != nil {
				return fmt.Errorf("storecopy: %s id sequence: %w", table, err)
			}
		}
		return nil
	})
	if err != nil {
		return Counts{}, err
	}
	return counts, nil
}

// copyTable copies the rows query reads from the SQLite snapshot into
// table's columns with COPY, converting each row first when convert is
// not nil.
func copyTable(ctx context.Context, from *sql.Tx, to pgx.Tx, table, query string, columns []string, convert func([]any) error) (int64, error) {
	rows, err := from.QueryContext(ctx, query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	values := make([]any, len(columns))
	pointers := make([]any, len(columns))
	for i := range values {
		pointers[i] = &values[i]
	}
	source := pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		if err := rows.Scan(pointers...); err != nil {
			return nil, err
		}
		for i, v := range values {
			if b, ok := v.([]byte); ok { // SQLite TEXT may come back as bytes
				values[i] = string(b)
			}
		}
		if convert != nil {
			if err := convert(values); err != nil {
				return nil, err
			}
		}
		return values, nil
	})
	return to.CopyFrom(ctx, pgx.Identifier{table}, columns, source)
}

// bools makes the values at columns (SQLite's 0 and 1) booleans.
func bools(columns ...int) func([]any) error {
	return func(row []any) error {
		for _, i := range columns {
			n, ok := row[i].(int64)
			if !ok {
				return fmt.Errorf("column %d: want 0 or 1, not %v", i, row[i])
			}
			row[i] = n != 0
		}
		return nil
	}
}
