package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dce/common/model"
	"dce/common/store/sqlite"
	"dce/project/im/service"
)

// `dce bench fill` writes a store file with N messages of mixed text
// (English, Chinese, some Japanese, mixed lines, ticket numbers) from U
// users, in the lobby and in private chats, through the store's own
// writer, so that the search index is filled as the server fills it. It
// runs with no server: start one on the file afterwards
// (DCE_STORE_PATH=FILE) to drive it with `dce bench search`.

// FillConfig is `dce bench fill`.
type FillConfig struct {
	DB       string // the store file to create (it must not exist)
	N        int    // messages
	Users    int    // users, named PREFIX-fill-0 .. PREFIX-fill-(U-1), each with the bench password
	Seed     uint64 // the texts' random seed
	Password string
	Prefix   string
	Progress io.Writer
}

// FillResult is what `dce bench fill` did, and the sizes it left.
type FillResult struct {
	Workload   string  `json:"workload"`
	DB         string  `json:"db"`
	Messages   int     `json:"messages"`
	Users      int     `json:"users"`
	Private    int     `json:"private"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"msgs_per_s"`
	FileBytes  int64   `json:"file_bytes"`
	TextBytes  int64   `json:"text_bytes"`       // UTF-8 bytes of every message's text
	IndexBytes int64   `json:"index_bytes"`      // the search index's pages (messages_search's shadow tables, in the index file)
	IndexFile  int64   `json:"index_file_bytes"` // the search index's file (sqlite.SearchIndexPath)
	IndexRatio float64 `json:"index_per_text_byte"`
}

// fillWriters is how many goroutines queue appends at once, and fillDepth
// how many each keeps queued: enough to keep every group commit full.
const (
	fillWriters = 8
	fillDepth   = 128
)

// Fill writes the store file.
func Fill(ctx context.Context, cfg FillConfig) (FillResult, error) {
	res := FillResult{Workload: "fill", DB: cfg.DB, Messages: cfg.N, Users: cfg.Users}
	if cfg.DB == "" || cfg.N <= 0 || cfg.Users < 2 {
		return res, errors.New("fill: -db FILE, -n N > 0 and -users U >= 2 are needed")
	}
	if _, err := os.Stat(cfg.DB); err == nil {
		return res, fmt.Errorf("fill: %s exists; fill writes a new file", cfg.DB)
	}
	// synchronous=NORMAL: a filled file is a fixture, and a crash while
	// filling it means filling it again.
	db, err := sqlite.Open(ctx, sqlite.Options{Path: cfg.DB, Synchronous: "NORMAL", SessionSweep: -1})
	if err != nil {
		return res, err
	}
	defer db.Close()
	// One real password hash, shared: the bench logs in as these users.
	hash, err := service.NewHasher(service.ArgonParams{MemoryKiB: 19456, Time: 2, Threads: 1}, 1, time.Minute).Hash(ctx, cfg.Password)
	if err != nil {
		return res, err
	}
	users := make([]int64, cfg.Users)
	for i := range users {
		account, err := db.CreateUser(ctx, fmt.Sprintf("%s-fill-%d", cfg.Prefix, i), hash, "")
		if err != nil {
			return res, err
		}
		users[i] = account.ID
	}

	start := time.Now()
	var next, private atomic.Int64
	var textBytes atomic.Int64
	errs := make(chan error, fillWriters)
	var wg sync.WaitGroup
	base := time.Now().Add(-365 * 24 * time.Hour).UnixMilli()
	for w := range fillWriters {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			var waits []func() (model.Message, bool, error)
			flush := func() error {
				for _, wait := range waits {
					if _, _, err := wait(); err != nil {
						return err
					}
				}
				waits = waits[:0]
				return nil
			}
			for {
				n := next.Add(1)
				if n > int64(cfg.N) || ctx.Err() != nil {
					if err := flush(); err != nil {
						errs <- err
					}
					return
				}
				sender := users[rng.IntN(len(users))]
				m := model.NewMessage{Key: model.LobbyKey, Sender: sender, To: model.Lobby, Kind: model.KindText,
					Text: fillText(rng), TS: base + n*30}
				if rng.IntN(10) < 4 { // four in ten are private
					peer := users[rng.IntN(len(users))]
					to := model.Address{Kind: model.AddrUser, ID: peer}
					m.Key, m.To, m.ToUser = to.Key(sender), to.String(), peer
					private.Add(1)
				}
				textBytes.Add(int64(len(m.Text)))
				waits = append(waits, db.AppendLater(ctx, m, nil))
				if len(waits) == fillDepth {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
				if cfg.Progress != nil && n%100000 == 0 {
					fmt.Fprintf(cfg.Progress, "fill: %d messages, %.0f/s\n", n, float64(n)/time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.Seconds = time.Since(start).Seconds()
	res.PerSecond = float64(cfg.N) / res.Seconds
	res.Private = int(private.Load())
	res.TextBytes = textBytes.Load()
	if err := db.Close(); err != nil {
		return res, err
	}
	if res.IndexBytes, err = sqlite.IndexBytes(ctx, cfg.DB); err != nil {
		return res, err
	}
	if info, err := os.Stat(cfg.DB); err == nil {
		res.FileBytes = info.Size()
	}
	if info, err := os.Stat(sqlite.SearchIndexPath(cfg.DB)); err == nil {
		res.IndexFile = info.Size()
	}
	res.IndexRatio = float64(res.IndexBytes) / float64(res.TextBytes)
	return res, ctx.Err()
}

// The vocabulary of fillText: everyday chat in English and Chinese, some
// Japanese, technical words, so that common and rare queries both exist.
var (
	fillEnglish = strings.Fields(`the a to and of is in it you that for on with this was are be have not at
		but we they do can just so if what all about get my out up like know when there your one will
		hello thanks please sorry sure okay yes no maybe today tomorrow yesterday tonight morning meeting
		lunch coffee team project release server database deploy build test review merge branch bug fix
		issue ticket customer order payment invoice price shipping delivery account password login error
		crash slow fast network latency disk memory cpu backup restore migration schema index query
		search message chat group channel notification update version feature design document report
		weekend holiday travel flight hotel train weather rain sunny cold warm birthday party dinner
		movie music game football basketball family friends office home remote schedule deadline`)
	fillChinese = []string{"我们", "你们", "今天", "明天", "昨天", "数据库", "服务器", "坏了", "修好了", "会议",
		"下午", "上午", "吃饭", "午饭", "咖啡", "项目", "发布", "测试", "代码", "审查", "问题", "客户", "订单",
		"付款", "发票", "价格", "快递", "账号", "密码", "登录", "错误", "网络", "很慢", "很快", "备份", "恢复",
		"搜索", "消息", "群组", "通知", "更新", "版本", "功能", "设计", "文档", "报告", "周末", "假期", "旅行",
		"航班", "酒店", "火车", "天气", "下雨", "晴天", "生日", "聚会", "晚饭", "电影", "音乐", "游戏", "足球",
		"家人", "朋友", "办公室", "远程", "计划", "截止日期", "谢谢", "没问题", "好的", "可以", "不行", "为什么",
		"怎么办", "知道了", "辛苦了", "加油", "的", "了", "是", "在", "有", "和", "就", "都", "也", "还", "吗", "呢"}
	fillJapanese = []string{"今日", "明日", "会議", "東京", "大阪", "ありがとう", "よろしく", "お願いします",
		"データベース", "サーバー", "テスト", "リリース", "です", "ます", "が", "を", "に", "は", "ちょっと", "遅い"}
)

// fillText is one message's text: about half English, a third Chinese,
// the rest mixed lines and Japanese; one in fifty carries a ticket number.
func fillText(rng *rand.Rand) string {
	var b strings.Builder
	words := func(list []string, n int, sep string) {
		for i := range n {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(list[rng.IntN(len(list))])
		}
	}
	switch k := rng.IntN(20); {
	case k < 10:
		words(fillEnglish, 3+rng.IntN(20), " ")
	case k < 17:
		words(fillChinese, 3+rng.IntN(15), "")
	case k < 19:
		words(fillEnglish, 2+rng.IntN(6), " ")
		b.WriteString(" ")
		words(fillChinese, 2+rng.IntN(8), "")
	default:
		words(fillJapanese, 3+rng.IntN(10), "")
	}
	if rng.IntN(50) == 0 {
		b.WriteString(" ticket-" + strconv.Itoa(10000+rng.IntN(90000)))
	}
	return b.String()
}

// runFill is `dce bench fill`.
func runFill(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dce bench fill", flag.ContinueOnError)
	fs.SetOutput(out)
	var cfg FillConfig
	fs.StringVar(&cfg.DB, "db", "", "the store file to write (must not exist)")
	fs.IntVar(&cfg.N, "n", 1000000, "messages")
	fs.IntVar(&cfg.Users, "users", 1000, "users")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "the texts' random seed")
	fs.StringVar(&cfg.Password, "password", "bench-password", "the users' password")
	fs.StringVar(&cfg.Prefix, "prefix", "bench", "the users' nickname prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Progress = os.Stderr
	res, err := Fill(ctx, cfg)
	line, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintln(out, string(line))
	return err
}
