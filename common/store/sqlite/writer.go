package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"

	"dce/common/store"
)

// The writer: one goroutine, one connection, group commit; and the
// publisher, one goroutine that finishes the committed batches in commit
// order.
//
// Concurrency contract:
//   - Every write is a writeRequest sent on db.requests by db.submit. Only
//     the writer goroutine (runWriter) runs writes (apply) and touches
//     db.writer, db.nextSeq and the batch being gathered.
//   - db.gate (RWMutex) orders sending on db.requests against closing it.
//     Senders hold it for reading while they check db.closed and send;
//     Close sets db.closed, then holds it for writing while it closes the
//     channel. There is no other lock, so there is no lock order to keep.
//   - runWriter takes every request waiting (up to maxBatch), runs them in
//     one IMMEDIATE transaction, COMMITs, and hands the batch, each request
//     with its outcome in request.err, to the publisher on db.committed.
//   - The publisher (runPublisher) takes the batches in the order they were
//     committed and, for each request in batch order, runs its committed
//     action if it succeeded, then answers it on its done channel
//     (buffered, so answering never blocks). Seqs are taken inside the
//     transaction (takeSeq) and batches commit one after another, so commit
//     order is seq order: the committed actions of every write, whoever
//     queued it, run one at a time, on one goroutine, in increasing seq
//     order, each after the commit that holds its write is durable and
//     before its waiter hears of it. A write that failed, or whose batch
//     failed, runs none.
//   - Batches go round between the two in db.spares: the writer takes an
//     empty batch from it (waiting only while the publisher is
//     publisherLag batches behind) and the publisher gives it back, so the
//     pipeline is bounded and allocates nothing per batch.
//   - When requests is closed and drained the writer closes db.committed
//     and exits; the publisher finishes what is left, then closes
//     writerDone.
//
// Rules for a write's apply:
//   - It may run twice. The batch first runs with no savepoints (the fast
//     path); if any apply returns an error, the transaction is rolled back
//     and the batch runs again with each apply inside its own savepoint, so
//     a failing write is undone alone and the others still commit. An
//     apply therefore sets its results afresh on every run.
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
//
// Rules for a write's committed action: it reads what apply recorded (the
// last run is the one committed), must not wait for long (the next
// batch's waiters wait behind it), and never waits on a write of this
// store (the publisher would wait on itself).

// A write is what a request asks of the writer.
type write interface {
	// apply runs the write in the batch's transaction (the rules above).
	apply(tx *sql.Tx) error
	// committed runs on the publisher once the commit that holds the
	// write is durable, in commit order, before the waiter is answered.
	committed()
}

// writeFunc is a write with nothing to do after its commit.
type writeFunc func(tx *sql.Tx) error

func (f writeFunc) apply(tx *sql.Tx) error { return f(tx) }
func (writeFunc) committed()               {}

// writeRequest is one write waiting for the writer.
type writeRequest struct {
	ctx   context.Context
	write write
	done  chan error // buffered: the publisher never blocks answering
	err   error      // the request's own outcome, set by the writer
}

// publisherLag is how many committed batches may wait for the publisher
// before the writer waits for it.
const publisherLag = 4

// errBatchRetry makes a batch run again with savepoints.
var errBatchRetry = errors.New("sqlite: a write failed; retrying the batch with savepoints")

// write queues apply and waits for the commit that holds it. If ctx ends
// first, write returns ctx.Err(), but apply may still run and commit: a
// caller that gives up cannot know whether its write is stored (a retry with
// the same idempotency key finds out). A request whose ctx has ended before
// its batch starts is skipped.
func (db *DB) write(ctx context.Context, apply func(tx *sql.Tx) error) error {
	request := &writeRequest{ctx: ctx, write: writeFunc(apply), done: make(chan error, 1)}
	if err := db.submit(request); err != nil {
		return err
	}
	return db.wait(request)
}

// submit queues request for the writer without waiting for its commit:
// writes submitted one after another from one goroutine commit in that
// order.
func (db *DB) submit(request *writeRequest) error {
	if err := request.ctx.Err(); err != nil {
		return err
	}
	db.gate.RLock()
	defer db.gate.RUnlock()
	if db.closed.Load() {
		return store.ErrClosed
	}
	select {
	case db.requests <- request:
		return nil
	case <-request.ctx.Done():
		return request.ctx.Err()
	}
}

// wait waits for a submitted write's answer, as write does.
func (db *DB) wait(request *writeRequest) error {
	select {
	case err := <-request.done:
		return err
	case <-request.ctx.Done():
		select {
		case err := <-request.done: // answered meanwhile: report the outcome
			return err
		default:
			return request.ctx.Err()
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
	defer close(db.committed)
	for {
		first, ok := <-db.requests
		if !ok {
			return
		}
		batch := append(<-db.spares, first)
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
		seqBefore := db.nextSeq
		db.commit(batch)
		if db.nextSeq != seqBefore { // messages changed: the indexer follows
			db.wakeIndexer()
		}
		db.committed <- batch // never blocks: there are only as many batches as its room
	}
}

// runPublisher is the publisher goroutine: for each committed batch, in
// commit order, it runs the committed action of every write that
// succeeded, then answers the requests, and gives the batch back.
func (db *DB) runPublisher() {
	defer close(db.writerDone)
	for batch := range db.committed {
		for _, request := range batch {
			if request.err == nil {
				runCommitted(request.write)
			}
			request.done <- request.err
		}
		clear(batch) // let the finished requests be collected
		db.spares <- batch[:0]
	}
}

// runCommitted runs w's committed action. A panic in it (a bug in what
// the caller does after the commit, such as a push) is logged and
// contained: the write is stored whatever happens after, so its waiter is
// answered as usual, and the publisher goes on with the writes behind it
// instead of taking the server down from a goroutine nobody recovers.
func runCommitted(w write) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("sqlite: a write's committed action panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	w.committed()
}

// commit runs one batch and records every request's outcome in its err.
func (db *DB) commit(batch []*writeRequest) {
	live := 0
	for _, request := range batch {
		request.err = request.ctx.Err() // its caller has gone: skip it
		if request.err == nil {
			live++
		}
	}
	if live == 0 {
		return
	}
	err := db.runBatch(batch, false)
	if errors.Is(err, errBatchRetry) {
		err = db.runBatch(batch, true)
	}
	if err != nil { // nothing of the batch is stored
		for _, request := range batch {
			if request.err == nil {
				request.err = err
			}
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
			if request.write.apply(tx) != nil {
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
	if request.err = request.write.apply(tx); request.err != nil {
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
