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

// TestMigrationIndexesStoredMessages: migration 0005 indexes the messages
// already stored, except the deleted ones, and the messages stored after
// it are indexed by the writer.
func TestMigrationIndexesStoredMessages(t *testing.T) {
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
	for _, m := range list {
		if m.name == "0005_search.sql" {
			break
		}
		if err := applyMigration(ctx, old, m, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
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
	old.Close()

	db := MustOpen(t, Options{Path: path})
	after := storetest.MustAppend(t, db, storetest.LobbyMessage(1, "stored after the index", ""))
	for q, want := range map[string][]int64{
		"before the index": {1}, "之前": {3}, "索引": {3}, "after the index": {after.ID}, "the index": {after.ID, 1},
	} {
		msgs, _, err := db.Search(ctx, 1, q, "", 0, 0)
		if got := ids(msgs); err != nil || !slices.Equal(got, want) {
			t.Errorf("Search(%q) = %v, %v; want %v", q, got, err, want)
		}
	}
	var indexed int
	if err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages_search WHERE messages_search MATCH '"ind"'`).Scan(&indexed); err != nil || indexed != 2 {
		t.Errorf("%d rows of the index match, %v; want 2", indexed, err)
	}
}

// TestDeletedTextLeavesTheFiles: once a message is deleted and the store
// closed, its text is nowhere in the database file, its write-ahead log or
// its shared-memory file: not in the row, not in a freed cell, not in an
// old page image in the log, and its words are gone from the search
// index. (Without secure_delete in the DSN this finds the text in the
// database file.)
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
	for _, id := range secrets {
		if _, _, err := db.DeleteLater(ctx, id, nil)(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 { // more writes after the deletions
		storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, strings.Repeat("later ", 1+i%5), ""))
	}
	// The index has no entry left for the canary's trigrams.
	if _, err := db.writer.ExecContext(ctx, `CREATE VIRTUAL TABLE temp.search_terms USING fts5vocab(main, messages_search, 'row')`); err != nil {
		t.Fatal(err)
	}
	var terms int
	if err := db.writer.QueryRowContext(ctx, `SELECT COUNT(*) FROM temp.search_terms WHERE term IN ('7f3', 'f3a', '3a9', 'a9c')`).Scan(&terms); err != nil {
		t.Fatal(err)
	}
	if terms != 0 {
		t.Errorf("the search index still holds %d of the canary's trigrams", terms)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if filesContain(t, path, canary) {
		t.Error("a deleted message's text is still in the store's files after Close")
	}
	if info, err := os.Stat(path + "-wal"); err == nil && info.Size() != 0 {
		t.Errorf("the write-ahead log holds %d bytes after Close, want none", info.Size())
	}
}

// filesContain reports whether the database file, its -wal or its -shm
// holds s.
func filesContain(t *testing.T, path, s string) bool {
	t.Helper()
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
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
