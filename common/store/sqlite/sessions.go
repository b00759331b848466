package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"dce/common/store"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SaveSession stores (or replaces) the session keyed by sidHash, a hash of
// the sid the caller made; the raw sid never reaches the store.
// store.ErrNotFound if there is no such user.
func (db *DB) SaveSession(ctx context.Context, sidHash string, userID int64, created, expires time.Time) error {
	missingUser := false
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO sessions (sid_hash, user_id, created, expires) VALUES (?, ?, ?, ?)
			ON CONFLICT (sid_hash) DO UPDATE
			SET user_id = excluded.user_id, created = excluded.created, expires = excluded.expires`,
			sidHash, userID, unixMilli(created), unixMilli(expires))
		missingUser = isForeignKeyViolation(err)
		if missingUser {
			return nil // the statement was undone alone; the transaction goes on
		}
		return err
	})
	if err == nil && missingUser {
		return store.ErrNotFound
	}
	return err
}

// LoadSession returns the session keyed by sidHash; store.ErrNotFound if
// there is none or it has expired at Now().
func (db *DB) LoadSession(ctx context.Context, sidHash string) (userID int64, created, expires time.Time, err error) {
	if err := db.checkOpen(); err != nil {
		return 0, time.Time{}, time.Time{}, err
	}
	var createdMilli, expiresMilli int64
	err = db.reader.QueryRowContext(ctx, `SELECT user_id, created, expires FROM sessions
		WHERE sid_hash = ? AND expires > ?`, sidHash, db.now().UnixMilli()).
		Scan(&userID, &createdMilli, &expiresMilli)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, time.Time{}, store.ErrNotFound
	}
	if err != nil {
		return 0, time.Time{}, time.Time{}, err
	}
	return userID, fromUnixMilli(createdMilli), fromUnixMilli(expiresMilli), nil
}

// DeleteSession removes a session. Removing one that does not exist is
// not an error.
func (db *DB) DeleteSession(ctx context.Context, sidHash string) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM sessions WHERE sid_hash = ?`, sidHash)
		return err
	})
}

// DeleteUserSessions removes every session of a user and returns their
// sid hashes, so the caller can drop them from its cache.
func (db *DB) DeleteUserSessions(ctx context.Context, userID int64) ([]string, error) {
	var removed []string
	err := db.write(ctx, func(tx *sql.Tx) error {
		removed = removed[:0]
		rows, err := tx.Query(`DELETE FROM sessions WHERE user_id = ? RETURNING sid_hash`, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var sidHash string
			if err := rows.Scan(&sidHash); err != nil {
				return err
			}
			removed = append(removed, sidHash)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// DeleteExpiredSessions removes every session expired at Now() and returns
// how many there were. It deletes them sessionSweepBatch at a time, one
// write each, so the writer is never held long and other writes queue
// between the batches; if ctx ends between batches it returns what it
// removed so far with ctx's error.
func (db *DB) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	now := db.now().UnixMilli()
	var total int64
	for {
		var removed int64
		err := db.write(ctx, func(tx *sql.Tx) error {
			result, err := tx.Exec(deleteExpiredSessionsSQL, now, sessionSweepBatch)
			if err != nil {
				return err
			}
			removed, err = result.RowsAffected()
			return err
		})
		if err != nil {
			return total, err // removed may still be written by the writer
		}
		total += removed
		if removed < sessionSweepBatch {
			return total, nil
		}
	}
}

// deleteExpiredSessionsSQL deletes up to ?2 sessions expired at ?1,
// found through sessions_expires.
const deleteExpiredSessionsSQL = `DELETE FROM sessions WHERE sid_hash IN
	(SELECT sid_hash FROM sessions WHERE expires <= ? LIMIT ?)`

// isForeignKeyViolation reports whether err is SQLite refusing a row whose
// reference (a user id) does not exist.
func isForeignKeyViolation(err error) bool {
	var sqliteError *sqlitedriver.Error
	return errors.As(err, &sqliteError) && sqliteError.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
