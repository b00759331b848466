package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// The search index (im/search) lives in a second SQLite file next to the
// store (SearchIndexPath: dce.db -> dce-search.db), with its own
// connections and its own goroutine, the indexer, so that tokenizing and
// writing the index never holds the store file's write lock nor takes the
// writer's time.
//
// Contract:
//   - The index file holds messages_search, an FTS5 trigram index of
//     message texts (its rowid is the message's id), and search_state's
//     watermark W: every
//     change (append, edit, delete) with seq <= W is reflected in
//     messages_search, and none with seq > W is, except that an entry
//     whose message changed after W may be stale or purged (Search
//     checks). W and the rows it covers are committed together.
//   - The indexer reads the changes with seq > W from the store file in
//     seq order (an edit or delete gives the row a new seq, so those rows
//     are every change since W), removes the old entry of each edited or
//     deleted row, adds the current text unless deleted, and commits with
//     W set to the last seq it read, in one transaction of the index
//     file. It reads only committed rows, and commits land in seq order
//     (writer.go), so W never passes a change that is not committed.
//     Each pass reads W inside its own write transaction, so two indexers
//     on one file (another process opening the store) serialize.
//   - The writer wakes the indexer after each commit that took a seq,
//     without waiting (wakeIndexer); the indexer also looks every
//     indexPoll for changes another process made.
//   - Search reads W and the index hits in one read transaction of the
//     index file, then the store file in one read transaction that starts
//     after it (so it holds every change up to W): the hits whose
//     message's current seq is <= W, plus the changes with seq > W matched
//     in the server. A message is found as soon as its write returned,
//     and never once deleted, however far behind the indexer is.
//   - Open, before it returns, removes from the index every entry whose
//     message was edited or deleted after W (purgeChanged): after a kill
//     -9 the index may be behind and hold a deleted message's words; they
//     are gone before the store serves a search. The indexer then
//     catches up in the background.
//   - Close drains the indexer (indexes everything up to the last seq)
//     and empties the index file's write-ahead log as it does the store's.
//   - The index file is derived data: synchronous=OFF (openIndexWriter);
//     after an unclean stop Open checks it (quick_check) and rebuilds it
//     from nothing if it is damaged, as it does an index file whose W is
//     above the store's last seq (the store file was replaced). Search
//     matches each hit's text again, so a damaged index can miss matches
//     (until it is rebuilt: remove the file) but never return a message
//     that does not contain the query.

// SearchIndexPath is the file that holds the search index of the store at
// path: the same name with "-search" before ".db" (dce.db -> dce-search.db),
// or after the name when it does not end in ".db".
func SearchIndexPath(path string) string {
	return strings.TrimSuffix(path, ".db") + "-search.db"
}

// indexBatch is the most changes one indexer transaction takes: large
// enough that FTS5 writes each term's doclist once for many messages.
const indexBatch = 4096

// indexPoll is how often the indexer looks for changes nobody woke it
// for (another process writing the store file).
const indexPoll = time.Second

// indexDelay is how long the indexer lets changes gather after a wake-up
// before it indexes them: FTS5 writes a segment per transaction, and few
// large ones cost it far less than many small ones (and take less of the
// processor the writer shares). Search does not wait for it.
const indexDelay = 50 * time.Millisecond

// indexRetry is how long the indexer waits after a failed pass.
const indexRetry = time.Second

// indexSchemaSQL creates the index file's tables, once. The FTS5 table
// keeps a copy of each text it indexes: with it, and 'secure-delete',
// removing a row removes its trigrams' entries from the index pages at
// once (and secure_delete zeroes the space they held). A contentless
// table (content=”, contentless_delete) only marks the row deleted: its
// trigrams stay in the file until a merge, so a deleted message's words
// would stay on disk.
const indexSchemaSQL = `
CREATE TABLE IF NOT EXISTS search_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    watermark INTEGER NOT NULL
);
INSERT OR IGNORE INTO search_state (id, watermark) VALUES (1, 0);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_search USING fts5 (
    text,
    tokenize = 'trigram',
    columnsize = 0
);
INSERT INTO messages_search (messages_search, rank) VALUES ('secure-delete', 1);`

const (
	watermarkSQL       = `SELECT watermark FROM search_state`
	setWatermarkSQL    = `UPDATE search_state SET watermark = ?`
	insertSearchSQL    = `INSERT INTO messages_search (rowid, text) VALUES (?, ?)`
	deleteSearchSQL    = `DELETE FROM messages_search WHERE rowid = ?`
	dropSearchTableSQL = `DROP TABLE messages_search`

	// changesSQL reads the changes above seq ?1 from the store file, in
	// seq order, at most ?2.
	changesSQL = `SELECT id, seq, text, edited, deleted FROM messages WHERE seq > ?1 ORDER BY seq LIMIT ?2`

	// changedSinceSQL lists the messages edited or deleted above seq ?1:
	// their index entries may be stale.
	changedSinceSQL = `SELECT id FROM messages WHERE seq > ?1 AND (edited = 1 OR deleted = 1)`
)

// indexer is the goroutine that keeps the index file (the contract above).
type indexer struct {
	writer *sql.DB // the index file, one connection
	reader *sql.DB // the index file, read-only pool (Search)

	wake     chan struct{} // buffered 1: a pending wake-up
	stop     chan struct{} // closed to stop the goroutine
	done     chan struct{} // closed when it has stopped
	started  bool          // the goroutine was started (set before it starts)
	stopOnce sync.Once
}

// openIndex opens (creating if needed, 0600) the index file of the store
// whose writer and reader are db's, rebuilds it if it is ahead of the
// store, and purges the entries of messages changed after its watermark.
// It does not start the goroutine (startIndexer).
func (db *DB) openIndex(ctx context.Context, path string, readers int) error {
	indexPath := SearchIndexPath(path)
	if err := createFile(indexPath); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	// A clean Close leaves no write-ahead log, or an empty one; one with
	// frames means the last opener stopped without closing (a kill -9, or
	// a power loss, which synchronous=OFF does not survive whole).
	info, err := os.Stat(indexPath + "-wal")
	unclean := err == nil && info.Size() > 0
	ix := &indexer{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	db.index = ix
	if ix.writer, err = openIndexWriter(indexPath); err != nil {
		return err
	}
	if unclean {
		if err := quickCheck(ctx, ix.writer); err != nil {
			slog.Warn("sqlite: the search index file is damaged; rebuilding it", "path", indexPath, "err", err)
			ix.writer.Close()
			for _, suffix := range []string{"", "-wal", "-shm"} {
				if err := os.Remove(indexPath + suffix); err != nil && !os.IsNotExist(err) {
					return fmt.Errorf("sqlite: %w", err)
				}
			}
			if err := createFile(indexPath); err != nil {
				return fmt.Errorf("sqlite: %w", err)
			}
			if ix.writer, err = openIndexWriter(indexPath); err != nil {
				return err
			}
		}
	}
	if _, err := ix.writer.ExecContext(ctx, indexSchemaSQL); err != nil {
		return fmt.Errorf("sqlite: creating the search index: %w", err)
	}
	if err := db.rebuildIndexIfAhead(ctx); err != nil {
		return err
	}
	if ix.reader, err = sql.Open("sqlite", dsn(indexPath, "OFF", false)); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	ix.reader.SetMaxOpenConns(readers)
	ix.reader.SetMaxIdleConns(readers)
	return db.purgeChanged(ctx)
}

// openIndexWriter opens the index file's single writing connection.
// synchronous=OFF: the index is derived data, and the fsyncs of its
// checkpoints (tens of megabytes at a time) stalled the store's own
// commits on the same disk, halving the append rate. A kill -9 loses
// nothing of it (the system has its writes); a power loss may damage it,
// which openIndex finds (quickCheck) and repairs by indexing anew.
func openIndexWriter(indexPath string) (*sql.DB, error) {
	writer, err := sql.Open("sqlite", dsn(indexPath, "OFF", true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	return writer, nil
}

// quickCheck runs PRAGMA quick_check and returns an error unless the file
// is sound.
func quickCheck(ctx context.Context, db *sql.DB) error {
	var result string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check(1)`).Scan(&result); err != nil {
		return err
	}
	if result != "ok" {
		return errors.New(result)
	}
	return nil
}

// rebuildIndexIfAhead empties the index when its watermark is above the
// store's last seq: the store file is not the one it was built from.
func (db *DB) rebuildIndexIfAhead(ctx context.Context) error {
	tx, err := db.index.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var watermark, last int64
	if err := tx.QueryRowContext(ctx, watermarkSQL).Scan(&watermark); err != nil {
		return fmt.Errorf("sqlite: reading the search watermark: %w", err)
	}
	if err := db.reader.QueryRowContext(ctx, lastSeqSQL).Scan(&last); err != nil {
		return err
	}
	if watermark <= last {
		return nil
	}
	slog.Warn("sqlite: the search index is ahead of the store; rebuilding it", "watermark", watermark, "last_seq", last)
	if _, err := tx.ExecContext(ctx, dropSearchTableSQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, indexSchemaSQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, setWatermarkSQL, 0); err != nil {
		return err
	}
	return tx.Commit()
}

// purgeChanged removes the index entries of every message edited or
// deleted after the watermark, leaving the watermark: a deleted message's
// words leave the index file before the store serves a search, however
// far behind the index was left (a kill -9).
func (db *DB) purgeChanged(ctx context.Context) error {
	tx, err := db.index.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var watermark int64
	if err := tx.QueryRowContext(ctx, watermarkSQL).Scan(&watermark); err != nil {
		return fmt.Errorf("sqlite: reading the search watermark: %w", err)
	}
	rows, err := db.reader.QueryContext(ctx, changedSinceSQL, watermark)
	if err != nil {
		return err
	}
	var changed []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		changed = append(changed, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if len(changed) == 0 {
		return nil
	}
	remove, err := tx.PrepareContext(ctx, deleteSearchSQL)
	if err != nil {
		return err
	}
	defer remove.Close()
	for _, id := range changed {
		if _, err := remove.ExecContext(ctx, id); err != nil {
			return fmt.Errorf("sqlite: purging the search index: %w", err)
		}
	}
	return tx.Commit()
}

// startIndexer starts the indexer goroutine and has it catch up.
func (db *DB) startIndexer() {
	if db.index == nil {
		return
	}
	db.index.started = true
	go db.runIndexer()
	db.wakeIndexer()
}

// wakeIndexer tells the indexer there are changes to index, without
// waiting.
func (db *DB) wakeIndexer() {
	if db.index == nil {
		return
	}
	select {
	case db.index.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// runIndexer is the indexer goroutine: on each wake-up (or poll) it
// waits indexDelay, then indexes until it has caught up with the store.
func (db *DB) runIndexer() {
	ix := db.index
	defer close(ix.done)
	poll := time.NewTicker(indexPoll)
	defer poll.Stop()
	for {
		select {
		case <-ix.stop:
			return
		case <-ix.wake:
		case <-poll.C:
		}
		select {
		case <-ix.stop:
			return
		case <-time.After(indexDelay):
		}
		if err := db.catchUpIndex(context.Background(), ix.stop); err != nil {
			slog.Error("sqlite: indexing for search", "err", err)
			select {
			case <-ix.stop:
				return
			case <-time.After(indexRetry):
			}
			db.wakeIndexer()
		}
	}
}

// stopIndexer stops the indexer goroutine, if it runs, without draining:
// the index stays where it is (Close drains it after).
func (db *DB) stopIndexer() {
	if db.index == nil {
		return
	}
	db.index.stopOnce.Do(func() {
		close(db.index.stop)
		if db.index.started {
			<-db.index.done
		}
	})
}

// catchUpIndex runs indexing passes until the index holds every change
// committed when the last pass began, or until stop is closed (nil: never).
func (db *DB) catchUpIndex(ctx context.Context, stop <-chan struct{}) error {
	for {
		caughtUp, err := db.indexPass(ctx)
		if err != nil || caughtUp {
			return err
		}
		select {
		case <-stop:
			return nil
		default:
		}
	}
}

// indexPass indexes up to indexBatch changes above the watermark in one
// transaction of the index file, and reports whether it found fewer (it
// has caught up).
func (db *DB) indexPass(ctx context.Context) (caughtUp bool, err error) {
	tx, err := db.index.writer.BeginTx(ctx, nil) // IMMEDIATE: one pass at a time
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var watermark int64
	if err := tx.QueryRowContext(ctx, watermarkSQL).Scan(&watermark); err != nil {
		return false, fmt.Errorf("reading the watermark: %w", err)
	}
	insert, err := tx.PrepareContext(ctx, insertSearchSQL)
	if err != nil {
		return false, err
	}
	defer insert.Close()
	remove, err := tx.PrepareContext(ctx, deleteSearchSQL)
	if err != nil {
		return false, err
	}
	defer remove.Close()
	rows, err := db.reader.QueryContext(ctx, changesSQL, watermark, indexBatch)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	n, last := 0, watermark
	for rows.Next() {
		var (
			id, seq         int64
			text            string
			edited, deleted bool
		)
		if err := rows.Scan(&id, &seq, &text, &edited, &deleted); err != nil {
			return false, err
		}
		// A message neither edited nor deleted was never indexed: its
		// first seq is above the watermark.
		if edited || deleted {
			if _, err := remove.ExecContext(ctx, id); err != nil {
				return false, err
			}
		}
		if !deleted && text != "" {
			if _, err := insert.ExecContext(ctx, id, text); err != nil {
				return false, err
			}
		}
		n, last = n+1, seq
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	if n == 0 {
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, setWatermarkSQL, last); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return n < indexBatch, nil
}

// searchWatermark is the index's watermark.
func (db *DB) searchWatermark(ctx context.Context) (int64, error) {
	var watermark int64
	err := db.index.reader.QueryRowContext(ctx, watermarkSQL).Scan(&watermark)
	return watermark, err
}

// SearchIndexLag is how many seqs the search index is behind the store
// (the last seq minus the index's watermark): the changes a search
// matches by a scan rather than the index.
func (db *DB) SearchIndexLag(ctx context.Context) (int64, error) {
	if err := db.checkOpen(); err != nil {
		return 0, err
	}
	if db.index == nil {
		return 0, nil
	}
	watermark, err := db.searchWatermark(ctx)
	if err != nil {
		return 0, err
	}
	last, err := db.LastSeq(ctx)
	return last - watermark, err
}

// closeIndex drains the index (unless it is off), then closes the index
// file, emptying its write-ahead log.
func (db *DB) closeIndex(drain bool) error {
	ix := db.index
	if ix == nil {
		return nil
	}
	db.stopIndexer()
	var err error
	if drain {
		if err = db.catchUpIndex(context.Background(), nil); err != nil {
			err = fmt.Errorf("sqlite: draining the search index: %w", err)
		}
	}
	if ix.reader != nil {
		err = errors.Join(err, ix.reader.Close())
	}
	if drain && err == nil {
		err = checkpointAndTruncate(ix.writer)
	}
	return errors.Join(err, ix.writer.Close())
}
