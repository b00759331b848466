package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"dce/common/model"
	"dce/common/store"
)

const accountColumns = store.AccountColumns

// CreateUser stores a new account. nickname must already be normalised
// (model.NormalizeNickname); it is unique by model.FoldNickname, enforced
// by a UNIQUE column, and a taken fold gives store.ErrConflict.
func (db *DB) CreateUser(ctx context.Context, nickname, passwordHash, brief string) (model.Account, error) {
	created := db.now()
	account := model.Account{
		User:         model.User{Nickname: nickname, Brief: brief},
		PasswordHash: passwordHash,
		Created:      time.UnixMilli(created.UnixMilli()),
	}
	taken := false
	err := db.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`INSERT INTO users (nickname, fold, password_hash, brief, created)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (fold) DO NOTHING
			RETURNING id`,
			nickname, model.FoldNickname(nickname), passwordHash, brief, created.UnixMilli()).Scan(&account.ID)
		taken = errors.Is(err, sql.ErrNoRows)
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

// UserByNickname finds an account by its nickname's fold; store.ErrNotFound
// if there is none.
func (db *DB) UserByNickname(ctx context.Context, nickname string) (model.Account, error) {
	return db.account(ctx, `SELECT `+accountColumns+` FROM users WHERE fold = ?`, model.FoldNickname(nickname))
}

// UserByID finds an account by id; store.ErrNotFound if there is none.
func (db *DB) UserByID(ctx context.Context, id int64) (model.Account, error) {
	return db.account(ctx, `SELECT `+accountColumns+` FROM users WHERE id = ?`, id)
}

func (db *DB) account(ctx context.Context, query string, argument any) (model.Account, error) {
	if err := db.checkOpen(); err != nil {
		return model.Account{}, err
	}
	return store.ScanAccount(db.reader.QueryRowContext(ctx, query, argument), sql.ErrNoRows)
}

// UsersByID returns the public view of each user in ids that exists, keyed
// by id. Ids with no user are left out; no error is given for them.
func (db *DB) UsersByID(ctx context.Context, ids []int64) (map[int64]model.User, error) {
	users := make(map[int64]model.User, len(ids))
	if len(ids) == 0 {
		return users, nil
	}
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	var list strings.Builder // a JSON array, expanded by json_each: one statement for any length
	list.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			list.WriteByte(',')
		}
		list.WriteString(strconv.FormatInt(id, 10))
	}
	list.WriteByte(']')
	rows, err := db.reader.QueryContext(ctx, `SELECT id, nickname, brief, avatar, admin FROM users
		WHERE id IN (SELECT value FROM json_each(?))`, list.String())
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

// SetPasswordHash replaces a user's password hash; store.ErrNotFound if
// there is no such user.
func (db *DB) SetPasswordHash(ctx context.Context, id int64, hash string) error {
	return db.updateUser(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, id)
}

// SetAdmin grants or withdraws the admin role.
func (db *DB) SetAdmin(ctx context.Context, id int64, admin bool) error {
	return db.updateUser(ctx, `UPDATE users SET admin = ? WHERE id = ?`, admin, id)
}

// SetBannedUntil bans the user until the given time; the zero time lifts
// the ban.
func (db *DB) SetBannedUntil(ctx context.Context, id int64, until time.Time) error {
	return db.updateUser(ctx, `UPDATE users SET banned_until = ? WHERE id = ?`, unixMilli(until), id)
}

// SetMutedUntil mutes the user until the given time; the zero time lifts
// the mute.
func (db *DB) SetMutedUntil(ctx context.Context, id int64, until time.Time) error {
	return db.updateUser(ctx, `UPDATE users SET muted_until = ? WHERE id = ?`, unixMilli(until), id)
}

// updateUser runs one UPDATE of a user row whose last argument is the id.
func (db *DB) updateUser(ctx context.Context, query string, arguments ...any) error {
	var changed int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		result, err := tx.Exec(query, arguments...)
		if err != nil {
			return err
		}
		changed, err = result.RowsAffected()
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
	err := db.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`UPDATE users SET brief = ?, avatar = ? WHERE id = ?
			RETURNING id, nickname, brief, avatar, admin`, brief, avatar, id).
			Scan(&user.ID, &user.Nickname, &user.Brief, &user.Avatar, &user.Admin)
		found = !errors.Is(err, sql.ErrNoRows)
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
	err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&count)
	return count, err
}
