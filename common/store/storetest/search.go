package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"dce/common/model"
)

// searchIDs runs Search and fails the test on an error.
func searchIDs(tb testing.TB, db Engine, reader int64, q string, key model.ConvKey, before int64, limit int) ([]int64, bool) {
	tb.Helper()
	msgs, more, _, err := db.Search(context.Background(), reader, q, key, before, limit)
	if err != nil {
		tb.Fatalf("Search(%d, %q, %q, %d, %d): %v", reader, q, key, before, limit, err)
	}
	return ids(msgs), more
}

// testSearchScriptsAndCase: substrings in Latin (any case, accents
// folded by case only), Chinese without segmentation, Japanese, Cyrillic
// and Greek, and queries with FTS5's own syntax characters, found as text.
func testSearchScriptsAndCase(t *testing.T, db Engine) {
	ann := MustCreateUser(t, db, "Ann")
	texts := []string{
		"我们的数据库坏了",                         // 0
		"The DataBase is down again",       // 1
		"東京タワーへ行きました",                      // 2
		"École Normale, ÉCOLE and école",   // 3
		"Привет, МИР",                      // 4
		"ΣΟΦΊΑ and σοφία",                  // 5
		`say "hi" AND NOT bye* (or) col:x`, // 6
		"数据 and 库 apart",                   // 7
	}
	var stored []int64
	for _, text := range texts {
		stored = append(stored, MustAppend(t, db, LobbyMessage(ann.ID, text, "")).ID)
	}
	for _, c := range []struct {
		q    string
		want []int
	}{
		{"数据库", []int{0}},
		{"坏了", []int{0}}, // two characters: the short scan
		{"database", []int{1}},
		{"DATABASE IS", []int{1}},
		{"tabas", []int{1}},
		{"タワー", []int{2}},
		{"東京", []int{2}},
		{"école", []int{3}},
		{"ÉCOLE NORMALE", []int{3}},
		{"мир", []int{4}},
		{"σοφία", []int{5}},
		{`"hi" AND`, []int{6}},
		{"bye* (or)", []int{6}},
		{"col:x", []int{6}},
		{"数据", []int{7, 0}},
		{"nothing like it", nil},
	} {
		got, more := searchIDs(t, db, ann.ID, c.q, "", 0, 0)
		var want []int64
		for _, i := range c.want {
			want = append(want, stored[i])
		}
		if !slices.Equal(got, want) || more {
			t.Errorf("Search(%q) = %v more %v, want %v", c.q, got, more, want)
		}
	}
}

// testSearchReadableOnly: a reader finds the lobby and their own private
// conversations, never others'; key keeps one conversation.
func testSearchReadableOnly(t *testing.T, db Engine) {
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	eve := MustCreateUser(t, db, "Eve")
	lobby := MustAppend(t, db, LobbyMessage(eve.ID, "canary in the lobby", ""))
	annBob := MustAppend(t, db, DirectMessage(ann.ID, bob.ID, "canary between Ann and Bob", ""))
	bobEve := MustAppend(t, db, DirectMessage(eve.ID, bob.ID, "canary between Eve and Bob", ""))
	self := MustAppend(t, db, DirectMessage(ann.ID, ann.ID, "canary note to self", ""))
	for _, c := range []struct {
		reader int64
		key    model.ConvKey
		want   []int64
	}{
		{ann.ID, "", []int64{self.ID, annBob.ID, lobby.ID}},
		{bob.ID, "", []int64{bobEve.ID, annBob.ID, lobby.ID}},
		{eve.ID, "", []int64{bobEve.ID, lobby.ID}},
		{ann.ID, annBob.Key, []int64{annBob.ID}},
		{ann.ID, model.LobbyKey, []int64{lobby.ID}},
		{ann.ID, bobEve.Key, nil}, // a conversation Ann is not in: nothing, whatever the key
	} {
		for _, q := range []string{"canary", "ca", "CANARY"} {
			if got, _ := searchIDs(t, db, c.reader, q, c.key, 0, 0); !slices.Equal(got, c.want) {
				t.Errorf("Search(reader %d, %q, key %q) = %v, want %v", c.reader, q, c.key, got, c.want)
			}
		}
	}
}

// testSearchPaging: newest first, limit and more, before pages on, and
// the limits are clamped.
func testSearchPaging(t *testing.T, db Engine) {
	ann := MustCreateUser(t, db, "Ann")
	var all []int64
	for i := range 130 {
		all = append(all, MustAppend(t, db, LobbyMessage(ann.ID, fmt.Sprint("page me ", i), "")).ID)
		MustAppend(t, db, LobbyMessage(ann.ID, fmt.Sprint("noise ", i), ""))
	}
	slices.Reverse(all) // newest first
	got, more := searchIDs(t, db, ann.ID, "page me", "", 0, 0)
	if !slices.Equal(got, all[:20]) || !more {
		t.Errorf("the first page = %v more %v, want the newest 20 and more", got, more)
	}
	got, more = searchIDs(t, db, ann.ID, "page me", "", got[len(got)-1], 50)
	if !slices.Equal(got, all[20:70]) || !more {
		t.Errorf("the second page = %v more %v, want the next 50 and more", got, more)
	}
	got, more = searchIDs(t, db, ann.ID, "page me", "", got[len(got)-1], 1000) // clamped to 100
	if !slices.Equal(got, all[70:130]) || more {
		t.Errorf("the last page = %d messages more %v, want the last 60 and no more", len(got), more)
	}
	got, _ = searchIDs(t, db, ann.ID, "page me", "", 0, 1000)
	if len(got) != 100 {
		t.Errorf("a limit of 1000 gave %d messages, want 100", len(got))
	}
	if got, more = searchIDs(t, db, ann.ID, "page me", "", all[129], 0); len(got) != 0 || more {
		t.Errorf("before the oldest match: %v more %v", got, more)
	}
}

// testSearchShortQueries: one and two characters match as substrings, in
// every case spelling, among the newest messages the reader may read.
func testSearchShortQueries(t *testing.T, db Engine) {
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	ok := MustAppend(t, db, LobbyMessage(ann.ID, "that is OK with me", "")).ID
	kelvin := MustAppend(t, db, LobbyMessage(ann.ID, "it was 300\u212a", "")).ID // KELVIN SIGN folds to k
	han := MustAppend(t, db, LobbyMessage(ann.ID, "好", "")).ID
	private := MustAppend(t, db, DirectMessage(bob.ID, bob.ID, "ok to myself", "")).ID
	for _, c := range []struct {
		reader int64
		q      string
		want   []int64
	}{
		{ann.ID, "ok", []int64{ok}},
		{ann.ID, "Ok", []int64{ok}},
		{bob.ID, "oK", []int64{private, ok}},
		{ann.ID, "k", []int64{kelvin, ok}},
		{ann.ID, "好", []int64{han}},
		{ann.ID, "%", nil}, // no LIKE pattern
		{ann.ID, "_", nil},
	} {
		if got, _ := searchIDs(t, db, c.reader, c.q, "", 0, 0); !slices.Equal(got, c.want) {
			t.Errorf("Search(reader %d, %q) = %v, want %v", c.reader, c.q, got, c.want)
		}
	}
}

// testSearchFollowsEditsAndDeletes: a message is found as soon as it is
// stored, by its new text after an edit and not by its old, and never once
// deleted.
func testSearchFollowsEditsAndDeletes(t *testing.T, db Engine) {
	ann := MustCreateUser(t, db, "Ann")
	msg := MustAppend(t, db, LobbyMessage(ann.ID, "the old wording", ""))
	if got, _ := searchIDs(t, db, ann.ID, "old wording", "", 0, 0); !slices.Equal(got, []int64{msg.ID}) {
		t.Errorf("right after the append: %v", got)
	}
	mustEdit(t, db, msg.ID, "the new phrasing")
	for q, want := range map[string][]int64{"old wording": nil, "new phrasing": {msg.ID}, "ol": nil, "ph": {msg.ID}} {
		if got, _ := searchIDs(t, db, ann.ID, q, "", 0, 0); !slices.Equal(got, want) {
			t.Errorf("after the edit, Search(%q) = %v, want %v", q, got, want)
		}
	}
	mustDelete(t, db, msg.ID)
	for _, q := range []string{"new phrasing", "the", "ph"} {
		if got, _ := searchIDs(t, db, ann.ID, q, "", 0, 0); len(got) != 0 {
			t.Errorf("after the deletion, Search(%q) = %v", q, got)
		}
	}
}
