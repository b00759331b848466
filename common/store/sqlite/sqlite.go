// Package sqlite is the embedded durable store: users, sessions and messages
// in one SQLite file (modernc.org/sqlite, pure Go), and the search index of
// their texts in a second file next to it, kept by a goroutine of its own
// (indexer.go).
//
// The file is opened twice: a writer handle with a single connection, whose
// transactions BEGIN IMMEDIATE, and a pool of read-only connections. Every
// PRAGMA is in the DSN, so each pooled connection gets it. Every write goes
// through one goroutine that commits waiting writes together (group commit,
// see writer.go): a write returns only after the COMMIT that holds it, and
// with synchronous=FULL (the default) one fsync covers the whole batch.
//
// Times are stored as Unix milliseconds, so they come back truncated to the
// millisecond.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dce/common/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Options configures Open.
type Options struct {
	Path        string           // database file; its directory is created 0700 if missing
	Synchronous string           // "FULL" (default) or "NORMAL"
	MaxBatch    int              // most writes in one group commit; default DefaultMaxBatch
	Now         func() time.Time // default time.Now
	// SessionSweep is how often expired sessions are removed (janitor.go);
	// default DefaultSessionSweep, negative never. Open removes them once
	// before it returns unless it is negative.
	SessionSweep time.Duration

	// withoutSearchIndex opens no search index and runs no indexer:
	// set only by the benchmark that measures what the index costs
	// appends (search_bench_test.go). Search then matches every message
	// by a scan.
	withoutSearchIndex bool
	// indexerStopped opens the search index but starts no indexer: the
	// index stays where Open found it, until Close drains it. Set only by
	// tests of a search index left behind.
	indexerStopped bool
}

// DefaultMaxBatch is the most writes one group commit takes when
// Options.MaxBatch is 0.
const DefaultMaxBatch = 1024

// DB is the SQLite store. Its methods are safe for concurrent use.
type DB struct {
	writer *sql.DB // one connection; used only by the writer goroutine after Open
	reader *sql.DB // read-only pool
	now    func() time.Time

	// The write queue (writer.go). gate orders sends on requests against
	// closing it: senders hold it for reading while they check closed and
	// send, Close holds it for writing while it closes the channel, so no
	// send happens on a closed channel and every send that got in is served.
	gate       sync.RWMutex
	closed     atomic.Bool // set once Close begins; writes and reads check it
	requests   chan *writeRequest
	maxBatch   int
	committed  chan []*writeRequest // committed batches, writer to publisher, in commit order
	spares     chan []*writeRequest // empty batches, publisher to writer
	writerDone chan struct{}        // closed once the writer and the publisher are done
	commits    atomic.Int64         // group commits done (Commits)

	// nextSeq is the seq the next change gets. Owned by the writer
	// goroutine (and by Open before it starts); write closures use it
	// through takeSeq.
	nextSeq int64

	// directKnown holds the (user, private conversation) pairs that
	// direct_conversations has, or that the running batch has added; the
	// batch's additions are also in directAdded, to be forgotten if it
	// rolls back. Owned by the writer goroutine (noteDirect).
	directKnown map[directPair]struct{}
	directAdded []directPair

	// index is the search index's file and its indexer (indexer.go); nil
	// with Options.withoutSearchIndex.
	index *indexer

	statements      statements
	boundStatements boundStatements // owned by the writer goroutine

	janitor janitor

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database at opts.Path, applies the
// migrations it lacks, and starts the writer. Another process may open the
// same file (the command line does): each group commit takes up from the
// file's last seq under the write lock, so seqs stay unique and increasing.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Path == "" {
		return nil, errors.New("sqlite: no database path")
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: database path %q contains '?'", path)
	}
	synchronous := strings.ToUpper(opts.Synchronous)
	switch synchronous {
	case "":
		synchronous = "FULL"
	case "FULL", "NORMAL":
	default:
		return nil, fmt.Errorf("sqlite: synchronous must be FULL or NORMAL, not %q", opts.Synchronous)
	}
	if err := createFile(path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	db := &DB{
		now:        opts.Now,
		maxBatch:   opts.MaxBatch,
		writerDone: make(chan struct{}),
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.maxBatch <= 0 {
		db.maxBatch = DefaultMaxBatch
	}
	db.requests = make(chan *writeRequest, db.maxBatch)
	db.committed = make(chan []*writeRequest, publisherLag)
	db.spares = make(chan []*writeRequest, publisherLag)
	for range publisherLag {
		db.spares <- make([]*writeRequest, 0, db.maxBatch)
	}

	if db.writer, err = sql.Open("sqlite", dsn(path, synchronous, true)); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)
	if err := migrate(ctx, db.writer, db.now); err != nil {
		db.writer.Close()
		return nil, err
	}

	// Readers are opened after the writer has switched the file to WAL.
	if db.reader, err = sql.Open("sqlite", dsn(path, synchronous, false)); err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	db.reader.SetMaxOpenConns(readers)
	db.reader.SetMaxIdleConns(readers)

	if err := db.writer.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM messages`).Scan(&db.nextSeq); err != nil {
		db.closeHandles(false)
		return nil, fmt.Errorf("sqlite: reading the last seq: %w", err)
	}
	if err := db.statements.prepare(ctx, db.writer, db.reader); err != nil {
		db.closeHandles(false)
		return nil, err
	}
	if !opts.withoutSearchIndex {
		if err := db.openIndex(ctx, path, readers); err != nil {
			db.closeIndex(false)
			db.closeHandles(false)
			return nil, err
		}
	}
	go db.runWriter()
	go db.runPublisher()
	if !opts.indexerStopped {
		db.startIndexer()
	}
	if err := db.startJanitor(ctx, opts.SessionSweep); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// dsn builds the data source name. Every PRAGMA is here, so that each
// connection database/sql opens gets them, not only the first.
func dsn(path, synchronous string, writer bool) string {
	query := url.Values{}
	query.Add("_pragma", "busy_timeout(5000)")
	query.Add("_pragma", "journal_mode(WAL)")
	query.Add("_pragma", "synchronous("+synchronous+")")
	query.Add("_pragma", "foreign_keys(1)")
	// Pages cached in memory per connection (negative: KiB): with the
	// default 2 MiB the writer spent a sixth of its time re-reading index
	// pages. A ceiling; memory is used as pages are touched. (A memory map
	// gained little more and made every page read count in the RSS.)
	query.Add("_pragma", "cache_size(-32768)")
	// Copy the WAL back into the database every 10,000 pages (40 MiB)
	// rather than SQLite's 1,000: the pages a busy store rewrites most
	// (index leaves, the table's last page) are then copied once per
	// checkpoint instead of ten times. Durable private messages took about
	// a fifth less CPU each. The WAL file keeps that size on disk.
	query.Add("_pragma", "wal_autocheckpoint(10000)")
	// A deleted message loses its text in the file too (PROTOCOL.md
	// section 3): SQLite overwrites the space a row or page gives up with
	// zeros instead of leaving the old bytes there. The search index does
	// the same for its entries ('secure-delete', indexer.go), and a clean
	// Close empties both files' write-ahead logs (checkpointAndTruncate).
	query.Add("_pragma", "secure_delete(1)")
	if writer {
		// A deferred transaction that later writes can fail with
		// SQLITE_BUSY without waiting out busy_timeout; take the lock first.
		query.Set("_txlock", "immediate")
	} else {
		query.Set("_query_only", "1")
	}
	return path + "?" + query.Encode()
}

// createFile makes the database's directory (0700) and an empty file (0600)
// if they are missing; SQLite gives its -wal and -shm files the file's mode.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return file.Close()
}

// Close stops taking writes (they get store.ErrClosed), commits every write
// already queued, and closes the file. It is idempotent and returns the same
// error each time.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.stopJanitor()
		db.closed.Store(true)
		db.gate.Lock() // waits for the senders that saw closed false
		close(db.requests)
		db.gate.Unlock()
		<-db.writerDone
		db.closeErr = errors.Join(db.closeIndex(true), db.closeHandles(true))
	})
	return db.closeErr
}

// closeHandles closes the statements and both handles; with checkpoint,
// it empties the write-ahead log into the file first, once the readers
// are closed (checkpointAndTruncate).
func (db *DB) closeHandles(checkpoint bool) error {
	err := db.statements.close()
	if db.reader != nil {
		err = errors.Join(err, db.reader.Close())
	}
	if checkpoint && err == nil {
		err = checkpointAndTruncate(db.writer)
	}
	return errors.Join(err, db.writer.Close())
}

// checkpointAndTruncate copies every page of the write-ahead log of
// writer's file (the store's or the search index's) into the file and
// truncates the log to nothing: the log holds old versions of pages, the text of deleted messages among them, and after a
// clean stop nothing of those may remain in the store's files. Another
// process reading the file at that moment (the command line) keeps the
// log from being emptied; that is not an error, and the next clean stop
// empties it.
func checkpointAndTruncate(writer *sql.DB) error {
	var busy, logPages, checkpointed int
	if err := writer.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &checkpointed); err != nil {
		return fmt.Errorf("sqlite: checkpoint on close: %w", err)
	}
	return nil
}

// checkOpen reports store.ErrClosed once Close has begun, so reads after
// Close fail with the store's error rather than database/sql's.
func (db *DB) checkOpen() error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns its result: "ok"
// when the file is sound, else SQLite's findings, one per line.
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	if err := db.checkOpen(); err != nil {
		return "", err
	}
	rows, err := db.reader.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var findings []string
	for rows.Next() {
		var finding string
		if err := rows.Scan(&finding); err != nil {
			return "", err
		}
		findings = append(findings, finding)
	}
	return strings.Join(findings, "\n"), rows.Err()
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations lists the embedded migrations in version order.
func migrations() ([]store.Migration, error) {
	return store.Migrations("sqlite", migrationFiles, "migrations/*.sql")
}

// migrate applies, each in its own transaction, every migration newer than
// the schema_version table records.
func migrate(ctx context.Context, writer *sql.DB, now func() time.Time) error {
	list, err := migrations()
	if err != nil {
		return err
	}
	if _, err := writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER PRIMARY KEY,
		applied INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("sqlite: creating schema_version: %w", err)
	}
	var current int
	if err := writer.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("sqlite: reading schema_version: %w", err)
	}
	if len(list) > 0 && current > list[len(list)-1].Version {
		return fmt.Errorf("sqlite: the database is at schema version %d, newer than this program's %d", current, list[len(list)-1].Version)
	}
	for _, m := range list {
		if m.Version <= current {
			continue
		}
		if err := applyMigration(ctx, writer, m, now()); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, writer *sql.DB, m store.Migration, now time.Time) error {
	tx, err := writer.BeginTx(ctx, nil) // IMMEDIATE: holds the write lock
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var applied int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_version WHERE version = ?`, m.Version).Scan(&applied); err != nil {
		return err
	}
	if applied > 0 {
		return nil // another process applied it meanwhile
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied) VALUES (?, ?)`, m.Version, now.UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// The stored times (store.UnixMilli).
var (
	unixMilli     = store.UnixMilli
	fromUnixMilli = store.FromUnixMilli
)
