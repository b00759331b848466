// Package postgres is the store for several nodes: users, sessions,
// messages and groups in one PostgreSQL database (pgx v5, pgxpool), shared
// by every node, with the same contracts as the embedded engine
// (common/store/sqlite); the storetest suite holds both to them.
//
// Every write of one engine instance goes through one goroutine that
// commits waiting writes together (group commit, writer.go) with
// synchronous_commit on: a write returns only after the COMMIT that holds
// it is durable. The change sequence is gap-free across instances
// (writer.go): the transactions that take seqs lock one counter row, so
// they commit in seq order, and every seq is one row of the changes log.
// One publisher goroutine per instance hands every change on in seq
// order: this instance's through their after-commit actions, the other
// instances' to Options.Remote, woken by LISTEN/NOTIFY and a poll.
//
// Times are stored as Unix milliseconds, so they come back truncated to the
// millisecond.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dce/common/store"
)

// Options configures Open.
type Options struct {
	// DSN is the database's URL or key=value string, as pgx reads it
	// (postgres://user@host:port/db?sslmode=disable).
	DSN string
	// MaxBatch is the most writes in one group commit; default
	// DefaultMaxBatch.
	MaxBatch int
	// MaxConns bounds the pool of connections (readers, the writer, the
	// publisher); default DefaultMaxConns. The LISTEN connection is one
	// more, outside the pool.
	MaxConns int
	Now      func() time.Time // default time.Now
	// SessionSweep is how often expired sessions are removed; default
	// DefaultSessionSweep, negative never.
	SessionSweep time.Duration
	// Remote, when not nil, gets every change another instance (node)
	// stored, in seq order, on the publisher goroutine, one at a time,
	// interleaved in seq order with this instance's after-commit actions
	// (AppendLater's published, the group writes' committed): whoever
	// follows both sees every change once, in increasing, contiguous seq
	// order from the seq the store had at Open. Like published it must
	// not wait for long and must not call the store's writes.
	Remote func(store.Change)
	// Poll is how often the publisher reads the changes log even if no
	// notification came (a lost LISTEN connection); default DefaultPoll.
	Poll time.Duration
}

// Defaults of Options.
const (
	DefaultMaxBatch     = 1024
	DefaultMaxConns     = 16
	DefaultSessionSweep = 5 * time.Minute
	DefaultPoll         = time.Second
)

// notifyChannel is the NOTIFY channel every writing transaction that
// stores changes signals on.
const notifyChannel = "dce_changes"

// migrationLock is the pg_advisory_lock key migrations run under, so that
// nodes starting at once migrate one after another.
const migrationLock = 0x64636500 // "dce\0"

// DB is the PostgreSQL store. Its methods are safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	remote func(store.Change)
	poll   time.Duration
	origin string // this instance's name in the changes log

	// The write queue (writer.go); gate orders sends against closing, as
	// in the embedded engine.
	gate       sync.RWMutex
	closed     atomic.Bool
	requests   chan *writeRequest
	maxBatch   int
	committed  chan *batch // committed batches, writer to publisher, in commit order
	writerDone chan struct{}
	commits    atomic.Int64
	batches    int64 // batch number, owned by the writer

	wake        chan struct{} // the listener (or anything) asks the publisher to read the log
	stop        context.CancelFunc
	stopCtx     context.Context
	background  sync.WaitGroup // listener and janitor
	listenerPID atomic.Uint32  // the LISTEN connection's backend, for tests

	directMu    sync.Mutex // guards directKnown (the writer alone writes it, tests read)
	directKnown map[directPair]struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the database, creates or migrates the schema (under an
// advisory lock, so several nodes may start at once), and starts the
// writer, the publisher and the LISTEN connection. The publisher hands on
// the changes stored after Open read the last seq.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.DSN == "" {
		return nil, errors.New("postgres: no DSN")
	}
	config, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	config.MaxConns = int32(opts.MaxConns)
	if config.MaxConns <= 0 {
		config.MaxConns = DefaultMaxConns
	}
	if config.ConnConfig.RuntimeParams == nil {
		config.ConnConfig.RuntimeParams = map[string]string{}
	}
	// Acked means durable: the COMMIT returns once its WAL is flushed.
	config.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connecting: %w", err)
	}
	db := &DB{
		pool:       pool,
		now:        opts.Now,
		remote:     opts.Remote,
		poll:       opts.Poll,
		maxBatch:   opts.MaxBatch,
		writerDone: make(chan struct{}),
		wake:       make(chan struct{}, 1),
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.maxBatch <= 0 {
		db.maxBatch = DefaultMaxBatch
	}
	if db.poll <= 0 {
		db.poll = DefaultPoll
	}
	var name [8]byte
	rand.Read(name[:])
	db.origin = hex.EncodeToString(name[:])
	if err := migrate(ctx, pool, db.now); err != nil {
		pool.Close()
		return nil, err
	}
	var handed int64
	if err := pool.QueryRow(ctx, `SELECT v FROM seq_counter`).Scan(&handed); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: reading the last seq: %w", err)
	}
	db.requests = make(chan *writeRequest, db.maxBatch)
	db.committed = make(chan *batch, publisherLag)
	db.stopCtx, db.stop = context.WithCancel(context.Background())
	go db.runWriter()
	go db.runPublisher(handed)
	db.background.Add(1)
	go db.runListener(config.ConnConfig.Copy())
	if opts.SessionSweep >= 0 {
		interval := opts.SessionSweep
		if interval == 0 {
			interval = DefaultSessionSweep
		}
		if _, err := db.DeleteExpiredSessions(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("postgres: removing expired sessions: %w", err)
		}
		db.background.Add(1)
		go db.runJanitor(interval)
	}
	return db, nil
}

// runJanitor removes expired sessions every interval until Close.
func (db *DB) runJanitor(interval time.Duration) {
	defer db.background.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-db.stopCtx.Done():
			return
		case <-ticker.C:
			db.DeleteExpiredSessions(db.stopCtx)
		}
	}
}

// Close stops taking writes (they get store.ErrClosed), commits every write
// already queued, hands on what the publisher has, and closes the pool. It
// is idempotent and returns the same error each time.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		db.gate.Lock()
		close(db.requests)
		db.gate.Unlock()
		<-db.writerDone
		db.stop()
		db.background.Wait()
		db.pool.Close()
	})
	return db.closeErr
}

// checkOpen reports store.ErrClosed once Close has begun.
func (db *DB) checkOpen() error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Commits is how many group commits the writer has made since Open.
func (db *DB) Commits() int64 { return db.commits.Load() }

// IntegrityCheck checks the change sequence: the counter is the last seq
// of the log, the log has every seq from 1 to it, and every message's seq
// above where the log begins (a copied store's base) is in the log
// naming it. It returns "ok", or one finding per line.
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	if err := db.checkOpen(); err != nil {
		return "", err
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx)
	var counter, base, count, last int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT v FROM seq_counter), (SELECT base FROM seq_counter), COUNT(*), COALESCE(MAX(seq), 0) FROM changes`).
		Scan(&counter, &base, &count, &last); err != nil {
		return "", err
	}
	last = max(last, base)
	var findings []string
	if counter != last {
		findings = append(findings, fmt.Sprintf("the counter is %d but the last change is %d", counter, last))
	}
	if count != last-base {
		findings = append(findings, fmt.Sprintf("the log holds %d changes from seq %d to %d: it has gaps", count, base+1, last))
	}
	var orphans int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM messages m WHERE m.seq > (SELECT base FROM seq_counter)
		AND NOT EXISTS (SELECT 1 FROM changes c WHERE c.seq = m.seq AND c.message_id = m.id)`).Scan(&orphans); err != nil {
		return "", err
	}
	if orphans > 0 {
		findings = append(findings, fmt.Sprintf("%d messages have a seq the log does not give them", orphans))
	}
	if len(findings) == 0 {
		return "ok", nil
	}
	return strings.Join(findings, "\n"), nil
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations lists the embedded migrations in version order.
func migrations() ([]store.Migration, error) {
	return store.Migrations("postgres", migrationFiles, "migrations/*.sql")
}

// migrate applies every migration newer than schema_version records, each
// in its own transaction, all under a session advisory lock held on one
// connection: nodes starting at once wait for each other, and each finds
// what the one before applied.
func migrate(ctx context.Context, pool *pgxpool.Pool, now func() time.Time) error {
	list, err := migrations()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("postgres: taking the migration lock: %w", err)
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version integer PRIMARY KEY,
		applied bigint  NOT NULL
	)`); err != nil {
		return fmt.Errorf("postgres: creating schema_version: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("postgres: reading schema_version: %w", err)
	}
	if len(list) > 0 && current > list[len(list)-1].Version {
		return fmt.Errorf("postgres: the database is at schema version %d, newer than this program's %d", current, list[len(list)-1].Version)
	}
	for _, m := range list {
		if m.Version <= current {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_version (version, applied) VALUES ($1, $2)`, m.Version, now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// The stored times (store.UnixMilli).
var (
	unixMilli     = store.UnixMilli
	fromUnixMilli = store.FromUnixMilli
)
