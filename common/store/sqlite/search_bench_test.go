package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store/storetest"
)

// BenchmarkSearchIndexAppendRatio measures what the search index costs
// appends: durable appends (synchronous=FULL, group commit) from 256
// writers waiting for their commits, as im/send does, of mixed English
// and Chinese texts, into a store whose indexer runs meanwhile (on its
// own file and goroutine, indexer.go) and into one with no index,
// interleaved round by round on fresh files. Each b.N is one round of
// both. It reports the medians of the rates and their ratio, how far
// behind the indexer was when the last append returned (seqs), and how
// fast it then caught up. Run it with
//
//	go test ./common/store/sqlite -run x -bench SearchIndexAppendRatio -benchtime 3x
func BenchmarkSearchIndexAppendRatio(b *testing.B) {
	const writers, perRound = 256, 60000
	var with, without, lags, catchUps []float64
	for round := 0; round < b.N; round++ {
		for _, indexed := range []bool{round%2 == 0, round%2 != 0} { // alternate which goes first
			db := MustOpen(b, Options{Path: filepath.Join(b.TempDir(), "bench.db"), withoutSearchIndex: !indexed})
			rate := appendRateDB(b, db, writers, perRound)
			if !indexed {
				without = append(without, rate)
				db.Close()
				continue
			}
			with = append(with, rate)
			lag, err := db.SearchIndexLag(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := db.catchUpIndex(context.Background(), nil); err != nil {
				b.Fatal(err)
			}
			lags = append(lags, float64(lag))
			catchUps = append(catchUps, float64(lag)/time.Since(start).Seconds())
			db.Close()
		}
	}
	median := func(list []float64) float64 {
		sorted := slices.Clone(list)
		slices.Sort(sorted)
		return sorted[len(sorted)/2]
	}
	b.ReportMetric(median(with), "indexed-msgs/s")
	b.ReportMetric(median(without), "unindexed-msgs/s")
	b.ReportMetric(median(with)/median(without), "ratio")
	b.ReportMetric(median(lags), "lag-seqs")
	b.ReportMetric(median(catchUps), "catch-up-seqs/s")
	b.Logf("indexed %v msgs/s, unindexed %v msgs/s; lag at the end %v seqs, caught up at %v seqs/s", with, without, lags, catchUps)
}

// appendRateDB appends n messages from writers goroutines into db and
// returns the messages per second, counted until the last append returns.
func appendRateDB(b testing.TB, db *DB, writers, n int) float64 {
	b.Helper()
	const senders = 50
	var users []model.Account
	for i := range senders {
		users = append(users, storetest.MustCreateUser(b, db, fmt.Sprint("sender", i)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, 4096)
	for i := range texts {
		texts[i] = mixedText(rng)
	}
	var next atomic.Int64
	ctx := context.Background()
	start := time.Now()
	var wait sync.WaitGroup
	for range writers {
		wait.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				sender := users[i%senders]
				m := model.NewMessage{Key: model.LobbyKey, Sender: sender.ID, To: model.Lobby, Kind: model.KindText,
					Text: texts[i%int64(len(texts))], CID: "c-" + strconv.FormatInt(i, 10), TS: time.Now().UnixMilli()}
				if i%5 == 0 {
					peer := users[(i+1)%senders].ID
					to := model.Address{Kind: model.AddrUser, ID: peer}
					m.Key, m.To, m.ToUser = to.Key(sender.ID), to.String(), peer
				}
				if _, _, err := db.Append(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wait.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// mixedText is a chat line: English words, Chinese words, or both.
func mixedText(rng *rand.Rand) string {
	english := strings.Fields("the a to and is you that for on with we can just so meeting lunch server database deploy build test review bug fix ticket order payment login error slow network backup search message group update release weekend dinner")
	chinese := []string{"我们", "今天", "明天", "数据库", "服务器", "坏了", "会议", "下午", "项目", "发布", "测试", "问题", "客户", "订单", "网络", "很慢", "的", "了", "是", "好的", "谢谢"}
	var parts []string
	switch rng.IntN(3) {
	case 0:
		for range 4 + rng.IntN(16) {
			parts = append(parts, english[rng.IntN(len(english))])
		}
		return strings.Join(parts, " ")
	case 1:
		for range 4 + rng.IntN(14) {
			parts = append(parts, chinese[rng.IntN(len(chinese))])
		}
		return strings.Join(parts, "")
	}
	for range 2 + rng.IntN(6) {
		parts = append(parts, english[rng.IntN(len(english))])
	}
	for range 2 + rng.IntN(6) {
		parts = append(parts, chinese[rng.IntN(len(chinese))])
	}
	return strings.Join(parts, " ")
}
