package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"dce/common/model"
	"dce/common/store"
)

const accountColumns = store.AccountColumns

// CreateUser stores a new account; nickname must be normalised, and a
// taken model.FoldNickname gives store.ErrConflict.
func (db *DB) CreateUser(ctx context.Context, nickname, passwordHash, brief string) (model.Account, error) {
	created := db.now()
	account := model.Account{
		User:         model.User{Nickname: nickname, Brief: brief},
		PasswordHash: passwordHash,
		Created:      time.UnixMilli(created.UnixMilli()),
	}
	taken := false
	err := db.write(ctx, func(t *txn) error {
		err := t.tx.QueryRow(t.ctx, `INSERT INTO users (nickname, fold, password_hash, brief, created)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (fold) DO NOTHING
			RETURNING id`,
			nickname, model.FoldNickname(nickname), passwordHash, brief, created.UnixMilli()).Scan(&account.ID)
		taken = errors.Is(err, pgx.ErrNoRows)
		if taken {
			return nil
		}
		return err
	})
	if err != nil {
		return model.Account{}, err
	}
	if taken {
		return model.Account{}, store.ErrConflict
	}
	return account, nil
}

// UserByNickname finds an account by its nickname's fold.
func (db *DB) UserByNickname(ctx context.Context, nickname string) (model.Account, error) {
	return db.account(ctx, `SELECT `+accountColumns+` FROM users WHERE fold = $1`, model.FoldNickname(nickname))
}

// UserByID finds an account by id.
func (db *DB) UserByID(ctx context.Context, id int64) (model.Account, error) {
	return db.account(ctx, `SELECT `+accountColumns+` FROM users WHERE id = $1`, id)
}

func (db *DB) account(ctx context.Context, query string, argument any) (model.Account, error) {
	if err := db.checkOpen(); err != nil {
		return model.Account{}, err
	}
	return store.ScanAccount(db.pool.QueryRow(ctx, query, argument), pgx.ErrNoRows)
}

// UsersByID returns the public view of each user in ids that exists.
func (db *DB) UsersByID(ctx context.Context, ids []int64) (map[int64]model.User, error) {
	users := make(map[int64]model.User, len(ids))
	if len(ids) == 0 {
		return users, nil
	}
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `SELECT id, nickname, brief, avatar, admin FROM users WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var user model.User
		if err := rows.Scan(&user.ID, &user.Nickname, &user.Brief, &user.Avatar, &user.Admin); err != nil {
			return nil, err
		}
		users[user.ID] = user
	}
	return users, rows.Err()
}

// SetPasswordHash replaces a user's password hash.
func (db *DB) SetPasswordHash(ctx context.Context, id int64, hash string) error {
	return db.updateUser(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, hash, id)
}

// SetAdmin grants or withdraws the admin role.
func (db *DB) SetAdmin(ctx context.Context, id int64, admin bool) error {
	return db.updateUser(ctx, `UPDATE users SET admin = $1 WHERE id = $2`, admin, id)
}

// SetBannedUntil bans the user until the given time; the zero time lifts
// the ban.
func (db *DB) SetBannedUntil(ctx context.Context, id int64, until time.Time) error {
	return db.updateUser(ctx, `UPDATE users SET banned_until = $1 WHERE id = $2`, unixMilli(until), id)
}

// SetMutedUntil mutes the user until the given time; the zero time lifts
// the mute.
func (db *DB) SetMutedUntil(ctx context.Context, id int64, until time.Time) error {
	return db.updateUser(ctx, `UPDATE users SET muted_until = $1 WHERE id = $2`, unixMilli(until), id)
}

func (db *DB) updateUser(ctx context.Context, query string, arguments ...any) error {
	var changed int64
	err := db.write(ctx, func(t *txn) error {
		tag, err := t.tx.Exec(t.ctx, query, arguments...)
		changed = tag.RowsAffected()
		return err
	})
	if err == nil && changed == 0 {
		return store.ErrNotFound
	}
	return err
}

// UpdateProfile sets a user's brief and avatar and returns the user.
func (db *DB) UpdateProfile(ctx context.Context, id int64, brief, avatar string) (model.User, error) {
	var (
		user  model.User
		found bool
	)
	err := db.write(ctx, func(t *txn) error {
		err := t.tx.QueryRow(t.ctx, `UPDATE users SET brief = $1, avatar = $2 WHERE id = $3
			RETURNING id, nickname, brief, avatar, admin`, brief, avatar, id).
			Scan(&user.ID, &user.Nickname, &user.Brief, &user.Avatar, &user.Admin)
		found = !errors.Is(err, pgx.ErrNoRows)
		if !found {
			return nil
		}
		return err
	})
	if err != nil {
		return model.User{}, err
	}
	if !found {
		return model.User{}, store.ErrNotFound
	}
	return user, nil
}

// CountUsers returns how many accounts there are.
func (db *DB) CountUsers(ctx context.Context) (int64, error) {
	if err := db.checkOpen(); err != nil {
		return 0, err
	}
	var count int64
	err := db.pool.QueryRow(ctx, `SELECT COUNT(*) FROM users`).Scan(&count)
	return count, err
}

// SaveSession stores (or replaces) the session keyed by sidHash;
// store.ErrNotFound if there is no such user.
func (db *DB) SaveSession(ctx context.Context, sidHash string, userID int64, created, expires time.Time) error {
	missingUser := false
	err := db.write(ctx, func(t *txn) error {
		tag, err := t.tx.Exec(t.ctx, `INSERT INTO sessions (sid_hash, user_id, created, expires)
			SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)
			ON CONFLICT (sid_hash) DO UPDATE
			SET user_id = excluded.user_id, created = excluded.created, expires = excluded.expires`,
			sidHash, userID, unixMilli(created), unixMilli(expires))
		missingUser = err == nil && tag.RowsAffected() == 0
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
	err = db.pool.QueryRow(ctx, `SELECT user_id, created, expires FROM sessions
		WHERE sid_hash = $1 AND expires > $2`, sidHash, db.now().UnixMilli()).
		Scan(&userID, &createdMilli, &expiresMilli)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, time.Time{}, store.ErrNotFound
	}
	if err != nil {
		return 0, time.Time{}, time.Time{}, err
	}
	return userID, fromUnixMilli(createdMilli), fromUnixMilli(expiresMilli), nil
}

// DeleteSession removes a session; removing one that does not exist is
// not an error.
func (db *DB) DeleteSession(ctx context.Context, sidHash string) error {
	return db.write(ctx, func(t *txn) error {
		_, err := t.tx.Exec(t.ctx, `DELETE FROM sessions WHERE sid_hash = $1`, sidHash)
		return err
	})
}

// DeleteUserSessions removes every session of a user and returns their
// sid hashes.
func (db *DB) DeleteUserSessions(ctx context.Context, userID int64) ([]string, error) {
	var removed []string
	err := db.write(ctx, func(t *txn) error {
		removed = removed[:0]
		rows, err := t.tx.Query(t.ctx, `DELETE FROM sessions WHERE user_id = $1 RETURNING sid_hash`, userID)
		if err != nil {
			return err
		}
		removed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// sessionSweepBatch is how many expired sessions one write removes.
const sessionSweepBatch = 1000

// DeleteExpiredSessions removes every session expired at Now(), a batch
// at a time, one write each, and returns how many there were.
func (db *DB) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	now := db.now().UnixMilli()
	var total int64
	for {
		var removed int64
		err := db.write(ctx, func(t *txn) error {
			tag, err := t.tx.Exec(t.ctx, `DELETE FROM sessions WHERE sid_hash IN
				(SELECT sid_hash FROM sessions WHERE expires <= $1 LIMIT $2)`, now, sessionSweepBatch)
			removed = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += removed
		if removed < sessionSweepBatch {
			return total, nil
		}
	}
}
