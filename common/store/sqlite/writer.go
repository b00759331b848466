package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"dce/common/store"
)

// The writer: one goroutine, one connection, group commit.
//
// Concurrency contract:
//   - Every write is a closure func(tx *sql.Tx) error sent on db.requests
//     by db.write. Only the writer goroutine (runWriter) runs closures and
//     touches db.writer, db.nextSeq and the batch slice.
//   - db.gate (RWMutex) guards db.closed and sending on db.requests.
//     Senders hold it for reading while they check closed and send; Close
//     holds it for writing while it sets closed and closes the channel.
//     There is no other lock, so there is no lock order to keep.
//   - runWriter takes every request waiting (up to maxBatch), runs them in
//     one IMMEDIATE transaction, COMMITs, and only then answers each
//     request on its done channel (buffered, so answering never blocks).
//     When requests is closed and drained it closes writerDone and exits.
//
// A closure may run twice: the batch first runs with no savepoints (the
// fast path); if any closure fails, the transaction is rolled back and the
// batch runs again with each closure inside its own savepoint, so a
// failing write is undone alone and the others still commit. A closure
// must therefore set its results afresh on every run, and must use tx only
// for the duration of the call.

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
	if err := ctx.Err(); err != nil {
		return err
	}
	request := &writeRequest{ctx: ctx, apply: apply, done: make(chan error, 1)}
	db.gate.RLock()
	if db.closed {
		db.gate.RUnlock()
		return store.ErrClosed
	}
	select {
	case db.requests <- request:
		db.gate.RUnlock()
	case <-ctx.Done():
		db.gate.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-request.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeSeq hands out the next change sequence number. Call it only from a
// write closure: the writer goroutine owns nextSeq, and rolls it back if
// the closure or its batch fails.
func (db *DB) takeSeq() int64 {
	seq := db.nextSeq
	db.nextSeq++
	return seq
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
		yielded := false
	gather:
		for len(batch) < db.maxBatch {
			select {
			case request, ok := <-db.requests:
				if !ok {
					break gather // closed: commit this batch, then exit above
				}
				batch = append(batch, request)
			default:
				if yielded {
					break gather
				}
				// Let the writers just answered queue their next write,
				// so that it joins this commit rather than the next.
				runtime.Gosched()
				yielded = true
			}
		}
		db.commit(batch)
		DebugBatches.Add(1); DebugRequests.Add(int64(len(batch)))
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
	tx, err := db.writer.Begin() // BEGIN IMMEDIATE: _txlock in the DSN
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			db.nextSeq = seqAtStart
		}
	}()
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
	return nil
}

// runInSavepoint runs one request inside a savepoint and undoes it alone if
// it fails. It returns an error only when the transaction itself is broken.
func (db *DB) runInSavepoint(tx *sql.Tx, request *writeRequest) error {
	if _, err := tx.Exec(`SAVEPOINT write_request`); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	seqBefore := db.nextSeq
	if request.err = request.apply(tx); request.err != nil {
		db.nextSeq = seqBefore
		if _, err := tx.Exec(`ROLLBACK TO write_request`); err != nil {
			return fmt.Errorf("sqlite: rollback to savepoint: %w (after %w)", err, request.err)
		}
	}
	if _, err := tx.Exec(`RELEASE write_request`); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}

var DebugBatches, DebugRequests atomic.Int64
