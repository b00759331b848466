package store

import (
	"errors"
	"time"

	"dce/common/model"
)

// What both engines read and write the same way.

// AccountColumns are the users columns ScanAccount reads, in its order.
const AccountColumns = `id, nickname, brief, avatar, admin, password_hash, banned_until, muted_until, created`

// Row is one row of a query, in either engine's driver.
type Row interface{ Scan(dest ...any) error }

// ScanAccount reads an account from row (AccountColumns). The driver's
// noRows error is ErrNotFound.
func ScanAccount(row Row, noRows error) (model.Account, error) {
	var (
		account                          model.Account
		bannedUntil, mutedUntil, created int64
	)
	err := row.Scan(&account.ID, &account.Nickname, &account.Brief, &account.Avatar, &account.Admin,
		&account.PasswordHash, &bannedUntil, &mutedUntil, &created)
	if errors.Is(err, noRows) {
		return model.Account{}, ErrNotFound
	}
	if err != nil {
		return model.Account{}, err
	}
	account.BannedUntil = FromUnixMilli(bannedUntil)
	account.MutedUntil = FromUnixMilli(mutedUntil)
	account.Created = FromUnixMilli(created)
	return account, nil
}

// UnixMilli is how a time is stored: Unix milliseconds, the zero time 0.
func UnixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromUnixMilli reads back a time stored by UnixMilli.
func FromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
