package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"

	"dce/common/store"
)

// The writer: one goroutine, one connection, group commit.
//
// Concurrency contract:
//   - Every write is a closure func(tx *sql.Tx) error sent on db.requests
//     by db.write. Only the writer goroutine (runWriter) runs closures and
//     touches db.writer, db.nextSeq and the batch slice.
//   - db.gate (RWMutex) orders sending on db.requests against closing it.
//     Senders hold it for reading while they check db.closed and send;
//     Close sets db.closed, then holds it for writing while it closes the
//     channel. There is no other lock, so there is no lock order to keep.
//   - runWriter takes every request waiting (up to maxBatch), runs them in
//     one IMMEDIATE transaction, COMMITs, and only then answers each
//     request on its done channel (buffered, so answering never blocks).
//     When requests is closed and drained it closes writerDone and exits.
//
// Rules for a write closure:
//   - It may run twice. The batch first runs with no savepoints (the fast
//     path); if any closure returns an error, the transaction is rolled
//     back and the batch runs again with each closure inside its own
//     savepoint, so a failing write is undone alone and the others still
//     commit. A closure therefore sets its results afresh on every run.
//   - It returns an error only when something failed. An expected outcome
//     that stores nothing (a taken nickname, no such row, a cid already
//     used, a missing user refused by a foreign key) is a result it
//     records for its caller, returning nil: a single statement that fails
//     a constraint is undone alone by SQLite, and the batch keeps its fast
//     path.
//   - It runs its statements without the caller's ctx (a caller that gives
//     up must not abort a transaction shared with others), uses tx only
//     during the call, and never calls db.write (the writer would wait on
//     itself).

// writeRequest is one write waiting for the writer.
type writeRequest struct {
	ctx   context.Context
	apply func(tx *sql.Tx) error
	done  chan error // buffered: the writer never blocks answering
	err   error      // the request's own outcome, set by the writer
}

// errBatchRetry makes a batch run again with savepoints.
var errBatchRetry = errors.New("sqlite: a write failed; retrying the batch with savepoints")

// write queues apply and waits for the commit that holds it. If ctx ends
// first, write returns ctx.Err(), but apply may still run and commit: a
// caller that gives up cannot know whether its write is stored (a retry with
// the same idempotency key finds out). A request whose ctx has ended before
// its batch starts is skipped.
func (db *DB) write(ctx context.Context, apply func(tx *sql.Tx) error) error {
	request, err := db.submit(ctx, apply)
	if err != nil {
		return err
	}
	return db.wait(ctx, request)
}

// submit queues apply for the writer without waiting for its commit:
// writes submitted one after another from one goroutine commit in that
// order.
func (db *DB) submit(ctx context.Context, apply func(tx *sql.Tx) error) (*writeRequest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	request := &writeRequest{ctx: ctx, apply: apply, done: make(chan error, 1)}
	db.gate.RLock()
	defer db.gate.RUnlock()
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	select {
	case db.requests <- request:
		return request, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wait waits for a submitted write's commit, as write does.
func (db *DB) wait(ctx context.Context, request *writeRequest) error {
	select {
	case err := <-request.done:
		return err
	case <-ctx.Done():
		select {
		case err := <-request.done: // answered meanwhile: report the outcome
			return err
		default:
			return ctx.Err()
		}
	}
}

// Commits is how many group commits the writer has made since Open: the
// writes stored divided by it is how many each commit carried.
func (db *DB) Commits() int64 { return db.commits.Load() }

// takeSeq hands out the next change sequence number. Call it only from a
// write closure: the writer goroutine owns nextSeq, and rolls it back if
// the closure or its batch fails.
func (db *DB) takeSeq() int64 {
	seq := db.nextSeq
	db.nextSeq++
	return seq
}

// directPair is one row of direct_conversations.
type directPair struct {
	user int64
	conv string
}

// maxDirectKnown bounds directKnown: past it the writer forgets them all
// and lets INSERT OR IGNORE find the rows again.
const maxDirectKnown = 1 << 16

// noteDirect lists the private conversation conv for both its parties
// (direct_conversations, which im/conversations reads), unless the writer
// knows the rows are there: they are written with the conversation's first
// message and never removed. Call it only from a write closure.
func (db *DB) noteDirect(tx *sql.Tx, sender, to int64, conv string) error {
	_, senderKnown := db.directKnown[directPair{sender, conv}]
	_, toKnown := db.directKnown[directPair{to, conv}]
	if senderKnown && toKnown {
		return nil
	}
	if _, err := db.inTx(tx, db.statements.insertDirect).Exec(sender, to, conv); err != nil {
		return err
	}
	if db.directKnown == nil || len(db.directKnown) >= maxDirectKnown {
		db.directKnown = make(map[directPair]struct{})
	}
	for _, p := range []directPair{{sender, conv}, {to, conv}} {
		db.directKnown[p] = struct{}{}
		db.directAdded = append(db.directAdded, p)
	}
	return nil
}

// forgetDirect undoes noteDirect's additions from the mark-th on, whose
// rows a rollback has removed.
func (db *DB) forgetDirect(mark int) {
	for _, p := range db.directAdded[mark:] {
		delete(db.directKnown, p)
	}
	db.directAdded = db.directAdded[:mark]
}

// runWriter is the writer goroutine.
func (db *DB) runWriter() {
	defer close(db.writerDone)
	batch := make([]*writeRequest, 0, db.maxBatch)
	for {
		first, ok := <-db.requests
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		gathered := 0 // batch size at the last yield
	gather:
		for len(batch) < db.maxBatch {
			select {
			case request, ok := <-db.requests:
				if !ok {
					break gather // closed: commit this batch, then exit above
				}
				batch = append(batch, request)
			default:
				if len(batch) == gathered {
					break gather // nothing came in since the last yield
				}
				// Let the writers just answered queue their next write,
				// so that it joins this commit rather than the next.
				gathered = len(batch)
				runtime.Gosched()
			}
		}
		db.commit(batch)
		clear(batch) // let the finished requests be collected
	}
}

// commit runs one batch and answers every request in it.
func (db *DB) commit(batch []*writeRequest) {
	live := 0
	for _, request := range batch {
		request.err = request.ctx.Err() // its caller has gone: skip it
		if request.err == nil {
			live++
		}
	}
	var err error
	if live > 0 {
		err = db.runBatch(batch, false)
		if errors.Is(err, errBatchRetry) {
			err = db.runBatch(batch, true)
		}
	}
	for _, request := range batch {
		if request.err != nil {
			request.done <- request.err
		} else {
			request.done <- err
		}
	}
}

// runBatch runs the live requests of batch (those with no error yet) in one
// transaction and commits. Without savepoints, the first failing request
// rolls everything back and runBatch returns errBatchRetry. With
// savepoints, a failing request is undone alone and keeps its error in
// request.err (true whatever happens to the batch: nothing of it is
// stored). Any error returned means nothing in the batch was stored;
// nextSeq is then restored.
func (db *DB) runBatch(batch []*writeRequest, savepoints bool) (err error) {
	seqAtStart := db.nextSeq
	db.directAdded = db.directAdded[:0]
	tx, err := db.writer.Begin() // BEGIN IMMEDIATE (_txlock in the DSN): no other writer until COMMIT
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			db.nextSeq = seqAtStart
			db.forgetDirect(0)
		}
	}()
	// Another process may have written since the last batch (the command
	// line opens the same file): take up from the file's last seq.
	var lastSeq int64
	if err := db.inTx(tx, db.statements.writerLastSeq).QueryRow().Scan(&lastSeq); err != nil {
		return fmt.Errorf("sqlite: reading the last seq: %w", err)
	}
	db.nextSeq = max(db.nextSeq, lastSeq+1)
	for _, request := range batch {
		if request.err != nil {
			continue
		}
		if !savepoints {
			if request.apply(tx) != nil {
				return errBatchRetry
			}
			continue
		}
		if err := db.runInSavepoint(tx, request); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	db.commits.Add(1)
	return nil
}

// runInSavepoint runs one request inside a savepoint and undoes it alone if
// it fails. It returns an error only when the transaction itself is broken.
func (db *DB) runInSavepoint(tx *sql.Tx, request *writeRequest) error {
	if _, err := tx.Exec(`SAVEPOINT write_request`); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	seqBefore, directBefore := db.nextSeq, len(db.directAdded)
	if request.err = request.apply(tx); request.err != nil {
		db.nextSeq = seqBefore
		db.forgetDirect(directBefore)
		if _, err := tx.Exec(`ROLLBACK TO write_request`); err != nil {
			return fmt.Errorf("sqlite: rollback to savepoint: %w (after %w)", err, request.err)
		}
	}
	if _, err := tx.Exec(`RELEASE write_request`); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}
