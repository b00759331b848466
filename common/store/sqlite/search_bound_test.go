package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store/storetest"
)

// fillPrivate appends n private messages from a to b whose texts all
// contain phrase, queued in batches so that group commits are full, and
// waits for the index to catch up.
func fillPrivate(tb testing.TB, db *DB, a, b int64, n int, phrase string) {
	tb.Helper()
	ctx := context.Background()
	const depth = 512
	var waits []func() (model.Message, bool, error)
	flush := func() {
		for _, wait := range waits {
			if _, _, err := wait(); err != nil {
				tb.Fatal(err)
			}
		}
		waits = waits[:0]
	}
	for i := range n {
		m := storetest.DirectMessage(a, b, fmt.Sprintf("note %d: %s between a and b", i, phrase), "")
		waits = append(waits, db.AppendLater(ctx, m, nil))
		if len(waits) == depth {
			flush()
		}
	}
	flush()
	if err := db.catchUpIndex(ctx, nil); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSearchOthersPhrase is the worst case of an indexed search: a
// phrase that occurs only in a private conversation of two other users
// (200,000 messages, all indexed), searched by a third user, who may read
// none of them. Each op is one search. Run it with
//
//	go test ./common/store/sqlite -run x -bench SearchOthersPhrase -benchtime 20x
func BenchmarkSearchOthersPhrase(b *testing.B) {
	db := MustOpen(b, Options{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: "NORMAL"})
	ua := storetest.MustCreateUser(b, db, "a")
	ub := storetest.MustCreateUser(b, db, "b")
	uc := storetest.MustCreateUser(b, db, "c")
	start := time.Now()
	fillPrivate(b, db, ua.ID, ub.ID, 200000, "xyzzy")
	b.Logf("filled 200,000 messages in %v", time.Since(start))
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		msgs, _, _, err := db.Search(ctx, uc.ID, "xyzzy", "", 0, 20)
		if err != nil || len(msgs) != 0 {
			b.Fatalf("Search = %d messages, %v; want none", len(msgs), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/search")
}

// BenchmarkScanConversation is a search within a small conversation,
// which reads and matches every message of it: 4,000 rows of long
// texts (ASCII, and Greek for the path that folds runes), none matching.
// allocs/op divided by the rows is what the scan allocates per row.
//
//	go test ./common/store/sqlite -run x -bench ScanConversation -benchmem
func BenchmarkScanConversation(b *testing.B) {
	for _, c := range []struct{ name, word string }{{"ascii", "Lorem ipsum dolor "}, {"greek", "Σοφία λόγος "}} {
		b.Run(c.name, func(b *testing.B) {
			db := MustOpen(b, Options{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: "NORMAL"})
			ua := storetest.MustCreateUser(b, db, "a")
			ub := storetest.MustCreateUser(b, db, "b")
			const rows = 4000
			text := strings.Repeat(c.word, 2000/len([]rune(c.word)))
			ctx := context.Background()
			var waits []func() (model.Message, bool, error)
			for range rows {
				waits = append(waits, db.AppendLater(ctx, storetest.DirectMessage(ua.ID, ub.ID, text, ""), nil))
			}
			for _, wait := range waits {
				if _, _, err := wait(); err != nil {
					b.Fatal(err)
				}
			}
			key := model.Address{Kind: model.AddrUser, ID: ub.ID}.Key(ua.ID)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				msgs, _, _, err := db.Search(ctx, ua.ID, "no such phrase", key, 0, 20)
				if err != nil || len(msgs) != 0 {
					b.Fatalf("Search = %d, %v", len(msgs), err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/search")
		})
	}
}

// TestSearchBoundedWork: a search examines at most SearchExamined
// candidates. A phrase found in more than that many messages of a
// conversation the reader may not read, above the one match they may
// (an older lobby message), gives pages with nothing, more and the id to
// go on below, until the paging reaches the lobby message; within a
// conversation of more than SearchExamined messages (a small one still,
// scanned) whose only match is its oldest, the first page is empty, and
// the second finds it.
func TestSearchBoundedWork(t *testing.T) {
	db := MustOpen(t, Options{})
	ua := storetest.MustCreateUser(t, db, "a")
	ub := storetest.MustCreateUser(t, db, "b")
	uc := storetest.MustCreateUser(t, db, "c")
	ctx := context.Background()
	lobby := storetest.MustAppend(t, db, storetest.LobbyMessage(ua.ID, "xyzzy for everyone", ""))
	fillPrivate(t, db, ua.ID, ub.ID, 2*SearchExamined+100, "xyzzy")

	var pages [][]int64
	var before int64
	for range 5 {
		msgs, more, next, err := db.Search(ctx, uc.ID, "XYZZY", "", before, 20)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, ids(msgs))
		if !more {
			if next != 0 {
				t.Errorf("Search without more gave next %d", next)
			}
			break
		}
		if next <= 0 || (before > 0 && next >= before) {
			t.Fatalf("page %d: next %d after before %d", len(pages), next, before)
		}
		before = next
	}
	want := [][]int64{nil, nil, {lobby.ID}}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Errorf("c's pages of XYZZY = %v, want %v", pages, want)
	}
	// a reads them all: full pages, next the last one's id.
	msgs, more, next, err := db.Search(ctx, ua.ID, "xyzzy", "", 0, 20)
	if err != nil || len(msgs) != 20 || !more || next != msgs[19].ID {
		t.Errorf("a's first page: %d messages, more %v, next %d, %v", len(msgs), more, next, err)
	}

	// A conversation of SearchExamined+50 messages, scanned, whose only
	// match is the oldest.
	first := storetest.MustAppend(t, db, storetest.DirectMessage(ua.ID, uc.ID, "the plugh is here", ""))
	fillPrivate(t, db, uc.ID, ua.ID, SearchExamined+50, "nothing")
	key := model.Address{Kind: model.AddrUser, ID: uc.ID}.Key(ua.ID)
	if small, err := db.smallConversation(ctx, key, 0); err != nil || !small {
		t.Fatalf("smallConversation = %v, %v; the case needs a scanned one", small, err)
	}
	msgs, more, next, err = db.Search(ctx, ua.ID, "PLUGH", key, 0, 20)
	if err != nil || len(msgs) != 0 || !more || next <= first.ID {
		t.Fatalf("first page of the scan: %v, more %v, next %d, %v; want none, more, next above %d", ids(msgs), more, next, err, first.ID)
	}
	msgs, more, _, err = db.Search(ctx, ua.ID, "PLUGH", key, next, 20)
	if err != nil || !slices.Equal(ids(msgs), []int64{first.ID}) || more {
		t.Errorf("second page of the scan: %v, more %v, %v; want [%d]", ids(msgs), more, err, first.ID)
	}
}

// TestFolderMatchesFoldCase: folder.contains agrees with foldCase on
// ASCII, mixed and non-Latin texts, with its buffer reused between them.
func TestFolderMatchesFoldCase(t *testing.T) {
	texts := []string{"", "plain ascii", "MiXeD CaSe", "École ÉCOLE", "ΣΟΦΊΑ σοφία", "数据库坏了", "Kelvin \u212a and ſ long s", "ascii then é", "x"}
	queries := []string{"a", "ASCII", "mixed case", "école", "σοφία", "数据", "k AND", "kelvin k", "s long", "THEN É", "nothing"}
	for _, q := range queries {
		f := newFolder(q)
		for _, text := range texts {
			want := strings.Contains(foldCase(text), foldCase(q))
			if got := f.contains(text); got != want {
				t.Errorf("newFolder(%q).contains(%q) = %v, want %v", q, text, got, want)
			}
		}
	}
}

// BenchmarkFoldMatch is the matching of one scanned row, as the scans did
// it (a folded copy of the text) and as they do (folder): allocs/op is
// what matching costs per row.
//
//	go test ./common/store/sqlite -run x -bench FoldMatch -benchmem
func BenchmarkFoldMatch(b *testing.B) {
	for _, c := range []struct{ name, word string }{{"ascii", "Lorem ipsum dolor "}, {"greek", "Σοφία λόγος "}} {
		text := strings.Repeat(c.word, 2000/len([]rune(c.word)))
		b.Run(c.name+"/copy", func(b *testing.B) {
			b.ReportAllocs()
			folded := foldCase("no such phrase")
			for range b.N {
				if strings.Contains(foldCase(text), folded) {
					b.Fatal("matched")
				}
			}
		})
		b.Run(c.name+"/folder", func(b *testing.B) {
			b.ReportAllocs()
			f := newFolder("no such phrase")
			for range b.N {
				if f.contains(text) {
					b.Fatal("matched")
				}
			}
		})
	}
}
