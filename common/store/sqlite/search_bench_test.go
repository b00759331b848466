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
// the writer: durable appends (synchronous=FULL, group commit) from 256
// writers waiting for their commits, as im/send does, of mixed English
// and Chinese texts, into a store that indexes them and one that does not,
// interleaved round by round on fresh files. Each b.N is one round of
// both; it reports the medians and their ratio. Run it with
//
//	go test ./common/store/sqlite -run x -bench SearchIndexAppendRatio -benchtime 3x
func BenchmarkSearchIndexAppendRatio(b *testing.B) {
	const writers, perRound = 256, 20000
	var with, without []float64
	for round := 0; round < b.N; round++ {
		for _, indexed := range []bool{round%2 == 0, round%2 != 0} { // alternate which goes first
			rate := appendRate(b, writers, perRound, indexed)
			if indexed {
				with = append(with, rate)
			} else {
				without = append(without, rate)
			}
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
	b.Logf("indexed %v msgs/s, unindexed %v msgs/s", with, without)
}

// appendRate appends n messages from writers goroutines into a fresh
// store and returns the messages per second.
func appendRate(b *testing.B, writers, n int, indexed bool) float64 {
	b.Helper()
	db := MustOpen(b, Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	db.withoutSearchIndex = !indexed
	return appendRateDB(b, db, writers, n)
}

// appendRateDB appends n messages from writers goroutines into db, closes
// it, and returns the messages per second.
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
	rate := float64(n) / time.Since(start).Seconds()
	db.Close()
	return rate
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
