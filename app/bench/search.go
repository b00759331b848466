package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
)

// `dce bench search` drives im/search on a running server, one request at
// a time from one logged-in WebSocket connection (a user of `dce bench
// fill`'s file, so that the lobby and their private chats are readable),
// and reports the latency of each kind of query: common and rare words in
// English and Chinese, Japanese, mixed case, words that match nothing,
// one and two characters, and within one conversation.

// SearchConfig is `dce bench search`.
type SearchConfig struct {
	N    int    // queries
	Nick string // the user who searches
	Seed uint64
}

// SearchResult is what `dce bench search` measured.
type SearchResult struct {
	Workload string `json:"workload"`
	Queries  int    `json:"queries"`
	// Long is every query of three characters or more; Short, of one or
	// two; Kinds, each kind of query.
	Long  Latency            `json:"long"`
	Short Latency            `json:"short"`
	Kinds map[string]Latency `json:"kinds"`
	Found map[string]float64 `json:"found_mean"` // messages per reply, by kind
}

// searchQuery is one kind of query and how to make one.
type searchQuery struct {
	kind  string
	short bool
	make  func(rng *rand.Rand) string
}

func pick(list []string) func(*rand.Rand) string {
	return func(rng *rand.Rand) string { return list[rng.IntN(len(list))] }
}

// searchQueries are the kinds `dce bench search` mixes, in turn.
var searchQueries = []searchQuery{
	{"english-common", false, pick([]string{"the", "and", "you", "meeting", "database", "thanks", "server"})},
	{"english-phrase", false, pick([]string{"the database", "deploy the", "coffee and", "please review", "see you"})},
	{"english-case", false, pick([]string{"DATABASE", "Meeting", "ThAnKs", "SERVER DOWN", "Release"})},
	{"english-rare", false, func(rng *rand.Rand) string { return "ticket-" + strconv.Itoa(10000+rng.IntN(90000)) }},
	{"nothing", false, pick([]string{"xylophone", "zqzqzq", "无此内容", "quantum entanglement"})},
	{"chinese", false, pick([]string{"数据库", "服务器", "修好了", "办公室", "截止日期", "没问题", "怎么办"})},
	{"chinese-phrase", false, pick([]string{"数据库坏了", "我们的", "今天下午", "测试代码"})},
	{"japanese", false, pick([]string{"データベース", "ありがとう", "お願いします", "サーバー"})},
	{"mixed", false, pick([]string{"release 发布", "server 坏了", "bug 问题"})},
	{"short", true, pick([]string{"的", "好", "ok", "a", "数据", "It"})},
}

// Search runs the queries.
func Search(ctx context.Context, o Options, cfg SearchConfig) (SearchResult, error) {
	res := SearchResult{Workload: "search", Kinds: map[string]Latency{}, Found: map[string]float64{}}
	k := newConnector(&o)
	c, _, err := k.connect(ctx, 0, cfg.Nick, connectOpts{})
	if err != nil {
		return res, fmt.Errorf("search: logging in as %s: %w", cfg.Nick, err)
	}
	defer c.close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	long, short := &Histogram{}, &Histogram{}
	kinds := map[string]*Histogram{}
	found := map[string]int{}
	counted := map[string]int{}
	// The conversations the user has, for queries within one.
	var conv struct {
		Conversations []struct {
			Conv string `json:"conv"`
		} `json:"conversations"`
	}
	if body, err := c.call("im/conversations", nil, time.Minute); err == nil {
		_ = json.Unmarshal(body, &conv)
	}
	for i := range cfg.N {
		if ctx.Err() != nil {
			break
		}
		q := searchQueries[i%len(searchQueries)]
		kind := q.kind
		request := map[string]any{"q": q.make(rng)}
		if i%(3*len(searchQueries)) == 1 && len(conv.Conversations) > 1 { // now and then, within one conversation
			request["with"] = conv.Conversations[1+rng.IntN(len(conv.Conversations)-1)].Conv
			kind += "-with"
		}
		body, _ := json.Marshal(request)
		started := time.Now()
		reply, err := c.call("im/search", body, time.Minute)
		took := time.Since(started)
		if err != nil {
			return res, fmt.Errorf("search %s: %w", body, err)
		}
		var r struct {
			Messages []json.RawMessage `json:"messages"`
		}
		_ = json.Unmarshal(reply, &r)
		if kinds[kind] == nil {
			kinds[kind] = &Histogram{}
		}
		kinds[kind].Add(took)
		found[kind] += len(r.Messages)
		counted[kind]++
		if q.short {
			short.Add(took)
		} else {
			long.Add(took)
		}
		res.Queries++
	}
	res.Long, res.Short = long.Summary(), short.Summary()
	for kind, h := range kinds {
		res.Kinds[kind] = h.Summary()
		res.Found[kind] = float64(found[kind]) / float64(counted[kind])
	}
	return res, ctx.Err()
}

// runSearch is `dce bench search`.
func runSearch(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("search", out)
	var cfg SearchConfig
	f.fs.IntVar(&cfg.N, "n", 2000, "queries, one at a time")
	f.fs.StringVar(&cfg.Nick, "nick", "bench-fill-1", "the user who searches (a user of `dce bench fill`)")
	f.fs.Uint64Var(&cfg.Seed, "seed", 1, "the queries' random seed")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (SearchResult, error) {
		return Search(c, o, cfg)
	})
}
