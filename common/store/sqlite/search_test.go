package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"dce/common/store/storetest"
)

// TestMigrationMovesTheIndex: a store whose search index is in its own
// file (migration 0005) loses that table in 0006, its messages are found
// at once all the same, and the indexer indexes them in the index file,
// except the deleted ones, and the messages stored after.
func TestMigrationMovesTheIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	list, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("sqlite", dsn(path, "FULL", true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	apply := func(upTo string) {
		for _, m := range list {
			if m.Name > upTo {
				break
			}
			if err := applyMigration(ctx, old, m, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	apply("0004_groups.sql")
	for _, statement := range []string{
		`INSERT INTO users (nickname, fold, password_hash, created) VALUES ('Ann', 'ann', 'x', 0)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, kind, text, ts) VALUES
			(1, 'room:lobby', 1, 'room:lobby', 'text', 'stored before the index', 1),
			(2, 'room:lobby', 1, 'room:lobby', 'text', '', 2),
			(3, 'room:lobby', 1, 'room:lobby', 'text', '索引之前的消息', 3)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, kind, text, ts, deleted) VALUES
			(4, 'room:lobby', 1, 'room:lobby', 'text', '', 4, 1)`,
	} {
		if _, err := old.ExecContext(ctx, statement); err != nil {
			t.Fatal(err)
		}
	}
	apply("0005_search.sql") // indexes them in the store file
	var inFile int
	if err := old.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages_search WHERE messages_search MATCH '"ind"'`).Scan(&inFile); err != nil || inFile != 1 {
		t.Fatalf("0005 indexed %d matching rows, %v; want 1", inFile, err)
	}
	old.Close()

	db := MustOpen(t, Options{Path: path, indexerStopped: true})
	var tables int
	if err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'messages_search%'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the store file still has %d tables of the old index, %v", tables, err)
	}
	after := storetest.MustAppend(t, db, storetest.LobbyMessage(1, "stored after the index", ""))
	want := map[string][]int64{
		"before the index": {1}, "之前": {3}, "索引": {3}, "after the index": {after.ID}, "the index": {after.ID, 1},
	}
	check := func(when string) {
		t.Helper()
		for q, want := range want {
			msgs, _, _, err := db.Search(ctx, 1, q, "", 0, 0)
			if got := ids(msgs); err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: Search(%q) = %v, %v; want %v", when, q, got, err, want)
			}
		}
	}
	check("before indexing") // the index file is empty: all found by the scan
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	check("indexed")
	var indexed int
	if err := db.index.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages_search WHERE messages_search MATCH '"ind"'`).Scan(&indexed); err != nil || indexed != 2 {
		t.Errorf("%d rows of the index match, %v; want 2", indexed, err)
	}
	if lag, err := db.SearchIndexLag(ctx); err != nil || lag != 0 {
		t.Errorf("SearchIndexLag = %d, %v after catching up; want 0", lag, err)
	}
}

// TestDeletedTextLeavesTheFiles: once a message is deleted and the store
// closed, its text is nowhere in the store file, the search index's file,
// or their write-ahead logs and shared-memory files: not in the row, not
// in a freed cell, not in an old page image in a log, and its words are
// gone from the search index. (Without secure_delete in the DSN this
// finds the text in the store file.)
func TestDeletedTextLeavesTheFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	db, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ann := storetest.MustCreateUser(t, db, "Ann")
	const canary = "canary-7f3a9c-secret-words"
	var secrets []int64
	for i := range 300 { // enough rows that the canary shares its pages with others
		storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, strings.Repeat("filler text ", 1+i%7), ""))
		if i == 150 {
			secret := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "the "+canary+" in a message", ""))
			edited := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "a draft", ""))
			if _, err := db.EditLater(ctx, edited.ID, "also "+canary+" after an edit", nil)(); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, secret.ID, edited.ID)
		}
	}
	if !filesContain(t, path, canary) {
		t.Fatal("the canary is not in the files before its deletion: the test looks in the wrong place")
	}
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if terms := canaryTerms(t, db); terms != 4 {
		t.Fatalf("the search index holds %d of the canary's 4 trigrams before its deletion, want them all", terms)
	}
	if !indexFilesContain(t, path, canaryTrigrams...) {
		t.Fatal("the canary's trigrams are not in the index's files: the test looks in the wrong place")
	}
	for _, id := range secrets {
		if _, _, err := db.DeleteLater(ctx, id, nil)(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 { // more writes after the deletions
		storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, strings.Repeat("later ", 1+i%5), ""))
	}
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// The index has no entry left for the canary's trigrams.
	if terms := canaryTerms(t, db); terms != 0 {
		t.Errorf("the search index still holds %d of the canary's trigrams", terms)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if filesContain(t, path, canary) {
		t.Error("a deleted message's text is still in the store's files after Close")
	}
	// Its words neither: without 'secure-delete' (or with a contentless
	// index) the index's pages keep them.
	if indexFilesContain(t, path, canaryTrigrams...) {
		t.Error("a deleted message's trigrams are still in the search index's files after Close")
	}
	for _, wal := range []string{path + "-wal", SearchIndexPath(path) + "-wal"} {
		if info, err := os.Stat(wal); err == nil && info.Size() != 0 {
			t.Errorf("%s holds %d bytes after Close, want none", filepath.Base(wal), info.Size())
		}
	}
}

// canaryTrigrams are trigrams of TestDeletedTextLeavesTheFiles's canary
// that none of the test's other texts has (they hold no digit) and that
// the index stores whole: no other term shares their first byte.
var canaryTrigrams = []string{"7f3", "3a9", "9c-"}

// indexFilesContain reports whether the search index's file of the store
// at path, or its -wal or -shm, holds one of list.
func indexFilesContain(t *testing.T, path string, list ...string) bool {
	t.Helper()
	index := SearchIndexPath(path)
	for _, name := range []string{index, index + "-wal", index + "-shm"} {
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if bytes.Contains(b, []byte(s)) {
				t.Logf("%s holds %q", filepath.Base(name), s)
				return true
			}
		}
	}
	return false
}

// canaryTerms counts the trigrams of TestDeletedTextLeavesTheFiles's
// canary that the search index holds.
func canaryTerms(t *testing.T, db *DB) int {
	t.Helper()
	ctx := context.Background()
	connection, err := db.index.writer.Conn(ctx) // the readers may not create a temporary table
	if err != nil {
		t.Fatal(err)
	}
	defer connection.Close()
	if _, err := connection.ExecContext(ctx, `CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_terms USING fts5vocab(main, messages_search, 'row')`); err != nil {
		t.Fatal(err)
	}
	var terms int
	if err := connection.QueryRowContext(ctx, `SELECT COUNT(*) FROM temp.search_terms WHERE term IN ('7f3', 'f3a', '3a9', 'a9c')`).Scan(&terms); err != nil {
		t.Fatal(err)
	}
	return terms
}

// filesContain reports whether the store file at path, its search index's
// file, or their -wal or -shm holds s.
func filesContain(t *testing.T, path, s string) bool {
	t.Helper()
	index := SearchIndexPath(path)
	for _, name := range []string{path, path + "-wal", path + "-shm", index, index + "-wal", index + "-shm"} {
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			t.Logf("%s holds %q", filepath.Base(name), s)
			return true
		}
	}
	return false
}
