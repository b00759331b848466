package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"dce/common/model"
	"dce/common/store"
)

// Edits and deletions of stored messages. Each is a change with a seq of
// its own (PROTOCOL.md section 3): it goes through the single writer like
// an append (the indexer, indexer.go, follows it into the search index
// after the commit), and runs its
// published action on the publisher, in seq order with every other
// change's (writer.go).

const (
	// ?1 id, ?2 reader.
	messageForSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender
		WHERE m.id = ?1 AND ` + readableBy

	messageByIDSQL = `SELECT ` + messageColumns + ` FROM messages m JOIN users u ON u.id = m.sender WHERE m.id = ?`

	editMessageSQL = `UPDATE messages SET text = ?1, edited = 1, seq = ?2 WHERE id = ?3 AND deleted = 0`

	// The text and the file go; the id, the sender, the conversation and
	// the time stay, so that readers can tell what was deleted.
	deleteMessageSQL = `UPDATE messages SET text = '', file_id = NULL, deleted = 1, seq = ?1 WHERE id = ?2 AND deleted = 0`
)

// MessageFor returns message id if reader may read it (the lobby, their
// private conversations, their groups), with its sender joined in and Conv
// the canonical key; store.ErrNotFound if there is no such message or
// reader may not read it.
func (db *DB) MessageFor(ctx context.Context, reader, id int64) (model.Message, error) {
	if err := db.checkOpen(); err != nil {
		return model.Message{}, err
	}
	return oneMessage(db.reader.QueryContext(ctx, messageForSQL, id, reader))
}

// EditLater replaces the text of message id, marks it edited and gives it
// a new seq, in one transaction (search finds the new text, not the old,
// once it commits; indexer.go). It queues
// the edit now and returns a function that waits for the commit and
// returns the message as stored after it (sender joined in, Conv the
// canonical key); store.ErrNotFound if there is no such message or it is
// deleted. Who may edit is the caller's to decide.
//
// published, if not nil, is called with that message once the commit is
// durable, if the edit was stored, on the publisher in seq order with
// every other change's, before the returned function returns (as
// AppendLater's).
func (db *DB) EditLater(ctx context.Context, id int64, text string, published func(model.Message)) func() (model.Message, error) {
	e := &changing{db: db, id: id, text: text, published: published}
	e.request = writeRequest{ctx: ctx, write: (*editing)(e), done: make(chan error, 1)}
	e.err = db.submit(&e.request)
	return func() (model.Message, error) {
		msg, _, err := e.wait()
		return msg, err
	}
}

// DeleteLater deletes message id: its text and file are removed (from the
// row and, as space is reused, the file: secure_delete; the indexer then
// removes it from the search index, indexer.go),
// it is marked deleted and gets a new seq. It queues the deletion now and
// returns a function that waits for the commit and returns the message as
// stored after it. A message already deleted stores nothing and gives it
// back with already=true (no new seq, nothing published); no such message
// gives store.ErrNotFound. Who may delete is the caller's to decide.
//
// published, if not nil, is called as EditLater's is: only for a message
// deleted by this call.
func (db *DB) DeleteLater(ctx context.Context, id int64, published func(model.Message)) func() (msg model.Message, already bool, err error) {
	d := &changing{db: db, id: id, published: published}
	d.request = writeRequest{ctx: ctx, write: (*deleting)(d), done: make(chan error, 1)}
	d.err = db.submit(&d.request)
	return d.wait
}

// changing is one EditLater or DeleteLater: the write and its outcome,
// read only once the request has been answered (as appending's).
type changing struct {
	request   writeRequest
	db        *DB
	id        int64
	text      string // the new text of an edit
	published func(model.Message)
	err       error // from submit

	stored           model.Message
	missing, already bool
}

// editing and deleting are a changing's two writes.
type (
	editing  changing
	deleting changing
)

func (e *editing) apply(tx *sql.Tx) error {
	db := e.db
	e.missing, e.stored = false, model.Message{}
	seq := db.takeSeq()
	result, err := tx.Exec(editMessageSQL, e.text, seq, e.id)
	if err != nil {
		return err
	}
	if changed, err := result.RowsAffected(); err != nil {
		return err
	} else if changed == 0 { // no such message, or deleted
		db.nextSeq = seq
		e.missing = true
		return nil
	}
	e.stored, err = messageInTx(tx, e.id)
	return err
}

func (e *editing) committed() { (*changing)(e).publish() }

func (d *deleting) apply(tx *sql.Tx) error {
	db := d.db
	d.missing, d.already, d.stored = false, false, model.Message{}
	seq := db.takeSeq()
	result, err := tx.Exec(deleteMessageSQL, seq, d.id)
	if err != nil {
		return err
	}
	changed, err := result.RowsAffected()
	if err != nil {
		return err
	}
	if changed == 0 { // no such message, or deleted already
		db.nextSeq = seq
		d.stored, err = messageInTx(tx, d.id)
		if errors.Is(err, store.ErrNotFound) {
			d.missing = true
			return nil
		}
		d.already = err == nil
		return err
	}
	d.stored, err = messageInTx(tx, d.id)
	return err
}

func (d *deleting) committed() { (*changing)(d).publish() }

// publish runs the published action of a change that stored something.
func (c *changing) publish() {
	if c.published != nil && !c.missing && !c.already {
		c.published(c.stored)
	}
}

// wait is the returned function of EditLater and DeleteLater.
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

// messageInTx reads message id inside the writer's transaction;
// store.ErrNotFound if there is none.
func messageInTx(tx *sql.Tx, id int64) (model.Message, error) {
	return oneMessage(tx.Query(messageByIDSQL, id))
}

// oneMessage reads the first message of a query's rows (messageColumns)
// and closes them; store.ErrNotFound if there is none.
func oneMessage(rows *sql.Rows, err error) (model.Message, error) {
	if err != nil {
		return model.Message{}, err
	}
	msgs, err := scanMessages(rows, 1)
	if err != nil {
		return model.Message{}, err
	}
	if len(msgs) == 0 {
		return model.Message{}, store.ErrNotFound
	}
	return msgs[0], nil
}
