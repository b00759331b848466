package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store"
	"dce/common/store/storetest"
)

var _ storetest.Engine = (*DB)(nil)

// MustOpen opens a store in a fresh temporary directory and closes it when
// the test ends.
func MustOpen(tb testing.TB, opts Options) *DB {
	tb.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(tb.TempDir(), "data", "dce.db")
	}
	db, err := Open(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Error(err)
		}
	})
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Engine { return MustOpen(t, Options{}) })
}

// TestPragmas: the DSN's pragmas hold on every connection, several readers
// held at once (so they are distinct connections) and the writer.
func TestPragmas(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		option string
		want   int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{"", 2}, {"FULL", 2}, {"normal", 1}} {
		db := MustOpen(t, Options{Synchronous: c.option})
		var connections []*sql.Conn
		for range 4 {
			connection, err := db.reader.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			connections = append(connections, connection)
		}
		writer, err := db.writer.Conn(ctx) // holds the writer's only connection until released
		if err != nil {
			t.Fatal(err)
		}
		connections = append(connections, writer)
		for i, connection := range connections {
			var synchronous, foreignKeys, busyTimeout, secureDelete int
			var journalMode string
			for pragma, into := range map[string]any{
				"synchronous": &synchronous, "foreign_keys": &foreignKeys,
				"busy_timeout": &busyTimeout, "journal_mode": &journalMode, "secure_delete": &secureDelete,
			} {
				if err := connection.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(into); err != nil {
					t.Fatalf("connection %d: PRAGMA %s: %v", i, pragma, err)
				}
			}
			if synchronous != c.want || foreignKeys != 1 || busyTimeout != 5000 || journalMode != "wal" || secureDelete != 1 {
				t.Errorf("Synchronous %q, connection %d: synchronous=%d foreign_keys=%d busy_timeout=%d journal_mode=%s secure_delete=%d",
					c.option, i, synchronous, foreignKeys, busyTimeout, journalMode, secureDelete)
			}
		}
		// Readers cannot write.
		if _, err := connections[0].ExecContext(ctx, `DELETE FROM users`); err == nil {
			t.Error("a reader connection could write")
		}
		for _, connection := range connections {
			connection.Close()
		}
	}
	if _, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "x.db"), Synchronous: "OFF"}); err == nil {
		t.Error("Open accepted synchronous=OFF")
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runtime", "db")
	MustOpen(t, Options{Path: filepath.Join(dir, "dce.db")})
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "dce.db"): 0o600,
		filepath.Join(dir, "dce-search.db"): 0o600, filepath.Join(dir, "dce-search.db-wal"): 0o600} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, info.Mode(), want)
		}
	}
}

// TestReopenAfterCloseUnderLoad: Close while appends stream in; after a
// reopen the file holds exactly the messages whose Append returned nil, and
// seq keeps increasing.
func TestReopenAfterCloseUnderLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	db, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ann := storetest.MustCreateUser(t, db, "Ann")
	var (
		wait  sync.WaitGroup
		mutex sync.Mutex
		acked = map[int64]model.Message{}
		first = make(chan struct{}, 1)
	)
	for w := range 64 {
		wait.Go(func() {
			for i := 0; ; i++ {
				msg, _, err := db.Append(ctx, storetest.LobbyMessage(ann.ID, fmt.Sprint(w, "/", i), ""))
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mutex.Lock()
				acked[msg.ID] = msg
				mutex.Unlock()
				select {
				case first <- struct{}{}:
				default:
				}
			}
		})
	}
	<-first
	time.Sleep(20 * time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wait.Wait()
	if _, _, err := db.Append(ctx, storetest.LobbyMessage(ann.ID, "late", "")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}

	db = MustOpen(t, Options{Path: path})
	stored, err := db.CountMessages(ctx)
	if err != nil || stored != int64(len(acked)) {
		t.Fatalf("%d messages stored, %d acknowledged (%v)", stored, len(acked), err)
	}
	var maxSeq int64
	for since := int64(0); ; {
		msgs, latest, more, err := db.Sync(ctx, ann.ID, since, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range msgs {
			want, ok := acked[msg.ID]
			want.From = ann.User
			if !ok || msg != want {
				t.Fatalf("stored %+v, acknowledged %+v", msg, want)
			}
			maxSeq = max(maxSeq, msg.Seq)
		}
		if since = latest; !more {
			break
		}
	}
	next := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "after reopen", ""))
	if next.Seq != maxSeq+1 {
		t.Errorf("seq after reopen = %d, want %d", next.Seq, maxSeq+1)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", result, err)
	}
}

// TestTwoOpenersOfOneFile: the command line opens the file the server has
// open; appends from both keep seqs unique and increasing.
func TestTwoOpenersOfOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dce.db")
	server := MustOpen(t, Options{Path: path})
	commandLine := MustOpen(t, Options{Path: path})
	ann := storetest.MustCreateUser(t, server, "Ann")
	var last model.Message
	for i, db := range []*DB{server, commandLine, commandLine, server, commandLine, server} {
		msg := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, fmt.Sprint(i), ""))
		if msg.Seq <= last.Seq || msg.ID <= last.ID {
			t.Fatalf("append %d: id %d seq %d after id %d seq %d", i, msg.ID, msg.Seq, last.ID, last.Seq)
		}
		last = msg
	}
	if count, err := server.CountMessages(context.Background()); err != nil || count != 6 {
		t.Errorf("CountMessages = %d, %v; want 6", count, err)
	}
}

func TestMigrationsRecordedOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	list, err := migrations()
	if err != nil || len(list) == 0 {
		t.Fatalf("migrations: %v, %v", list, err)
	}
	for range 2 {
		db, err := Open(ctx, Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		var count, latest int
		if err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&count, &latest); err != nil {
			t.Fatal(err)
		}
		if count != len(list) || latest != list[len(list)-1].Version {
			t.Errorf("schema_version: %d rows up to %d, want %d up to %d", count, latest, len(list), list[len(list)-1].Version)
		}
		db.Close()
	}
}

func TestSessionExpiryFollowsNow(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var clock sync.Mutex
	db := MustOpen(t, Options{Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now }})
	ann := storetest.MustCreateUser(t, db, "Ann")
	if !ann.Created.Equal(now) {
		t.Errorf("Created = %v, want %v", ann.Created, now)
	}
	if err := db.SaveSession(ctx, "s", ann.ID, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.LoadSession(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	clock.Lock()
	now = now.Add(time.Minute) // expired exactly at expires
	clock.Unlock()
	if _, _, _, err := db.LoadSession(ctx, "s"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LoadSession at expiry: %v, want ErrNotFound", err)
	}
	if removed, err := db.DeleteExpiredSessions(ctx); err != nil || removed != 1 {
		t.Errorf("DeleteExpiredSessions = %d, %v", removed, err)
	}
}

// holdWriter blocks the writer goroutine inside a write until the returned
// release is called, so that the writes queued meanwhile form one batch.
func holdWriter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	entered, held := make(chan struct{}), make(chan struct{})
	go db.write(context.Background(), func(*sql.Tx) error {
		close(entered)
		<-held
		return nil
	})
	<-entered
	return func() { close(held) }
}

// waitQueued waits until n writes are queued behind a held writer.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(db.requests) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(db.requests), n)
		}
	}
}

// TestOneBatch: writes queued together commit together, a failing write is
// undone alone, and a repeated cid inside the batch is a duplicate.
func TestOneBatch(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	release := holdWriter(t, db)

	type result struct {
		msg       model.Message
		duplicate bool
		err       error
	}
	results := make([]result, 6)
	var (
		publishedMu sync.Mutex
		published   []model.Message
	)
	publish := func(msg model.Message) {
		publishedMu.Lock()
		published = append(published, msg)
		publishedMu.Unlock()
	}
	var wait sync.WaitGroup
	for i := range results {
		wait.Go(func() {
			m := storetest.LobbyMessage(ann.ID, fmt.Sprint("text ", i), fmt.Sprint("cid-", i%3))
			results[i].msg, results[i].duplicate, results[i].err = db.AppendLater(ctx, m, publish)()
		})
		waitQueued(t, db, i+1) // queue them in order
	}
	failure := errors.New("this write fails after changing a row")
	wait.Go(func() {
		err := db.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.Exec(`UPDATE users SET brief = 'half-done' WHERE id = ?`, ann.ID); err != nil {
				return err
			}
			db.takeSeq()
			return failure
		})
		if !errors.Is(err, failure) {
			t.Errorf("the failing write returned %v", err)
		}
	})
	waitQueued(t, db, len(results)+1)
	release()
	wait.Wait()

	for i, r := range results {
		original := results[i%3]
		if r.err != nil || r.duplicate != (i >= 3) || r.msg != original.msg {
			t.Errorf("append %d: %+v, want %+v, duplicate %v", i, r, original.msg, i >= 3)
		}
	}
	for i := 1; i < 3; i++ {
		if results[i].msg.Seq != results[i-1].msg.Seq+1 {
			t.Errorf("seqs %d then %d: the duplicates or the failed write took seqs", results[i-1].msg.Seq, results[i].msg.Seq)
		}
	}
	// The savepoint retry published each message stored anew once, in seq
	// order; the duplicates and the failed write nothing.
	var publishedSeqs []int64
	for _, msg := range published {
		publishedSeqs = append(publishedSeqs, msg.Seq)
	}
	if want := []int64{results[0].msg.Seq, results[1].msg.Seq, results[2].msg.Seq}; !slices.Equal(publishedSeqs, want) {
		t.Errorf("published seqs %v, want %v", publishedSeqs, want)
	}
	if account, err := db.UserByID(ctx, ann.ID); err != nil || account.Brief == "half-done" {
		t.Errorf("the failed write's change survived: %+v, %v", account, err)
	}
	if count, err := db.CountMessages(ctx); err != nil || count != 3 {
		t.Errorf("CountMessages = %d, %v; want 3", count, err)
	}
	if next := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "next", "")); next.Seq != results[2].msg.Seq+1 {
		t.Errorf("next seq %d, want %d", next.Seq, results[2].msg.Seq+1)
	}
}

// TestFailedCommitAcknowledgesNothing: when COMMIT fails, every write in
// the batch gets the error, nothing is stored, and the seqs are reused.
func TestFailedCommitAcknowledgesNothing(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	before := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "before", ""))
	release := holdWriter(t, db)
	errs := make([]error, 5)
	var published atomic.Int32
	var wait sync.WaitGroup
	for i := range errs {
		wait.Go(func() {
			_, _, errs[i] = db.AppendLater(ctx, storetest.LobbyMessage(ann.ID, "doomed", fmt.Sprint(i)),
				func(model.Message) { published.Add(1) })()
		})
	}
	waitQueued(t, db, len(errs))
	wait.Go(func() {
		// A deferred foreign key violation passes every statement and fails
		// the COMMIT.
		err := db.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.Exec(`PRAGMA defer_foreign_keys = ON`); err != nil {
				return err
			}
			_, err := tx.Exec(`INSERT INTO sessions (sid_hash, user_id, created, expires) VALUES ('x', 999999, 0, 0)`)
			return err
		})
		if err == nil {
			t.Error("the write that breaks the commit succeeded")
		}
	})
	waitQueued(t, db, len(errs)+1)
	release()
	wait.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("append %d was acknowledged though its commit failed", i)
		}
	}
	if n := published.Load(); n != 0 {
		t.Errorf("%d appends of the failed commit were published", n)
	}
	if count, err := db.CountMessages(ctx); err != nil || count != 1 {
		t.Errorf("CountMessages = %d, %v; want 1", count, err)
	}
	if next := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "after", "")); next.Seq != before.Seq+1 {
		t.Errorf("seq after the failed batch = %d, want %d", next.Seq, before.Seq+1)
	}
}

// TestCancelledWaiter: a caller whose ctx ends gets ctx.Err(); a write
// skipped because its ctx ended before its batch is not stored.
func TestCancelledWaiter(t *testing.T) {
	db := MustOpen(t, Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	release := holdWriter(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := db.Append(ctx, storetest.LobbyMessage(ann.ID, "abandoned", ""))
		done <- err
	}()
	waitQueued(t, db, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Append = %v, want context.Canceled", err)
	}
	release()
	storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "kept", ""))
	msgs, _, err := db.Load(context.Background(), model.LobbyKey, 0, 0, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "kept" {
		t.Errorf("Load = %+v, %v; want only the kept message", msgs, err)
	}
	if _, _, err := db.Append(ctx, storetest.LobbyMessage(ann.ID, "x", "")); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled ctx = %v", err)
	}
}

// TestQueryPlans guards the indexes the hot queries rely on.
func TestQueryPlans(t *testing.T) {
	db := MustOpen(t, Options{})
	for name, c := range map[string]struct {
		query     string
		arguments []any
		want      string
	}{
		"load":                 {loadNewestSQL, []any{"room:lobby", 100, 0, 10}, "messages_conv"},
		"sync":                 {syncSQL, []any{0, 1, 10}, "sqlite_autoindex_messages_1"}, // UNIQUE(seq)
		"by cid":               {messageByCIDSQL, []any{1, "c"}, "messages_sender_cid"},
		"direct":               {conversationsSQL, []any{1}, "PRIMARY KEY (user_id=?)"},
		"unread":               {conversationsSQL, []any{1}, "COVERING INDEX messages_conv"},
		"lastSeq":              {lastSeqSQL, nil, "sqlite_autoindex_messages_1"},
		"sync groups":          {syncSQL, []any{0, 1, 10}, "COVERING INDEX group_members_user (user_id=?)"},
		"conversations groups": {conversationsSQL, []any{1}, "COVERING INDEX group_members_user (user_id=?)"},
		"search verify": {strings.Replace(searchVerifySQL, "%CONV%", inEveryConv, 1), []any{"[1,2]", 1, 100, ""},
			"INTEGER PRIMARY KEY (rowid=?)"},
		"search verify with": {strings.Replace(searchVerifySQL, "%CONV%", byConversation, 1), []any{"[1,2]", 1, 100, "room:lobby"},
			"INTEGER PRIMARY KEY (rowid=?)"},
		"search tail": {strings.Replace(searchTailSQL, "%CONV%", inEveryConv, 1), []any{100, 1, 100, ""},
			"sqlite_autoindex_messages_1 (seq>?)"},
		"search tail with": {strings.Replace(searchTailSQL, "%CONV%", byConversation, 1), []any{100, 1, 100, "room:lobby"},
			"sqlite_autoindex_messages_1 (seq>?)"},
		"indexer changes": {changesSQL, []any{100, 10}, "sqlite_autoindex_messages_1 (seq>?)"},
		"indexer purge":   {changedSinceSQL, []any{100}, "sqlite_autoindex_messages_1 (seq>?)"},
		"search hits":     {searchHitsSQL, []any{`"abc"`, 100}, "VIRTUAL TABLE INDEX"}, // on the index file
		"message for":     {messageForSQL, []any{1, 1}, "INTEGER PRIMARY KEY (rowid=?)"},
	} {
		on := db.reader
		if c.query == searchHitsSQL {
			on = db.index.reader
		}
		rows, err := on.Query("EXPLAIN QUERY PLAN "+c.query, c.arguments...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if !slices.ContainsFunc(plan, func(line string) bool { return strings.Contains(line, c.want) }) {
			t.Errorf("%s: plan %q does not use %s", name, plan, c.want)
		}
	}
}

// TestMigrationRebuildsMessages opens a database made by the first
// migration alone, with messages in it, and checks that migrating keeps
// every message and id, drops AUTOINCREMENT and the trigger, and leaves the
// indexes working: new ids go on above the old ones, a cid is still unique
// per sender, and private conversations are still listed, the old ones and
// the new.
func TestMigrationRebuildsMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	list, err := migrations()
	if err != nil || len(list) < 2 || list[1].Version != 2 {
		t.Fatalf("migrations: %v, %v", list, err)
	}
	old, err := sql.Open("sqlite", dsn(path, "FULL", true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := applyMigration(ctx, old, list[0], time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, statement := range []string{
		`INSERT INTO users (id, nickname, fold, password_hash, created) VALUES (1, 'Ann', 'ann', 'x', 1), (2, 'Bob', 'bob', 'x', 1), (3, 'Cat', 'cat', 'x', 1)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, kind, text, cid, ts) VALUES (1, 'room:lobby', 1, 'room:lobby', 'text', 'one', 'c1', 1)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, to_user, kind, text, ts) VALUES (2, 'dm:1:2', 1, 'user:2', 2, 'text', 'two', 2)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, kind, text, ts) VALUES (3, 'room:lobby', 2, 'room:lobby', 'text', 'three', 3)`,
	} {
		if _, err := old.ExecContext(ctx, statement); err != nil {
			t.Fatalf("%s: %v", statement, err)
		}
	}
	old.Close()

	db := MustOpen(t, Options{Path: path})
	var schema string
	if err := db.reader.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'messages'`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(schema), "AUTOINCREMENT") {
		t.Errorf("messages still has AUTOINCREMENT: %s", schema)
	}
	var objects []string
	rows, err := db.reader.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE tbl_name = 'messages' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		objects = append(objects, name)
	}
	rows.Close()
	if want := []string{"messages", "messages_conv", "messages_sender_cid"}; !slices.Equal(objects, want) {
		t.Errorf("objects on messages = %v, want %v", objects, want)
	}

	lobby, _, err := db.Load(ctx, model.LobbyKey, 0, 0, 10)
	if err != nil || len(lobby) != 2 || lobby[0].ID != 1 || lobby[0].Text != "one" || lobby[1].ID != 3 || lobby[1].Text != "three" {
		t.Fatalf("lobby after migrating = %+v, %v", lobby, err)
	}
	if _, duplicate, err := db.Append(ctx, storetest.LobbyMessage(1, "one again", "c1")); err != nil || !duplicate {
		t.Errorf("retrying cid c1: duplicate %v, %v; want a duplicate", duplicate, err)
	}
	next := storetest.MustAppend(t, db, storetest.DirectMessage(3, 2, "four", ""))
	if next.ID != 4 || next.Seq != 4 {
		t.Errorf("new message: id %d seq %d, want 4 and 4", next.ID, next.Seq)
	}
	conversations, err := db.Conversations(ctx, 3) // Cat's first private message: the writer lists it
	if err != nil || len(conversations) != 2 || conversations[0].Conv != "dm:2:3" || conversations[0].Last.ID != 4 {
		t.Errorf("Cat's conversations = %+v, %v; want dm:2:3 (id 4), then the lobby", conversations, err)
	}
	if got := convKeys(t, db, 2); !slices.Equal(got, []string{"dm:1:2", "dm:2:3", "room:lobby"}) {
		t.Errorf("Bob's conversations = %v; want the one from before the migration too", got)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("integrity check: %q, %v", result, err)
	}
}

// convKeys is the keys of user's conversations, sorted.
func convKeys(t *testing.T, db *DB, user int64) []string {
	t.Helper()
	conversations, err := db.Conversations(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range conversations {
		keys = append(keys, c.Conv)
	}
	slices.Sort(keys)
	return keys
}

// TestDirectConversationsSurviveRollbacks: the writer lists a private
// conversation with its first message, and what a rolled-back batch listed
// it lists again: after a batch retried with savepoints, and after a
// failed COMMIT, whose message is then sent again.
func TestDirectConversationsSurviveRollbacks(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	bob := storetest.MustCreateUser(t, db, "Bob")
	cat := storetest.MustCreateUser(t, db, "Cat")
	annBob := string(storetest.DirectMessage(ann.ID, bob.ID, "", "").Key)
	annCat := string(storetest.DirectMessage(ann.ID, cat.ID, "", "").Key)

	// Retried with savepoints: the fast path's rows were rolled back.
	release := holdWriter(t, db)
	var wait sync.WaitGroup
	wait.Go(func() { storetest.MustAppend(t, db, storetest.DirectMessage(ann.ID, bob.ID, "hi Bob", "")) })
	waitQueued(t, db, 1)
	wait.Go(func() { _ = db.write(ctx, func(*sql.Tx) error { return errors.New("fails the fast path") }) })
	waitQueued(t, db, 2)
	release()
	wait.Wait()
	if got := convKeys(t, db, bob.ID); !slices.Equal(got, []string{annBob}) {
		t.Errorf("Bob's conversations after a retried batch = %v, want [%s]", got, annBob)
	}

	// A failed COMMIT: nothing of the batch is stored, the retry lists it.
	release = holdWriter(t, db)
	wait.Go(func() {
		if _, _, err := db.Append(ctx, storetest.DirectMessage(ann.ID, cat.ID, "hi Cat", "cat-1")); err == nil {
			t.Error("the append in the failed commit succeeded")
		}
	})
	waitQueued(t, db, 1)
	wait.Go(func() {
		_ = db.write(ctx, func(tx *sql.Tx) error { // breaks the COMMIT, as in TestFailedCommitAcknowledgesNothing
			if _, err := tx.Exec(`PRAGMA defer_foreign_keys = ON`); err != nil {
				return err
			}
			_, err := tx.Exec(`INSERT INTO sessions (sid_hash, user_id, created, expires) VALUES ('y', 999999, 0, 0)`)
			return err
		})
	})
	waitQueued(t, db, 2)
	release()
	wait.Wait()
	if got := convKeys(t, db, cat.ID); len(got) != 0 {
		t.Errorf("Cat's conversations after the failed commit = %v, want none", got)
	}
	storetest.MustAppend(t, db, storetest.DirectMessage(ann.ID, cat.ID, "hi Cat", "cat-1"))
	if got := convKeys(t, db, cat.ID); !slices.Equal(got, []string{annCat}) {
		t.Errorf("Cat's conversations after sending again = %v, want [%s]", got, annCat)
	}
	if got := convKeys(t, db, ann.ID); !slices.Equal(got, []string{annBob, annCat}) {
		t.Errorf("Ann's conversations = %v, want [%s %s]", got, annBob, annCat)
	}
}

// TestPanickingPublishIsContained: a panic in a write's committed action
// (the caller's push) is contained on the publisher: the write is stored
// and its waiter answered, and the writes behind it are published as
// usual.
func TestPanickingPublishIsContained(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{})
	ann := storetest.MustCreateUser(t, db, "Ann")
	msg, _, err := db.AppendLater(ctx, storetest.LobbyMessage(ann.ID, "boom", ""), func(model.Message) { panic("a bug in a push") })()
	if err != nil || msg.ID == 0 {
		t.Fatalf("the append whose push panicked: %+v, %v", msg, err)
	}
	var published atomic.Int64
	next, _, err := db.AppendLater(ctx, storetest.LobbyMessage(ann.ID, "after", ""), func(m model.Message) { published.Store(m.ID) })()
	if err != nil || published.Load() != next.ID {
		t.Fatalf("the next append: %+v, %v; published %d", next, err, published.Load())
	}
	msgs, _, err := db.Load(ctx, model.LobbyKey, 0, 0, 10)
	if err != nil || len(msgs) != 2 || msgs[0].Text != "boom" {
		t.Fatalf("stored: %+v, %v", msgs, err)
	}
}

// TestMigrationAddsGroups opens a database made by the migrations before
// groups, with messages in it (one already addressed to a group id, as a
// client could never have stored), and checks that migrating keeps every
// message, that groups work on it, and that a group's old messages become
// readable by its members once it exists.
func TestMigrationAddsGroups(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	list, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(m store.Migration) bool { return m.Name == "0004_groups.sql" })
	if i < 0 {
		t.Fatalf("no 0004_groups.sql in %v", list)
	}
	old, err := sql.Open("sqlite", dsn(path, "FULL", true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range list[:i] {
		if err := applyMigration(ctx, old, m, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, statement := range []string{
		`INSERT INTO users (id, nickname, fold, password_hash, created) VALUES (1, 'Ann', 'ann', 'x', 1), (2, 'Bob', 'bob', 'x', 1)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, kind, text, ts) VALUES (1, 'room:lobby', 1, 'room:lobby', 'text', 'one', 1)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, to_user, kind, text, ts) VALUES (2, 'dm:1:2', 1, 'user:2', 2, 'text', 'two', 2)`,
		`INSERT INTO messages (seq, conv_key, sender, to_addr, kind, text, ts) VALUES (3, 'group:1', 1, 'group:1', 'text', 'three', 3)`,
		`INSERT INTO direct_conversations (user_id, conv_key) VALUES (1, 'dm:1:2'), (2, 'dm:1:2')`,
	} {
		if _, err := old.ExecContext(ctx, statement); err != nil {
			t.Fatalf("%s: %v", statement, err)
		}
	}
	old.Close()

	db := MustOpen(t, Options{Path: path})
	if msgs, _, _, err := db.Sync(ctx, 2, 0, 0); err != nil || !slices.Equal(ids(msgs), []int64{1, 2}) {
		t.Fatalf("Bob's sync after migrating = %v, %v; want 1 and 2 (not the group's)", ids(msgs), err)
	}
	change, err := db.CreateGroup(ctx, model.NewGroup{Name: "ops", Owner: 1, Members: []int64{2}}, 0, nil)
	if err != nil || change.Group.ID != 1 {
		t.Fatalf("first group: %+v, %v; want id 1", change, err)
	}
	if msgs, _, _, err := db.Sync(ctx, 2, 0, 0); err != nil || !slices.Equal(ids(msgs), []int64{1, 2, 3}) {
		t.Errorf("Bob's sync as a member = %v, %v; want 1, 2, 3", ids(msgs), err)
	}
	next := storetest.MustAppend(t, db, storetest.GroupMessage(2, 1, "four"))
	if next.ID != 4 || next.Seq != 4 {
		t.Errorf("new message: id %d seq %d, want 4 and 4", next.ID, next.Seq)
	}
	if got := convKeys(t, db, 2); !slices.Equal(got, []string{"dm:1:2", "group:1", "room:lobby"}) {
		t.Errorf("Bob's conversations = %v", got)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("integrity check: %q, %v", result, err)
	}
}

func ids(msgs []model.Message) []int64 {
	list := make([]int64, len(msgs))
	for i, msg := range msgs {
		list[i] = msg.ID
	}
	return list
}
