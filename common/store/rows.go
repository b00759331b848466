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

// Rows are a query's rows in either engine's driver; whoever ran the
// query closes them.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// The queries ReadGroups reads, in one snapshot.
const (
	GroupsQuery  = `SELECT id, name, owner, private, members FROM groups WHERE members > 0 ORDER BY id`
	MembersQuery = `SELECT group_id, user_id FROM group_members ORDER BY group_id, joined`
)

// ReadGroups is every group with members, and its members in joining
// order, from GroupsQuery's and MembersQuery's rows: query runs one and
// returns its rows and how to close them.
func ReadGroups(query func(sql string) (Rows, func(), error)) ([]model.GroupMembers, error) {
	rows, done, err := query(GroupsQuery)
	if err != nil {
		return nil, err
	}
	var groups []model.GroupMembers
	index := map[int64]int{}
	for rows.Next() {
		var g model.GroupMembers
		if err := rows.Scan(&g.ID, &g.Name, &g.Owner, &g.Private, &g.Members); err != nil {
			done()
			return nil, err
		}
		g.MemberIDs = make([]int64, 0, g.Members)
		index[g.ID] = len(groups)
		groups = append(groups, g)
	}
	err = rows.Err()
	done()
	if err != nil {
		return nil, err
	}
	if rows, done, err = query(MembersQuery); err != nil {
		return nil, err
	}
	defer done()
	for rows.Next() {
		var group, user int64
		if err := rows.Scan(&group, &user); err != nil {
			return nil, err
		}
		if i, ok := index[group]; ok {
			groups[i].MemberIDs = append(groups[i].MemberIDs, user)
		}
	}
	return groups, rows.Err()
}
