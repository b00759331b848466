package postgres

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store/storetest"
)

// TestSearchAtScale is the search benchmark's idea at a small scale: a
// store of mixed English and Chinese messages (DCE_SEARCH_MESSAGES, default
// 20,000), appended durably by 64 writers; then common and rare, Latin and
// Chinese, long and short queries, each checked against a scan of what
// was stored and timed (the median of five). It logs the append rate and
// each query's time; it asserts the results, and only a generous bound on
// time. Run it with
//
//	DCE_SEARCH_MESSAGES=100000 go test ./common/store/postgres -run SearchAtScale -v
func TestSearchAtScale(t *testing.T) {
	n := 20000
	if value := os.Getenv("DCE_SEARCH_MESSAGES"); value != "" {
		var err error
		if n, err = strconv.Atoi(value); err != nil || n < 1000 {
			t.Fatalf("DCE_SEARCH_MESSAGES=%q: want a number of at least 1000", value)
		}
	}
	db := openTest(t, freshDatabase(t), Options{})
	ctx := context.Background()
	ann := storetest.MustCreateUser(t, db, "Ann")
	bob := storetest.MustCreateUser(t, db, "Bob")
	english := strings.Fields("the quick brown fox jumps over lazy dog meeting tomorrow lunch project deadline review coffee weather")
	chinese := []rune("我们明天开会讨论项目进度今天天气很好午饭吃什么周末去公园散步")
	rng := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, n)
	for i := range texts {
		var text strings.Builder
		if i%2 == 0 {
			for range 8 {
				text.WriteString(english[rng.IntN(len(english))] + " ")
			}
		} else {
			for range 12 {
				text.WriteRune(chinese[rng.IntN(len(chinese))])
			}
		}
		if i%997 == 0 {
			text.WriteString(" Zebra-Crossing 斑马线")
		}
		texts[i] = text.String()
	}
	start := time.Now()
	var wg sync.WaitGroup
	const writers = 64
	stored := make([]model.Message, n)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				m := storetest.LobbyMessage(ann.ID, texts[i], "")
				if i%3 == 0 {
					m = storetest.DirectMessage(ann.ID, bob.ID, texts[i], "")
				}
				msg, _, err := db.AppendLater(ctx, m, nil)()
				if err != nil {
					t.Error(err)
					return
				}
				stored[i] = msg
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	elapsed := time.Since(start)
	t.Logf("%d durable appends from %d writers in %v: %.0f/s, %.1f per commit", n, writers, elapsed,
		float64(n)/elapsed.Seconds(), float64(n)/float64(db.Commits()))
	if _, err := db.pool.Exec(ctx, `ANALYZE messages`); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(stored, func(a, b model.Message) int { return int(b.ID - a.ID) })
	for _, q := range []string{"zebra-crossing", "斑马线", "斑马", "MEETING TOMORROW", "天气很好", "明天", "fox", "x", "我"} {
		var want []int64 // the newest 20 matches, by a scan
		fold, window := foldCase(q), stored
		if len([]rune(q)) < 3 && len(window) > ShortSearchWindow {
			window = window[:ShortSearchWindow] // a short query looks through the newest only
		}
		for _, msg := range window {
			if len(want) == 20 {
				break
			}
			if strings.Contains(foldCase(msg.Text), fold) {
				want = append(want, msg.ID)
			}
		}
		var times []time.Duration
		for range 5 {
			start := time.Now()
			msgs, _, _, err := db.Search(ctx, bob.ID, q, "", 0, 20)
			times = append(times, time.Since(start))
			if err != nil {
				t.Fatalf("Search(%q): %v", q, err)
			}
			got := make([]int64, len(msgs))
			for i, msg := range msgs {
				got[i] = msg.ID
			}
			if !slices.Equal(got, want) {
				t.Fatalf("Search(%q) = %v, want %v", q, got, want)
			}
		}
		slices.Sort(times)
		t.Logf("search %-18q over %d messages: median %v", q, n, times[2])
		if times[2] > 2*time.Second {
			t.Errorf("search %q took %v", q, times[2])
		}
	}
}
