package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"

	"dce/common/model"
	"dce/common/store"
)

// Edits, deletions and group changes: each stored change takes a seq and
// a row of the changes log (writer.go), and runs its after-commit action
// on the publisher in seq order with every other change's.

var messageForSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
	WHERE m.id = $1 AND ` + readableBy(2)

const messageByIDSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender WHERE m.id = $1`

// MessageFor returns message id if reader may read it; store.ErrNotFound
// otherwise (the embedded engine's contract).
func (db *DB) MessageFor(ctx context.Context, reader, id int64) (model.Message, error) {
	if err := db.checkOpen(); err != nil {
		return model.Message{}, err
	}
	return oneMessage(db.pool.Query(ctx, messageForSQL, id, reader))
}

// EditLater replaces the text of message id, marks it edited and gives it
// a new seq (service.Store states the contract).
func (db *DB) EditLater(ctx context.Context, id int64, text string, published func(model.Message)) func() (model.Message, error) {
	e := &changing{db: db, id: id, text: text, published: published}
	e.request = writeRequest{ctx: ctx, write: (*editing)(e), done: make(chan error, 1)}
	e.err = db.submit(&e.request)
	return func() (model.Message, error) {
		msg, _, err := e.wait()
		return msg, err
	}
}

// DeleteLater deletes message id: its text and file leave the row, it is
// marked deleted and takes a new seq; one deleted already comes back with
// already=true (service.Store states the contract).
func (db *DB) DeleteLater(ctx context.Context, id int64, published func(model.Message)) func() (msg model.Message, already bool, err error) {
	d := &changing{db: db, id: id, published: published}
	d.request = writeRequest{ctx: ctx, write: (*deleting)(d), done: make(chan error, 1)}
	d.err = db.submit(&d.request)
	return d.wait
}

type changing struct {
	request   writeRequest
	db        *DB
	id        int64
	text      string
	published func(model.Message)
	err       error

	stored           model.Message
	missing, already bool
}

type (
	editing  changing
	deleting changing
)

func (e *editing) takesSeqs() bool  { return true }
func (d *deleting) takesSeqs() bool { return true }

func (e *editing) apply(t *txn) error {
	e.missing, e.stored = false, model.Message{}
	seq, err := t.reserveSeq()
	if err != nil {
		return err
	}
	tag, err := t.tx.Exec(t.ctx, `UPDATE messages SET text = $1, fold = $2, edited = true, seq = $3
		WHERE id = $4 AND deleted = false`, e.text, foldCase(e.text), seq, e.id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		t.giveBack(seq)
		e.missing = true
		return nil
	}
	t.logChange(seq, store.ChangeEdit, e.id, nil)
	e.stored, err = oneMessage(t.tx.Query(t.ctx, messageByIDSQL, e.id))
	return err
}

func (e *editing) committed() { (*changing)(e).publish() }

func (d *deleting) apply(t *txn) error {
	d.missing, d.already, d.stored = false, false, model.Message{}
	seq, err := t.reserveSeq()
	if err != nil {
		return err
	}
	tag, err := t.tx.Exec(t.ctx, `UPDATE messages SET text = '', fold = '', file_id = NULL, deleted = true, seq = $1
		WHERE id = $2 AND deleted = false`, seq, d.id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		t.giveBack(seq)
		d.stored, err = oneMessage(t.tx.Query(t.ctx, messageByIDSQL, d.id))
		if errors.Is(err, store.ErrNotFound) {
			d.missing = true
			return nil
		}
		d.already = err == nil
		return err
	}
	t.logChange(seq, store.ChangeDelete, d.id, nil)
	d.stored, err = oneMessage(t.tx.Query(t.ctx, messageByIDSQL, d.id))
	return err
}

func (d *deleting) committed() { (*changing)(d).publish() }

func (c *changing) publish() {
	if c.published != nil && !c.missing && !c.already {
		c.published(c.stored)
	}
}

func (c *changing) wait() (model.Message, bool, error) {
	err := c.err
	if err == nil {
		err = c.db.wait(&c.request)
	}
	if err != nil {
		return model.Message{}, false, err
	}
	if c.missing {
		return model.Message{}, false, store.ErrNotFound
	}
	return c.stored, c.already, nil
}

// groupWrite is one group change: run records its outcome in change, or
// an expected refusal in refusal; a change that changed something takes a
// seq and a log row holding the change.
type groupWrite struct {
	run       func(t *txn, w *groupWrite) error
	op        store.GroupOp
	by        int64
	after     func(model.GroupChange)
	change    model.GroupChange
	refusal   error
	nowMillis int64
}

func (w *groupWrite) takesSeqs() bool { return true }

func (w *groupWrite) apply(t *txn) error {
	w.change, w.refusal = model.GroupChange{}, nil
	if err := w.run(t, w); err != nil {
		return err
	}
	if w.refusal != nil || !w.change.Changed {
		return nil
	}
	seq, err := t.reserveSeq()
	if err != nil {
		return err
	}
	stored, err := json.Marshal(storedGroupChange{Change: w.change, Op: w.op, By: w.by})
	if err != nil {
		return err
	}
	t.logChange(seq, store.ChangeGroup, 0, stored)
	return nil
}

func (w *groupWrite) committed() {
	if w.after != nil && w.refusal == nil && w.change.Changed {
		w.after(w.change)
	}
}

func (db *DB) writeGroup(ctx context.Context, op store.GroupOp, by int64, run func(t *txn, w *groupWrite) error, after func(model.GroupChange)) (model.GroupChange, error) {
	w := &groupWrite{run: run, op: op, by: by, after: after, nowMillis: db.now().UnixMilli()}
	request := &writeRequest{ctx: ctx, write: w, done: make(chan error, 1)}
	if err := db.submit(request); err != nil {
		return model.GroupChange{}, err
	}
	if err := db.wait(request); err != nil {
		return model.GroupChange{}, err
	}
	if w.refusal != nil {
		return model.GroupChange{}, w.refusal
	}
	return w.change, nil
}

// CreateGroup stores a new group owned by g.Owner with g.Members after it
// in the join order, lowest id first (the embedded engine's contract).
func (db *DB) CreateGroup(ctx context.Context, g model.NewGroup, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error) {
	others := make([]int64, 0, len(g.Members))
	for _, id := range g.Members {
		if id != g.Owner {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	members := append([]int64{g.Owner}, slices.Compact(others)...)
	return db.writeGroup(ctx, store.GroupCreate, g.Owner, func(t *txn, w *groupWrite) error {
		if maxMembers > 0 && len(members) > maxMembers {
			w.refusal = store.ErrFull
			return nil
		}
		var known int
		if err := t.tx.QueryRow(t.ctx, `SELECT COUNT(*) FROM users WHERE id = ANY($1)`, members).Scan(&known); err != nil {
			return err
		}
		if known != len(members) {
			w.refusal = store.ErrNotFound
			return nil
		}
		// The counter first: every transaction that takes seqs locks it
		// before any other row (writer.go).
		if err := t.lockCounter(); err != nil {
			return err
		}
		var id int64
		if err := t.tx.QueryRow(t.ctx, `INSERT INTO groups (name, owner, private, members, created)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, g.Name, g.Owner, g.Private, len(members), w.nowMillis).Scan(&id); err != nil {
			return err
		}
		if _, err := t.tx.Exec(t.ctx, `INSERT INTO group_members (group_id, user_id, joined, joined_at)
			SELECT $1, u, n, $2 FROM unnest($3::bigint[]) WITH ORDINALITY AS l (u, n)`, id, w.nowMillis, members); err != nil {
			return err
		}
		w.change = model.GroupChange{Group: model.Group{ID: id, Name: g.Name, Owner: g.Owner, Private: g.Private,
			Members: len(members)}, Members: members, Changed: true}
		return nil
	}, committed)
}

// AddGroupMember makes user a member of group as by asks (a join when by
// is user, else an invite), the embedded engine's contract.
func (db *DB) AddGroupMember(ctx context.Context, group, user, by int64, maxMembers int, committed func(model.GroupChange)) (model.GroupChange, error) {
	return db.writeGroup(ctx, store.GroupAdd, by, func(t *txn, w *groupWrite) error {
		g, found, err := groupForUpdate(t, group)
		if err != nil || !found {
			w.refusal = store.ErrNotFound
			return err
		}
		if by == user && g.Private {
			w.refusal = store.ErrForbidden
			return nil
		}
		if by != user {
			if member, err := isGroupMember(t, group, by); err != nil || !member {
				w.refusal = store.ErrForbidden
				return err
			}
		}
		w.change = model.GroupChange{Group: g, User: user}
		known, err := exists(t, `SELECT 1 FROM users WHERE id = $1`, user)
		if err != nil || !known {
			w.refusal = store.ErrNotFound
			return err
		}
		member, err := isGroupMember(t, group, user)
		if err != nil || member {
			return err
		}
		if maxMembers > 0 && g.Members >= maxMembers {
			w.refusal = store.ErrFull
			return nil
		}
		if _, err := t.tx.Exec(t.ctx, `INSERT INTO group_members (group_id, user_id, joined, joined_at)
			VALUES ($1, $2, (SELECT COALESCE(MAX(joined), 0) + 1 FROM group_members WHERE group_id = $1), $3)`,
			group, user, w.nowMillis); err != nil {
			return err
		}
		if _, err := t.tx.Exec(t.ctx, `UPDATE groups SET members = members + 1 WHERE id = $1`, group); err != nil {
			return err
		}
		w.change.Group.Members++
		w.change.Changed = true
		return nil
	}, committed)
}

// RemoveGroupMember takes user out of group as by asks (a leave when by is
// user, else a removal by the owner), the embedded engine's contract:
// ownership passes along the join order, the last member's going
// dissolves the group.
func (db *DB) RemoveGroupMember(ctx context.Context, group, user, by int64, committed func(model.GroupChange)) (model.GroupChange, error) {
	return db.writeGroup(ctx, store.GroupRemove, by, func(t *txn, w *groupWrite) error {
		g, found, err := groupForUpdate(t, group)
		if err != nil || !found {
			w.refusal = store.ErrNotFound
			return err
		}
		if by != user && (g.Owner != by || g.Owner == user) {
			w.refusal = store.ErrForbidden
			return nil
		}
		w.change = model.GroupChange{Group: g, User: user}
		tag, err := t.tx.Exec(t.ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, group, user)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		w.change.Changed = true
		w.change.Group.Members--
		if w.change.Group.Members == 0 {
			w.change.Dissolved = true
			_, err := t.tx.Exec(t.ctx, `UPDATE groups SET members = 0 WHERE id = $1`, group)
			return err
		}
		if g.Owner == user {
			if err := t.tx.QueryRow(t.ctx, `SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY joined LIMIT 1`,
				group).Scan(&w.change.Group.Owner); err != nil {
				return err
			}
		}
		_, err = t.tx.Exec(t.ctx, `UPDATE groups SET members = $1, owner = $2 WHERE id = $3`,
			w.change.Group.Members, w.change.Group.Owner, group)
		return err
	}, committed)
}

// RenameGroup gives group a new name as its owner by asks.
func (db *DB) RenameGroup(ctx context.Context, group int64, name string, by int64, committed func(model.GroupChange)) (model.GroupChange, error) {
	return db.writeGroup(ctx, store.GroupRename, by, func(t *txn, w *groupWrite) error {
		g, found, err := groupForUpdate(t, group)
		if err != nil || !found {
			w.refusal = store.ErrNotFound
			return err
		}
		if g.Owner != by {
			w.refusal = store.ErrForbidden
			return nil
		}
		if _, err := t.tx.Exec(t.ctx, `UPDATE groups SET name = $1 WHERE id = $2`, name, group); err != nil {
			return err
		}
		g.Name = name
		w.change = model.GroupChange{Group: g, Changed: true}
		return nil
	}, committed)
}

// Groups returns every group with its members in join order, by id;
// dissolved groups are left out.
func (db *DB) Groups(ctx context.Context) ([]model.GroupMembers, error) {
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	return store.ReadGroups(func(query string) (store.Rows, func(), error) {
		rows, err := tx.Query(ctx, query)
		if err != nil {
			return nil, nil, err
		}
		return rows, rows.Close, nil
	})
}

// groupForUpdate reads a group in the writer's transaction, locking its
// row (the counter is locked already: takesSeqs); a dissolved group is
// not found.
func groupForUpdate(t *txn, id int64) (g model.Group, found bool, err error) {
	err = t.tx.QueryRow(t.ctx, `SELECT id, name, owner, private, members FROM groups WHERE id = $1 AND members > 0 FOR UPDATE`, id).
		Scan(&g.ID, &g.Name, &g.Owner, &g.Private, &g.Members)
	if errors.Is(err, pgx.ErrNoRows) {
		return model.Group{}, false, nil
	}
	return g, err == nil, err
}

func isGroupMember(t *txn, group, user int64) (bool, error) {
	return exists(t, `SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2`, group, user)
}

func exists(t *txn, query string, arguments ...any) (bool, error) {
	var one int
	err := t.tx.QueryRow(t.ctx, query, arguments...).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
