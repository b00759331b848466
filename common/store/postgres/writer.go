package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"

	"dce/common/store"
)

// The writer, the publisher and the listener.
//
// Concurrency contract:
//   - Every write is a writeRequest sent on db.requests by db.submit; only
//     the writer goroutine (runWriter) runs writes. db.gate orders sends
//     against Close closing the channel, as in the embedded engine.
//   - runWriter takes every request waiting (up to maxBatch) and runs them
//     in one READ COMMITTED transaction on a connection of the pool. If any
//     of them takes seqs (takesSeqs), the transaction first locks the
//     counter row (SELECT v FROM seq_counter FOR UPDATE), so every
//     transaction of every instance that takes seqs locks it before any
//     other row: the lock order is the same everywhere and such
//     transactions never deadlock on each other. Seqs are handed out from
//     the value read, one per change, each with a row of the changes log;
//     before the COMMIT one round trip writes the log rows, sets the
//     counter to the last seq and runs pg_notify. The lock is held until
//     the commit, and PostgreSQL makes a commit visible before it releases
//     the transaction's locks, so these transactions commit in seq order
//     and every snapshot sees a prefix of the sequence, with no gap.
//   - A COMMIT that fails may have committed (the connection broke on the
//     way back). For a batch that took seqs the writer finds out (resolve):
//     it waits for the counter's lock, which any transaction holding it has
//     then released, and looks for the batch's first log row. Its waiters
//     hear the truth; if that cannot be learnt before Close, they get the
//     error, never a success.
//   - Committed batches go to the publisher (runPublisher) in commit order.
//     It alone hands changes on: for a local batch it first reads and hands
//     to Options.Remote every change of the log below the batch's first seq
//     it has not handed on (they are committed: prefix), then runs, in
//     batch order, the committed action of every write that succeeded and
//     answers its waiter. When woken by a notification (runListener), or by
//     the poll, it reads the log above what it handed on and hands the
//     other instances' changes to Remote, stopping at the first of this
//     instance's own (its batch is on its way). So Remote calls and
//     committed actions are one stream, one at a time, in seq order.
//
// Rules for a write's apply are the embedded engine's: it may run twice
// (a batch that fails is run again with each write in its own savepoint,
// so a failing write is undone alone), sets its results afresh each run,
// returns an error only when something failed (an expected outcome that
// stores nothing is a result, not an error: in PostgreSQL an error aborts
// the whole transaction), runs its statements without the caller's ctx,
// and never calls db.write.

// A write is what a request asks of the writer.
type write interface {
	apply(t *txn) error
	committed()
	// takesSeqs reports whether the write may store changes, so that the
	// batch locks the counter first.
	takesSeqs() bool
}

// writeFunc is a write that takes no seq and has nothing to do after its
// commit.
type writeFunc func(t *txn) error

func (f writeFunc) apply(t *txn) error { return f(t) }
func (writeFunc) committed()           {}
func (writeFunc) takesSeqs() bool      { return false }

type writeRequest struct {
	ctx   context.Context
	write write
	done  chan error // buffered
	err   error      // set by the writer
}

// batch is one group commit as the publisher gets it: its requests and
// the seqs its changes took (first 0: none).
type batch struct {
	requests    []*writeRequest
	first, last int64
}

// txn is one batch's transaction, owned by the writer goroutine.
type txn struct {
	db      *DB
	tx      pgx.Tx
	ctx     context.Context // background: a caller giving up must not abort the batch
	locked  bool
	first   int64 // the batch's first seq, once locked
	next    int64 // the next seq to hand out
	changes []changeRow
	direct  []directPair // noteDirect's additions, forgotten if the batch fails
}

// changeRow is one row of the changes log, to be written before COMMIT.
type changeRow struct {
	seq       int64
	kind      store.ChangeKind
	messageID int64
	group     []byte // JSON of a storedGroupChange; nil for a message change
}

// publisherLag is how many committed batches may wait for the publisher
// before the writer waits for it.
const publisherLag = 4

var errBatchRetry = errors.New("postgres: a write failed; retrying the batch with savepoints")

// lockCounter locks the counter row and reads the last seq.
func (t *txn) lockCounter() error {
	if t.locked {
		return nil
	}
	var v int64
	if err := t.tx.QueryRow(t.ctx, `SELECT v FROM seq_counter FOR UPDATE`).Scan(&v); err != nil {
		return fmt.Errorf("postgres: locking the counter: %w", err)
	}
	t.locked, t.first, t.next = true, v+1, v+1
	return nil
}

// reserveSeq hands out the next seq; the write either logs a change with
// it (logChange) or gives it back (giveBack) before it returns.
func (t *txn) reserveSeq() (int64, error) {
	if err := t.lockCounter(); err != nil {
		return 0, err
	}
	seq := t.next
	t.next++
	return seq, nil
}

// giveBack returns the last seq reserved, unused.
func (t *txn) giveBack(seq int64) {
	if seq == t.next-1 {
		t.next--
	}
}

func (t *txn) logChange(seq int64, kind store.ChangeKind, messageID int64, group []byte) {
	t.changes = append(t.changes, changeRow{seq: seq, kind: kind, messageID: messageID, group: group})
}

// write queues apply (a write that takes no seq) and waits for the commit
// that holds it; as the embedded engine's, a caller whose ctx ends first
// gets ctx.Err() and cannot know whether the write is stored.
func (db *DB) write(ctx context.Context, apply func(t *txn) error) error {
	request := &writeRequest{ctx: ctx, write: writeFunc(apply), done: make(chan error, 1)}
	if err := db.submit(request); err != nil {
		return err
	}
	return db.wait(request)
}

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

func (db *DB) wait(request *writeRequest) error {
	select {
	case err := <-request.done:
		return err
	case <-request.ctx.Done():
		select {
		case err := <-request.done:
			return err
		default:
			return request.ctx.Err()
		}
	}
}

// runWriter is the writer goroutine.
func (db *DB) runWriter() {
	defer close(db.committed)
	for {
		first, ok := <-db.requests
		if !ok {
			return
		}
		requests := []*writeRequest{first}
		gathered := 0
	gather:
		for len(requests) < db.maxBatch {
			select {
			case request, ok := <-db.requests:
				if !ok {
					break gather
				}
				requests = append(requests, request)
			default:
				if len(requests) == gathered {
					break gather
				}
				gathered = len(requests)
				runtime.Gosched()
			}
		}
		db.committed <- db.commit(requests)
	}
}

// commit runs one batch and records every request's outcome.
func (db *DB) commit(requests []*writeRequest) *batch {
	b := &batch{requests: requests}
	live, seqs := 0, false
	for _, request := range requests {
		request.err = request.ctx.Err()
		if request.err == nil {
			live++
			seqs = seqs || request.write.takesSeqs()
		}
	}
	if live == 0 {
		return b
	}
	db.batches++
	t, err := db.runBatch(requests, seqs, false)
	if errors.Is(err, errBatchRetry) {
		t, err = db.runBatch(requests, seqs, true)
	}
	if err != nil {
		for _, request := range requests {
			if request.err == nil {
				request.err = err
			}
		}
		return b
	}
	if len(t.changes) > 0 {
		b.first, b.last = t.first, t.next-1
	}
	return b
}

// runBatch runs the live requests in one transaction and commits; any
// error returned means nothing of the batch is stored.
func (db *DB) runBatch(requests []*writeRequest, seqs, savepoints bool) (*txn, error) {
	ctx := context.Background()
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("postgres: begin: %w", err)
	}
	t := &txn{db: db, tx: tx, ctx: ctx}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback(ctx)
			db.forgetDirect(t.direct)
		}
	}()
	if seqs {
		if err := t.lockCounter(); err != nil {
			return nil, err
		}
	}
	for _, request := range requests {
		if request.err != nil {
			continue
		}
		if !savepoints {
			if err := request.write.apply(t); err != nil {
				if tx.Conn().IsClosed() {
					return nil, err
				}
				return nil, errBatchRetry
			}
			continue
		}
		if err := db.runInSavepoint(t, request); err != nil {
			return nil, err
		}
	}
	if len(t.changes) > 0 {
		if err := t.finish(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		if len(t.changes) == 0 || !db.resolve(t) {
			return nil, fmt.Errorf("postgres: commit: %w", err)
		}
	}
	committed = true
	db.commits.Add(1)
	return t, nil
}

// runInSavepoint runs one request in a savepoint and undoes it alone if it
// fails; an error returned means the transaction itself is broken.
func (db *DB) runInSavepoint(t *txn, request *writeRequest) error {
	outer := t.tx
	savepoint, err := outer.Begin(t.ctx)
	if err != nil {
		return fmt.Errorf("postgres: savepoint: %w", err)
	}
	next, changes, direct := t.next, len(t.changes), len(t.direct)
	t.tx = savepoint
	request.err = request.write.apply(t)
	t.tx = outer
	if request.err != nil {
		t.next, t.changes = next, t.changes[:changes]
		db.forgetDirect(t.direct[direct:])
		t.direct = t.direct[:direct]
		if err := savepoint.Rollback(t.ctx); err != nil {
			return fmt.Errorf("postgres: rollback to savepoint: %w (after %w)", err, request.err)
		}
		return nil
	}
	if err := savepoint.Commit(t.ctx); err != nil {
		return fmt.Errorf("postgres: release savepoint: %w", err)
	}
	return nil
}

// finish writes the batch's log rows, moves the counter to its last seq
// and signals the other instances (delivered at commit), in one round
// trip.
func (t *txn) finish() error {
	n := len(t.changes)
	seqs, kinds, ids := make([]int64, n), make([]int16, n), make([]*int64, n)
	groups := make([]*string, n)
	for i, c := range t.changes {
		seqs[i], kinds[i] = c.seq, int16(c.kind)
		if c.group != nil {
			text := string(c.group)
			groups[i] = &text
		} else {
			id := c.messageID
			ids[i] = &id
		}
	}
	last := t.next - 1
	var queue pgx.Batch
	queue.Queue(`INSERT INTO changes (seq, kind, message_id, group_change, origin, batch)
		SELECT s, k, m, g::jsonb, $5, $6 FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[]) AS c (s, k, m, g)`,
		seqs, kinds, ids, groups, t.db.origin, t.db.batches)
	queue.Queue(`UPDATE seq_counter SET v = $1`, last)
	queue.Queue(`SELECT pg_notify($1, $2)`, notifyChannel, fmt.Sprint(last))
	if err := t.tx.SendBatch(t.ctx, &queue).Close(); err != nil {
		return fmt.Errorf("postgres: writing the changes log: %w", err)
	}
	return nil
}

// resolve finds out whether a batch whose COMMIT failed is stored: once
// the counter's lock can be taken, no transaction holding it is still
// open, and the batch's first log row tells. It retries while the server
// is unreachable, until Close.
func (db *DB) resolve(t *txn) bool {
	for attempt := 0; ; attempt++ {
		var stored bool
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT v FROM seq_counter FOR UPDATE`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM changes WHERE seq = $1 AND origin = $2 AND batch = $3)`,
				t.first, db.origin, db.batches).Scan(&stored)
		})
		cancel()
		if err == nil {
			return stored
		}
		if db.closed.Load() && attempt >= 10 {
			slog.Error("postgres: could not learn whether a batch whose commit failed is stored", "first", t.first, "err", err)
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runPublisher is the publisher goroutine; handed is the last seq handed
// on.
func (db *DB) runPublisher(handed int64) {
	defer close(db.writerDone)
	ticker := time.NewTicker(db.poll)
	defer ticker.Stop()
	for {
		select {
		case b, ok := <-db.committed:
			if !ok {
				return
			}
			db.publishBatch(b, &handed)
		case <-db.wake:
			db.catchUp(&handed, 0)
		case <-ticker.C:
			db.catchUp(&handed, 0)
		}
	}
}

// poke wakes the publisher to read the log.
func (db *DB) poke() {
	select {
	case db.wake <- struct{}{}:
	default:
	}
}

// publishBatch hands on the changes below a local batch, then runs the
// batch's committed actions and answers its waiters.
func (db *DB) publishBatch(b *batch, handed *int64) {
	if b.first > 0 {
		for attempt := 0; *handed < b.first-1; attempt++ {
			err := db.catchUp(handed, b.first-1)
			if err == nil {
				break
			}
			if db.closed.Load() && attempt >= 20 {
				slog.Error("postgres: could not read the changes before a local batch; its actions run without them",
					"from", *handed+1, "to", b.first-1, "err", err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		*handed = b.last
	}
	for _, request := range b.requests {
		if request.err == nil {
			runCommitted(request.write.committed)
		}
		request.done <- request.err
	}
}

// catchUpPage is how many log rows the publisher reads at a time.
const catchUpPage = 512

// catchUp reads the log above *handed (up to upTo when above 0) and hands
// each change to Remote. Without upTo it stops at this instance's own
// first change (its batch is on its way to the publisher).
func (db *DB) catchUp(handed *int64, upTo int64) error {
	for {
		ctx, cancel := context.WithTimeout(db.stopCtx, 10*time.Second)
		changes, own, err := db.readChanges(ctx, *handed, upTo)
		cancel()
		if err != nil {
			return err
		}
		for i, change := range changes {
			if upTo == 0 && own[i] {
				return nil
			}
			if change.Seq != *handed+1 {
				slog.Error("postgres: the changes log has a gap", "after", *handed, "next", change.Seq)
			}
			*handed = change.Seq
			if db.remote != nil {
				runCommitted(func() { db.remote(change) })
			}
		}
		if len(changes) < catchUpPage {
			return nil
		}
	}
}

// runCommitted runs an after-commit action, containing a panic in it (a
// bug in what the caller does after the commit) as the embedded engine
// does: the change is stored whatever happens after.
func runCommitted(action func()) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("postgres: an after-commit action panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	action()
}

// runListener keeps a LISTEN connection to the database and wakes the
// publisher on every notification, and each time it has (re)connected,
// until Close. A lost connection is made again; meanwhile the poll covers.
func (db *DB) runListener(config *pgx.ConnConfig) {
	defer db.background.Done()
	ctx := db.stopCtx
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, config)
		if err == nil {
			if _, err = conn.Exec(ctx, `LISTEN `+notifyChannel); err == nil {
				db.listenerPID.Store(conn.PgConn().PID())
				db.poke()
				for {
					if _, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					db.poke()
				}
			}
			conn.Close(context.Background())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
