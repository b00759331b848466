package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"

	"dce/common/model"
	"dce/common/store"
)

// Groups and their members (migration 0004). A dissolved group keeps its
// groups row with members 0 (its group_members rows go): every read here
// skips such rows, and since the row stays, its id is never taken again
// (an INTEGER PRIMARY KEY takes one more than the largest id in use), so
// no later group's members can read the dissolved group's messages. Every
// change goes through the
// single writer, and its after-commit action (the caller's, given as
// committed) runs on the publisher in commit order with every message's
// push: the chat keeps membership in memory and changes it there, so a
// message committed after a removal is never pushed to the removed member.

// groupWrite is one group change: run records its outcome in change, or an
// expected refusal (no such group or user, a full group) in refusal, and
// the after-commit action gets the change if something changed.
type groupWrite struct {
	run       func(tx *sql.Tx, w *groupWrite) error
	after     func(model.GroupChange)
	change    model.GroupChange
	refusal   error // store.ErrNotFound, store.ErrFull or store.ErrForbidden; nothing was written
	nowMillis int64
}

func (w *groupWrite) apply(tx *sql.Tx) error {
	w.change, w.refusal = model.GroupChange{}, nil // apply may run twice (writer.go)
	return w.run(tx, w)
}

func (w *groupWrite) committed() {
	if w.after != nil && w.refusal == nil && w.change.Changed {
		w.after(w.change)
	}
}

// writeGroup runs one group change through the writer and returns its
// outcome once the commit that holds it is durable and its after-commit
// action has run.
func (db *DB) writeGroup(ctx context.Context, run func(tx *sql.Tx, w *groupWrite) error, after func(model.GroupChange)) (model.GroupChange, error) {
	w := &groupWrite{run: run, after: after, nowMillis: db.now().UnixMilli()}
	request := &writeRequest{ctx: ctx, write: w, done: make(chan error, 1)}
	if err := db.submit(request); err != nil {
		return model.GroupChange{}, err
	}
	if err := db.wait(request); err != nil {
		return model.GroupChange{}, err // w may still be running: read nothing of it
	}
	if w.refusal != nil {
		return model.GroupChange{}, w.refusal
	}
	return w.change, nil
}

// CreateGroup stores a new group whose owner and first member is g.Owner,
// with g.Members (duplicates and the owner left out) after it in the join
// order, lowest id first. store.ErrFull if they number more than
// maxMembers (when above 0), checked before anyone is looked up;
// store.ErrNotFound if the owner or a member is no user. committed, if not
// nil, runs on the publisher after the commit (see service.Store). The
// change's Members lists every member in join order. Its statements are
// set-based, so the writer's time for it grows with the members only
// inside SQLite: one count of the users named, one insert of the group,
// one insert of its members.
func (db *DB) CreateGroup(ctx context.Context, g model.NewGroup, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error) {
	others := make([]int64, 0, len(g.Members))
	for _, id := range g.Members {
		if id != g.Owner {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	members := append([]int64{g.Owner}, slices.Compact(others)...)
	list, err := json.Marshal(members) // json_each's array: its key is the place in join order, from 0
	if err != nil {
		return model.GroupChange{}, err
	}
	return db.writeGroup(ctx, func(tx *sql.Tx, w *groupWrite) error {
		if maxMembers > 0 && len(members) > maxMembers {
			w.refusal = store.ErrFull
			return nil
		}
		var known int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM users WHERE id IN (SELECT value FROM json_each(?))`,
			string(list)).Scan(&known); err != nil {
			return err
		}
		if known != len(members) {
			w.refusal = store.ErrNotFound
			return nil
		}
		result, err := tx.Exec(`INSERT INTO groups (name, owner, private, members, created) VALUES (?, ?, ?, ?, ?)`,
			g.Name, g.Owner, g.Private, len(members), w.nowMillis)
		if err != nil {
			return err
		}
		id, err := result.LastInsertId()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO group_members (group_id, user_id, joined, joined_at)
			SELECT ?1, value, key + 1, ?2 FROM json_each(?3)`, id, w.nowMillis, string(list)); err != nil {
			return err
		}
		w.change = model.GroupChange{Group: model.Group{ID: id, Name: g.Name, Owner: g.Owner, Private: g.Private,
			Members: len(members)}, Members: members, Changed: true}
		return nil
	}, committed)
}

// AddGroupMember makes user a member of group, last in its join order, as
// by asks: a join when by is user (the group must be open), else an invite
// (by must be a member), both checked in the write's transaction. A user
// already a member changes nothing (Changed false, committed not called).
// store.ErrNotFound if there is no such group or user; store.ErrForbidden
// if by may not add user; store.ErrFull if the group has maxMembers
// members already (when above 0).
func (db *DB) AddGroupMember(ctx context.Context, group, user, by int64, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error) {
	return db.writeGroup(ctx, func(tx *sql.Tx, w *groupWrite) error {
		g, found, err := groupByID(tx, group)
		if err != nil || !found {
			w.refusal = store.ErrNotFound
			return err
		}
		if by == user && g.Private {
			w.refusal = store.ErrForbidden
			return nil
		}
		if by != user {
			if member, err := isGroupMember(tx, group, by); err != nil || !member {
				w.refusal = store.ErrForbidden
				return err
			}
		}
		w.change = model.GroupChange{Group: g, User: user}
		known, err := userExists(tx, user)
		if err != nil || !known {
			w.refusal = store.ErrNotFound
			return err
		}
		member, err := isGroupMember(tx, group, user)
		if err != nil || member {
			return err
		}
		if maxMembers > 0 && g.Members >= maxMembers {
			w.refusal = store.ErrFull
			return nil
		}
		if _, err := tx.Exec(`INSERT INTO group_members (group_id, user_id, joined, joined_at)
			VALUES (?1, ?2, (SELECT COALESCE(MAX(joined), 0) + 1 FROM group_members WHERE group_id = ?1), ?3)`,
			group, user, w.nowMillis); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE groups SET members = members + 1 WHERE id = ?`, group); err != nil {
			return err
		}
		w.change.Group.Members++
		w.change.Changed = true
		return nil
	}, committed)
}

// RemoveGroupMember takes user out of group as by asks: a leave when by is
// user, else a removal, which by must own the group for (checked in the
// write's transaction; store.ErrForbidden otherwise, and for the owner's
// removal by anyone else). A user who is not a member changes nothing
// (Changed false). When the owner
// goes, ownership passes to the member first in the join order; when the
// last member goes, the group is dissolved (Dissolved): its row stays with
// members 0, so its id is never reused, and its messages stay, readable by
// no one. store.ErrNotFound if there is no such group.
func (db *DB) RemoveGroupMember(ctx context.Context, group, user, by int64, committed func(model.GroupChange)) (model.GroupChange, error) {
	return db.writeGroup(ctx, func(tx *sql.Tx, w *groupWrite) error {
		g, found, err := groupByID(tx, group)
		if err != nil || !found {
			w.refusal = store.ErrNotFound
			return err
		}
		if by != user && (g.Owner != by || g.Owner == user) {
			w.refusal = store.ErrForbidden
			return nil
		}
		w.change = model.GroupChange{Group: g, User: user}
		result, err := tx.Exec(`DELETE FROM group_members WHERE group_id = ? AND user_id = ?`, group, user)
		if err != nil {
			return err
		}
		if removed, err := result.RowsAffected(); err != nil || removed == 0 {
			return err
		}
		w.change.Changed = true
		w.change.Group.Members--
		if w.change.Group.Members == 0 {
			w.change.Dissolved = true
			_, err := tx.Exec(`UPDATE groups SET members = 0 WHERE id = ?`, group)
			return err
		}
		if g.Owner == user {
			if err := tx.QueryRow(`SELECT user_id FROM group_members WHERE group_id = ? ORDER BY joined LIMIT 1`,
				group).Scan(&w.change.Group.Owner); err != nil {
				return err
			}
		}
		_, err = tx.Exec(`UPDATE groups SET members = ?, owner = ? WHERE id = ?`, w.change.Group.Members, w.change.Group.Owner, group)
		return err
	}, committed)
}

// RenameGroup gives group a new name (already checked by
// model.NormalizeGroupName) as by asks, who must own it (checked in the
// write's transaction; store.ErrForbidden otherwise). store.ErrNotFound if
// there is no such group.
func (db *DB) RenameGroup(ctx context.Context, group int64, name string, by int64, committed func(model.GroupChange)) (model.GroupChange, error) {
	return db.writeGroup(ctx, func(tx *sql.Tx, w *groupWrite) error {
		g, found, err := groupByID(tx, group)
		if err != nil || !found {
			w.refusal = store.ErrNotFound
			return err
		}
		if g.Owner != by {
			w.refusal = store.ErrForbidden
			return nil
		}
		if _, err := tx.Exec(`UPDATE groups SET name = ? WHERE id = ?`, name, group); err != nil {
			return err
		}
		g.Name = name
		w.change = model.GroupChange{Group: g, Changed: true}
		return nil
	}, committed)
}

// Groups returns every group with its members in join order, by id: what
// the chat loads into memory when it starts. Dissolved groups are left out.
func (db *DB) Groups(ctx context.Context) ([]model.GroupMembers, error) {
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	tx, err := db.reader.BeginTx(ctx, nil) // one snapshot for both queries
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return store.ReadGroups(func(query string) (store.Rows, func(), error) {
		rows, err := tx.QueryContext(ctx, query)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	})
}

// groupByID reads a group in the writer's transaction; a dissolved group
// is not found.
func groupByID(tx *sql.Tx, id int64) (g model.Group, found bool, err error) {
	err = tx.QueryRow(`SELECT id, name, owner, private, members FROM groups WHERE id = ? AND members > 0`, id).
		Scan(&g.ID, &g.Name, &g.Owner, &g.Private, &g.Members)
	if errors.Is(err, sql.ErrNoRows) {
		return model.Group{}, false, nil
	}
	return g, err == nil, err
}

func userExists(tx *sql.Tx, id int64) (bool, error) {
	var one int
	err := tx.QueryRow(`SELECT 1 FROM users WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func isGroupMember(tx *sql.Tx, group, user int64) (bool, error) {
	var one int
	err := tx.QueryRow(`SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?`, group, user).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
