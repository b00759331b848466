package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store/storetest"
)

// caughtUp is a store whose search index catches up before every search,
// so that every match comes from the index.
type caughtUp struct{ *DB }

func (c caughtUp) Search(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) ([]model.Message, bool, int64, error) {
	if err := c.catchUpIndex(ctx, nil); err != nil {
		return nil, false, 0, err
	}
	return c.DB.Search(ctx, reader, q, key, before, limit)
}

// TestConformanceIndexerStopped: the store's contract holds with an
// indexer that never runs: every search matches the changes above the
// watermark (all of them) in the server.
func TestConformanceIndexerStopped(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Engine { return MustOpen(t, Options{indexerStopped: true}) })
}

// TestConformanceIndexCaughtUp: the store's contract holds when the index
// has caught up before each search: every match comes from the index.
func TestConformanceIndexCaughtUp(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Engine { return caughtUp{MustOpen(t, Options{indexerStopped: true})} })
}

// searchFor runs Search over every conversation and fails the test on an
// error.
func searchFor(t *testing.T, db *DB, reader int64, q string) []int64 {
	t.Helper()
	msgs, _, _, err := db.Search(context.Background(), reader, q, "", 0, 0)
	if err != nil {
		t.Fatalf("Search(%q): %v", q, err)
	}
	for _, msg := range msgs {
		if !strings.Contains(foldCase(msg.Text), foldCase(q)) {
			t.Errorf("Search(%q) found %d, whose text is %q", q, msg.ID, msg.Text)
		}
	}
	return ids(msgs)
}

// TestSearchWithTheIndexBehind: with the index left behind an append, an
// edit and a deletion, search finds the appended message and the edit's
// new text at once, and neither the edit's old text nor the deleted
// message, whose entries the index still holds; once it catches up,
// the same.
func TestSearchWithTheIndexBehind(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{indexerStopped: true})
	ann := storetest.MustCreateUser(t, db, "Ann")
	keep := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "alpha keeps its words", ""))
	edit := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "alpha before the edit", ""))
	gone := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "alpha to be deleted", ""))
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EditLater(ctx, edit.ID, "omega after the edit", nil)(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.DeleteLater(ctx, gone.ID, nil)(); err != nil {
		t.Fatal(err)
	}
	fresh := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "alpha appended late", ""))
	for _, when := range []string{"behind", "caught up"} {
		if lag, err := db.SearchIndexLag(ctx); err != nil || (lag == 3) != (when == "behind") || (lag == 0) != (when == "caught up") {
			t.Errorf("%s: SearchIndexLag = %d, %v", when, lag, err)
		}
		for q, want := range map[string][]int64{
			"alpha": {fresh.ID, keep.ID}, "omega": {edit.ID}, "before the edit": nil, "deleted": nil, "late": {fresh.ID},
		} {
			if got := searchFor(t, db, ann.ID, q); !slices.Equal(got, want) {
				t.Errorf("%s: Search(%q) = %v, want %v", when, q, got, want)
			}
		}
		if err := db.catchUpIndex(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSearchRightAfterEachChange: writers append, edit and delete while
// the indexer runs, each searching for what it just did as soon as the
// call returns: an appended message is found, an edit's new text is and
// its old text is not, a deleted message is not.
func TestSearchRightAfterEachChange(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{})
	var wait sync.WaitGroup
	for w := range 4 {
		user := storetest.MustCreateUser(t, db, fmt.Sprint("writer", w))
		wait.Go(func() {
			for i := range 60 {
				word := fmt.Sprintf("needle-%d-%d-x", w, i)
				msg := storetest.MustAppend(t, db, storetest.LobbyMessage(user.ID, "a "+word+" here", ""))
				if got := searchFor(t, db, user.ID, word); !slices.Equal(got, []int64{msg.ID}) {
					t.Errorf("after its append, Search(%q) = %v, want [%d]", word, got, msg.ID)
				}
				switch i % 3 {
				case 1:
					moved := "moved-" + word
					if _, err := db.EditLater(ctx, msg.ID, moved, nil)(); err != nil {
						t.Error(err)
						return
					}
					if got := searchFor(t, db, user.ID, moved); !slices.Equal(got, []int64{msg.ID}) {
						t.Errorf("after its edit, Search(%q) = %v, want [%d]", moved, got, msg.ID)
					}
					if got := searchFor(t, db, user.ID, "a "+word); len(got) != 0 {
						t.Errorf("after its edit, Search(the old text %q) = %v, want nothing", "a "+word, got)
					}
				case 2:
					if _, _, err := db.DeleteLater(ctx, msg.ID, nil)(); err != nil {
						t.Error(err)
						return
					}
					if got := searchFor(t, db, user.ID, word); len(got) != 0 {
						t.Errorf("after its deletion, Search(%q) = %v, want nothing", word, got)
					}
				}
			}
		})
	}
	wait.Wait()
}

// TestWatermarkNeverPassesAnUncommittedChange: while a write that has
// taken a seq is still inside the writer's transaction, indexing stops
// below it and search does not find it; once it commits, both do.
func TestWatermarkNeverPassesAnUncommittedChange(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t, Options{indexerStopped: true})
	ann := storetest.MustCreateUser(t, db, "Ann")
	before := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "committed words", ""))
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var seq int64
	written := make(chan error, 1)
	go func() {
		written <- db.write(ctx, func(tx *sql.Tx) error {
			seq = db.takeSeq()
			_, err := db.inTx(tx, db.statements.insertMessage).Exec(seq, string(model.LobbyKey), ann.ID, model.Lobby, 0,
				model.KindText, "uncommitted words", "", "", time.Now().UnixMilli())
			once.Do(func() { close(inside) })
			<-release
			return err
		})
	}()
	<-inside
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if watermark, err := db.searchWatermark(ctx); err != nil || watermark != before.Seq {
		t.Errorf("with a write open, the watermark is %d, %v; want the last committed seq %d", watermark, err, before.Seq)
	}
	if got := searchFor(t, db, ann.ID, "uncommitted"); len(got) != 0 {
		t.Errorf("Search found the uncommitted message: %v", got)
	}
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if got := searchFor(t, db, ann.ID, "uncommitted"); len(got) != 1 {
		t.Errorf("after its commit, Search found %v, want the message", got)
	}
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if watermark, err := db.searchWatermark(ctx); err != nil || watermark != seq {
		t.Errorf("after the commit the watermark is %d, %v; want %d", watermark, err, seq)
	}
	if got := searchFor(t, db, ann.ID, "uncommitted"); len(got) != 1 {
		t.Errorf("indexed, Search found %v, want the message", got)
	}
}

// TestIndexBehindAfterACrash: the files as a kill -9 leaves them (copied
// while the store is open and idle, write-ahead logs included), with the
// index behind a deletion, an edit and appends. Opened, before any
// indexing, the store finds everything as it should and the index
// already holds none of the deleted or replaced words; the next clean
// Close leaves none of them in the files; and a store opened on them
// again catches up by itself.
func TestIndexBehindAfterACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "live", "dce.db")
	db, err := Open(ctx, Options{Path: path, SessionSweep: -1, indexerStopped: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ann := storetest.MustCreateUser(t, db, "Ann")
	const canary = "canary-7f3a9c-secret-words"
	var secret, edited model.Message
	for i := range 200 {
		storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, strings.Repeat("filler text ", 1+i%7), ""))
		if i == 100 {
			secret = storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "the "+canary, ""))
			edited = storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "also the "+canary, ""))
		}
	}
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.DeleteLater(ctx, secret.ID, nil)(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EditLater(ctx, edited.ID, "nothing secret now", nil)(); err != nil {
		t.Fatal(err)
	}
	late := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "written after the last indexing", ""))

	crashed := filepath.Join(dir, "crashed", "dce.db")
	copyFiles(t, path, crashed)
	copyFiles(t, SearchIndexPath(path), SearchIndexPath(crashed))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !indexFilesContain(t, crashed, canaryTrigrams...) {
		t.Fatal("the crashed index holds none of the canary's trigrams: the test looks in the wrong place")
	}

	db, err = Open(ctx, Options{Path: crashed, SessionSweep: -1, indexerStopped: true})
	if err != nil {
		t.Fatal(err)
	}
	if lag, err := db.SearchIndexLag(ctx); err != nil || lag != 3 {
		t.Errorf("SearchIndexLag = %d, %v on the crashed files; want 3", lag, err)
	}
	if terms := canaryTerms(t, db); terms != 0 {
		t.Errorf("Open left %d of the canary's trigrams in the index", terms)
	}
	var kept int
	if err := db.index.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages_search WHERE rowid IN (?, ?)`, secret.ID, edited.ID).Scan(&kept); err != nil || kept != 0 {
		t.Errorf("Open left %d rows of the changed messages in the index, %v", kept, err)
	}
	for q, want := range map[string][]int64{canary: nil, "nothing secret": {edited.ID}, "after the last indexing": {late.ID}} {
		if got := searchFor(t, db, ann.ID, q); !slices.Equal(got, want) {
			t.Errorf("on the crashed files, Search(%q) = %v, want %v", q, got, want)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if filesContain(t, crashed, canary) || indexFilesContain(t, crashed, canaryTrigrams...) {
		t.Error("the deleted text is still in the files after a clean Close")
	}

	db = MustOpen(t, Options{Path: crashed, SessionSweep: -1})
	deadline := time.Now().Add(10 * time.Second)
	for {
		lag, err := db.SearchIndexLag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the indexer is still %d behind after 10 s", lag)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// copyFiles copies the file at from, and its -wal if there is one, to the
// same names at to (the -shm is rebuilt from the log by the next opener).
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal"} {
		in, err := os.Open(from + suffix)
		if suffix != "" && os.IsNotExist(err) {
			os.Remove(to + suffix)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(to+suffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIndexAheadOfTheStoreIsRebuilt: an index file whose watermark is
// above the store's last seq (it belongs to another store file) is
// emptied and rebuilt: search finds this store's messages and none of
// the other's.
func TestIndexAheadOfTheStoreIsRebuilt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	otherPath := filepath.Join(dir, "other", "dce.db")
	other := MustOpen(t, Options{Path: otherPath})
	bob := storetest.MustCreateUser(t, other, "Bob")
	for range 20 {
		storetest.MustAppend(t, other, storetest.LobbyMessage(bob.ID, "from the other store", ""))
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "this", "dce.db")
	db, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ann := storetest.MustCreateUser(t, db, "Ann")
	mine := storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "from this store", ""))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	copyFiles(t, SearchIndexPath(otherPath), SearchIndexPath(path))

	db = MustOpen(t, Options{Path: path, indexerStopped: true})
	if lag, err := db.SearchIndexLag(ctx); err != nil || lag != mine.Seq {
		t.Errorf("SearchIndexLag = %d, %v; want %d (rebuilt from nothing)", lag, err, mine.Seq)
	}
	if got := searchFor(t, db, ann.ID, "store"); !slices.Equal(got, []int64{mine.ID}) {
		t.Errorf("Search = %v, want [%d]", got, mine.ID)
	}
	if err := db.catchUpIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := searchFor(t, db, ann.ID, "store"); !slices.Equal(got, []int64{mine.ID}) {
		t.Errorf("indexed, Search = %v, want [%d]", got, mine.ID)
	}
}
