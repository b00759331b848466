package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/common/model"
	"dce/common/store/storetest"
)

// BenchmarkAppendGroupCommit measures durable appends (synchronous=FULL)
// from 1, 16 and 256 concurrent writers, each waiting for its commit as
// im/send does: 100-byte texts from 50 senders, a fifth of them private,
// each with its own cid. It reports msgs/s and msgs/commit (the mean group
// commit). Run it with
//
//	go test ./common/store/sqlite -run x -bench AppendGroupCommit -count 3
func BenchmarkAppendGroupCommit(b *testing.B) {
	for _, writers := range []int{1, 16, 256} {
		b.Run(fmt.Sprint("writers=", writers), func(b *testing.B) {
			benchmarkAppend(b, writers, "FULL")
		})
	}
	b.Run("writers=256/synchronous=NORMAL", func(b *testing.B) {
		benchmarkAppend(b, 256, "NORMAL")
	})
}

func benchmarkAppend(b *testing.B, writers int, synchronous string) {
	db := MustOpen(b, Options{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: synchronous})
	const senders = 50
	var users []model.Account
	for i := range senders {
		users = append(users, storetest.MustCreateUser(b, db, fmt.Sprint("sender", i)))
	}
	text := strings.Repeat("a chat message of about a hundred bytes. ", 3)[:100]
	var next atomic.Int64
	ctx := context.Background()

	b.ReportAllocs()
	commitsBefore := db.commits.Load()
	b.ResetTimer()
	start := time.Now()
	var wait sync.WaitGroup
	for range writers { // exactly this many, which b.RunParallel cannot do below GOMAXPROCS
		wait.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				sender := users[n%senders]
				m := model.NewMessage{Key: model.LobbyKey, Sender: sender.ID, To: model.Lobby, Kind: model.KindText,
					Text: text, CID: "c-" + strconv.FormatInt(n, 10), TS: time.Now().UnixMilli()}
				if n%5 == 0 { // a fifth are private
					peer := users[(n+1)%senders].ID
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
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/float64(db.commits.Load()-commitsBefore), "msgs/commit")
}
