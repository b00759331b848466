package imtest

// im/search and im/load's around end to end (README: search): scripts and
// case, what each user may read and nothing else, paging, short queries,
// a message found as soon as im/send replied, never once deleted, and by
// its new text after an edit; every bad input; over every transport.

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
	"dce/common/config"
	"dce/common/model"
	"dce/common/store/sqlite"
	"dce/common/store/storetest"
)

// searchIDs runs im/search on c and returns the ids found and more.
func searchIDs(t *testing.T, c *servertest.Client, body map[string]any) ([]int64, bool) {
	t.Helper()
	var r struct {
		Messages []editMessage `json:"messages"`
		More     bool          `json:"more"`
	}
	c.OK("im/search", body, &r)
	var found []int64
	for _, m := range r.Messages {
		if m.Deleted || m.Text == "" {
			t.Errorf("im/search %v returned %+v", body, m)
		}
		found = append(found, m.ID)
	}
	return found, r.More
}

func searchStart(t *testing.T) *servertest.Server {
	return servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 100000, 100000
	})
}

// TestSearchEveryTransport: the same queries over WebSocket, TCP, UDP and
// HTTP find the same messages: Latin in any case, Chinese without word
// segmentation, Japanese, one and two characters, newest first.
func TestSearchEveryTransport(t *testing.T) {
	s := searchStart(t)
	ann := s.DialWS(t, "", nil)
	annSID, _ := authLogin(t, ann, "ann", "password-ann")
	tcp := s.DialTCP(t)
	tcp.OK("im/resume", map[string]string{"sid": annSID}, nil)
	udp := s.DialUDP(t)
	udp.OK("im/resume", map[string]string{"sid": annSID}, nil)
	database := editSend(t, ann, "room:lobby", "我们的数据库坏了")
	english := editSend(t, ann, "room:lobby", "The DataBase is DOWN again")
	japanese := editSend(t, ann, "room:lobby", "東京タワーへ行きました")
	french := editSend(t, ann, "room:lobby", "À l'École, tout va bien")
	for _, c := range []struct {
		q    string
		want []int64
	}{
		{"数据库", []int64{database}},
		{"数据", []int64{database}},
		{"坏", []int64{database}},
		{"database is", []int64{english}},
		{"DOWN AGAIN", []int64{english}},
		{"dow", []int64{english}},
		{"タワー", []int64{japanese}},
		{"東京", []int64{japanese}},
		{"l'école", []int64{french}},
		{"à l", []int64{french}},
		{"a", []int64{french, english}}, // one letter, both cases: "again", "va"
		{"no such words", nil},
	} {
		for name, c2 := range map[string]*servertest.Client{"websocket": ann, "tcp": tcp, "udp": udp} {
			if got, more := searchIDs(t, c2, map[string]any{"q": c.q}); !slices.Equal(got, c.want) || more {
				t.Errorf("%s: im/search %q = %v more %v, want %v", name, c.q, got, more, c.want)
			}
		}
		resp, body := s.Post(t, "/im/search", map[string]any{"q": c.q}, "Authorization", "Bearer "+annSID)
		for _, id := range c.want {
			if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":`+strconv.FormatInt(id, 10)+`,`) {
				t.Errorf("http: im/search %q: %d %s, want message %d", c.q, resp.StatusCode, body, id)
			}
		}
	}
}

// TestSearchReadableOnly: a canary in a private chat between Bob and Eve
// and in a private group they are in is never found by Ann, whatever she
// asks; Bob finds it; `with` keeps one conversation; naming a conversation
// one may not read is refused as elsewhere.
func TestSearchReadableOnly(t *testing.T) {
	s := searchStart(t)
	ann := s.DialWS(t, "", nil)
	_, annID := authLogin(t, ann, "ann", "password-ann")
	bob := s.DialTCP(t)
	_, bobID := authLogin(t, bob, "bob", "password-bob")
	eve := s.DialUDP(t)
	eve.Login("eve", "password-eve")
	eveID := mustID(t, eve)
	group := createGroup(t, bob, "secret", true, eveID)
	toEve := "user:" + strconv.FormatInt(eveID, 10)
	const canary = "kumquat-canary-4417"
	inPrivate := editSend(t, bob, toEve, "the "+canary+" between bob and eve")
	inGroup := editSend(t, bob, "group:"+strconv.FormatInt(group.ID, 10), "the "+canary+" in the group")
	inLobby := editSend(t, eve, "room:lobby", "nothing secret in the lobby")
	annBob := editSend(t, ann, "user:"+strconv.FormatInt(bobID, 10), "ann's own "+canary+" with bob")

	for _, q := range []string{canary, "kumquat", "4417", "ku", "7", "the", "canary-4"} {
		got, _ := searchIDs(t, ann, map[string]any{"q": q})
		if slices.Contains(got, inPrivate) || slices.Contains(got, inGroup) {
			t.Errorf("ann's im/search %q found others' private messages: %v", q, got)
		}
	}
	if got, _ := searchIDs(t, ann, map[string]any{"q": canary}); !slices.Equal(got, []int64{annBob}) {
		t.Errorf("ann's im/search = %v, want only her own %d", got, annBob)
	}
	if got, _ := searchIDs(t, bob, map[string]any{"q": canary}); !slices.Equal(got, []int64{annBob, inGroup, inPrivate}) {
		t.Errorf("bob's im/search = %v, want %v", got, []int64{annBob, inGroup, inPrivate})
	}
	for with, want := range map[string][]int64{
		toEve: {inPrivate}, "group:" + strconv.FormatInt(group.ID, 10): {inGroup}, "room:lobby": nil,
		"user:" + strconv.FormatInt(annID, 10): {annBob},
	} {
		if got, _ := searchIDs(t, bob, map[string]any{"q": canary, "with": with}); !slices.Equal(got, want) {
			t.Errorf("bob's im/search with %s = %v, want %v", with, got, want)
		}
	}
	if got, _ := searchIDs(t, eve, map[string]any{"q": "secret", "with": "room:lobby"}); !slices.Equal(got, []int64{inLobby}) {
		t.Errorf("eve's im/search in the lobby = %v", got)
	}
	editExpect(t, ann, "im/search", map[string]any{"q": canary, "with": "group:" + strconv.FormatInt(group.ID, 10)}, "forbidden")
	editExpect(t, ann, "im/search", map[string]any{"q": canary, "with": "group:999999"}, "not_found")
	editExpect(t, ann, "im/search", map[string]any{"q": canary, "with": "user:999999"}, "not_found")
	// Ann's search "with" Eve is her own conversation with Eve: empty.
	if got, _ := searchIDs(t, ann, map[string]any{"q": canary, "with": toEve}); len(got) != 0 {
		t.Errorf("ann's im/search with eve = %v", got)
	}
}

// TestSearchPagingAndLimits: newest first, limit default 20 and max 100,
// before pages on, and every bad input.
func TestSearchPagingAndLimits(t *testing.T) {
	s := searchStart(t)
	ann := s.DialTCP(t)
	authLogin(t, ann, "ann", "password-ann")
	var all []int64
	for i := range 130 {
		all = append(all, editSend(t, ann, "room:lobby", "paged search "+strconv.Itoa(i)))
	}
	slices.Reverse(all)
	got, more := searchIDs(t, ann, map[string]any{"q": "paged search"})
	if !slices.Equal(got, all[:20]) || !more {
		t.Errorf("the first page: %v more %v", got, more)
	}
	got, more = searchIDs(t, ann, map[string]any{"q": "paged search", "before": got[19], "limit": 100})
	if !slices.Equal(got, all[20:120]) || !more {
		t.Errorf("the second page: %d messages more %v", len(got), more)
	}
	got, more = searchIDs(t, ann, map[string]any{"q": "paged search", "before": got[99], "limit": 500})
	if !slices.Equal(got, all[120:]) || more {
		t.Errorf("the last page: %v more %v", got, more)
	}
	if got, _ := searchIDs(t, ann, map[string]any{"q": "paged search", "limit": 1000}); len(got) != 100 {
		t.Errorf("limit 1000 gave %d, want 100", len(got))
	}
	if got, _ := searchIDs(t, ann, map[string]any{"q": strings.Repeat("長", 256)}); len(got) != 0 {
		t.Errorf("a 256-character query found %v", got)
	}
	for _, body := range []any{
		`{}`, map[string]any{"q": ""}, map[string]any{"q": strings.Repeat("x", 257)}, map[string]any{"q": 7},
		map[string]any{"q": "a\x00b"}, map[string]any{"q": "abc", "before": -1}, map[string]any{"q": "abc", "limit": -1},
		map[string]any{"q": "abc", "before": "x"}, map[string]any{"q": "abc", "with": "lobby"},
		map[string]any{"q": "abc", "with": "user:0"}, `[]`,
	} {
		editExpect(t, ann, "im/search", body, "bad_request")
	}
	editExpect(t, s.DialTCP(t), "im/search", map[string]any{"q": "abc"}, "unauthorized")
}

// TestSearchFollowsChanges: found as soon as im/send has replied (from
// another connection, at once), by its new text after im/edit and not its
// old, and never once deleted.
func TestSearchFollowsChanges(t *testing.T) {
	s := searchStart(t)
	ann := s.DialWS(t, "", nil)
	annSID, _ := authLogin(t, ann, "ann", "password-ann")
	other := s.DialTCP(t)
	other.OK("im/resume", map[string]string{"sid": annSID}, nil)
	for i := range 20 {
		text := "fresh-" + strconv.Itoa(i) + " words"
		id := editSend(t, ann, "room:lobby", text)
		if got, _ := searchIDs(t, other, map[string]any{"q": "fresh-" + strconv.Itoa(i) + " "}); !slices.Equal(got, []int64{id}) {
			t.Fatalf("right after im/send replied, im/search %q = %v, want %d", text, got, id)
		}
	}
	id := editSend(t, ann, "room:lobby", "the first wording, 旧的说法")
	ann.OK("im/edit", map[string]any{"id": id, "text": "the second phrasing, 新的说法"}, nil)
	for q, want := range map[string][]int64{"first wording": nil, "旧的": nil, "second phrasing": {id}, "新的说法": {id}} {
		if got, _ := searchIDs(t, other, map[string]any{"q": q}); !slices.Equal(got, want) {
			t.Errorf("after the edit, im/search %q = %v, want %v", q, got, want)
		}
	}
	ann.OK("im/delete", map[string]any{"id": id}, nil)
	for _, q := range []string{"second phrasing", "新的", "新", "ph"} {
		if got, _ := searchIDs(t, other, map[string]any{"q": q}); slices.Contains(got, id) {
			t.Errorf("after the deletion, im/search %q = %v", q, got)
		}
	}
}

// TestLoadAround: im/load around a search result: the message and about
// half older and half newer, oldest first, more and newer; around with
// before or after, around a message of another conversation or one the
// caller cannot read, are refused.
func TestLoadAround(t *testing.T) {
	s := searchStart(t)
	ann := s.DialWS(t, "", nil)
	_, annID := authLogin(t, ann, "ann", "password-ann")
	bob := s.DialTCP(t)
	_, bobID := authLogin(t, bob, "bob", "password-bob")
	var lobby []int64
	for i := range 30 {
		lobby = append(lobby, editSend(t, ann, "room:lobby", "around "+strconv.Itoa(i)))
	}
	private := editSend(t, bob, "user:"+strconv.FormatInt(annID, 10), "private one")
	eve := s.DialUDP(t)
	eve.Login("eve", "password-eve")
	bobEve := editSend(t, bob, "user:"+strconv.FormatInt(mustID(t, eve), 10), "not for ann")
	type aroundResult struct {
		Messages []editMessage `json:"messages"`
		More     bool          `json:"more"`
		Newer    bool          `json:"newer"`
	}
	load := func(body map[string]any) aroundResult {
		var r aroundResult
		ann.OK("im/load", body, &r)
		return r
	}
	idsOf := func(msgs []editMessage) []int64 {
		var list []int64
		for _, m := range msgs {
			list = append(list, m.ID)
		}
		return list
	}
	for _, c := range []struct {
		around, limit int
		want          []int64
		more, newer   bool
	}{
		{15, 11, lobby[10:21], true, true},
		{15, 0, lobby[:], false, false}, // 50: all 30
		{2, 11, lobby[0:8], false, true},
		{29, 11, lobby[24:30], true, false},
		{15, 1, lobby[15:16], true, true},
		{15, 2, lobby[15:17], true, true},
	} {
		r := load(map[string]any{"with": "room:lobby", "around": lobby[c.around], "limit": c.limit})
		if got := idsOf(r.Messages); !slices.Equal(got, c.want) || r.More != c.more || r.Newer != c.newer {
			t.Errorf("around message %d, limit %d: %v more %v newer %v; want %v more %v newer %v",
				c.around, c.limit, got, r.More, r.Newer, c.want, c.more, c.newer)
		}
	}
	if r := load(map[string]any{"with": "user:" + strconv.FormatInt(bobID, 10), "around": private}); !slices.Equal(idsOf(r.Messages), []int64{private}) ||
		r.Messages[0].Conv != "user:"+strconv.FormatInt(bobID, 10) {
		t.Errorf("around a private message: %+v", r)
	}
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": lobby[3], "before": lobby[5]}, "bad_request")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": lobby[3], "after": lobby[1]}, "bad_request")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": 0}, "bad_request")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": -3}, "bad_request")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": "7"}, "bad_request")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": private}, "not_found")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": bobEve}, "not_found")
	editExpect(t, ann, "im/load", map[string]any{"with": "room:lobby", "around": bobEve + 100}, "not_found")
}

// TestSearchRateLimitedPerUser: with the default limits a user may search
// 10 times at once (5 a second after that); the next is rate_limited
// with a retry_after_ms, and another user is not held back.
func TestSearchRateLimitedPerUser(t *testing.T) {
	s := servertest.Start(t)
	ann := s.DialWS(t, "", nil)
	authLogin(t, ann, "ann", "password-ann")
	bob := s.DialWS(t, "", nil)
	authLogin(t, bob, "bob", "password-bob")
	for i := range 10 {
		if f := ann.Request("im/search", map[string]any{"q": "anything"}); f.ErrorCode() != "" {
			t.Fatalf("search %d: %s", i+1, f)
		}
	}
	f := ann.Request("im/search", map[string]any{"q": "anything"})
	if f.ErrorCode() != "rate_limited" || retryAfterMS(t, f) <= 0 {
		t.Fatalf("the 11th search at once = %s, want rate_limited with retry_after_ms", f)
	}
	if f := bob.Request("im/search", map[string]any{"q": "anything"}); f.ErrorCode() != "" {
		t.Fatalf("another user's search: %s", f)
	}
}

// TestSearchWorstCaseSparesLoad: while six users search at once, over
// and over, for a phrase found only in 30,000 private messages of two
// others (each search walks the index hits up to its bound; the server
// runs two at a time), an unrelated im/load of the lobby stays about as
// fast as when the server is idle: it always finds a reader connection.
func TestSearchWorstCaseSparesLoad(t *testing.T) {
	servertest.SQLiteOnly(t)
	cfg := servertest.Config(t)
	cfg.Limits.MessagesPerSecond, cfg.Limits.MessageBurst = 100000, 100000
	s := servertest.StartConfig(t, cfg, boot.Options{})
	ids := map[string]int64{}
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "reader"} {
		c := s.DialWS(t, "", nil)
		_, ids[name] = authLogin(t, c, name, "password-"+name)
		c.Close()
	}
	s.Close()

	ctx := context.Background()
	db, err := sqlite.Open(ctx, sqlite.Options{Path: cfg.StorePath(), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	var waits []func() (model.Message, bool, error)
	for i := range 30000 {
		waits = append(waits, db.AppendLater(ctx, storetest.DirectMessage(ids["a"], ids["b"], "xyzzy "+strconv.Itoa(i), ""), nil))
	}
	for i := range 50 {
		waits = append(waits, db.AppendLater(ctx, storetest.LobbyMessage(ids["a"], "lobby line "+strconv.Itoa(i), ""), nil))
	}
	for _, wait := range waits {
		if _, _, err := wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil { // indexes everything first
		t.Fatal(err)
	}

	s = servertest.StartConfig(t, cfg, boot.Options{})
	reader := s.DialWS(t, "", nil)
	authLogin(t, reader, "reader", "password-reader")
	load := func() time.Duration {
		start := time.Now()
		reader.OK("im/load", map[string]any{"with": "room:lobby", "limit": 50}, nil)
		return time.Since(start)
	}
	median := func(n int) time.Duration {
		var d []time.Duration
		for range n {
			d = append(d, load())
			time.Sleep(10 * time.Millisecond)
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	idle := median(21)

	stop := make(chan struct{})
	var searchers sync.WaitGroup
	var searched, limited atomic.Int64
	for _, name := range []string{"c", "d", "e", "f", "g", "h"} {
		c := s.DialWS(t, "", nil)
		authLogin(t, c, name, "password-"+name)
		searchers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				f, err := c.TryRequest("im/search", map[string]any{"q": "xyzzy"}, 30*time.Second)
				switch {
				case err != nil:
					t.Errorf("im/search: %v", err)
					return
				case f.ErrorCode() == "rate_limited":
					limited.Add(1)
				case f.ErrorCode() != "":
					t.Errorf("im/search: %s", f)
					return
				default:
					searched.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // the searches under way
	busy := median(21)
	close(stop)
	searchers.Wait()
	t.Logf("im/load median idle %v, while searching %v; %d searches, %d rate_limited", idle, busy, searched.Load(), limited.Load())
	if searched.Load() == 0 {
		t.Fatal("no search ran")
	}
	if busy > 10*idle+20*time.Millisecond {
		t.Errorf("im/load took %v while six users searched, %v idle", busy, idle)
	}
}
