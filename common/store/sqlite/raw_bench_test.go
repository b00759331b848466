package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dce/common/store/storetest"
)

func BenchmarkRawInsert(b *testing.B) {
	db := MustOpen(b, Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	u := storetest.MustCreateUser(b, db, "x")
	text := strings.Repeat("a", 100)
	ctx := context.Background()
	_ = ctx
	b.ResetTimer()
	start := time.Now()
	seq := int64(1000)
	err := db.write(ctx, func(tx0 *sql.Tx) error { return nil })
	_ = err
	done := make(chan struct{})
	db.requests <- &writeRequest{ctx: ctx, done: make(chan error, 1), apply: func(_ *sql.Tx) error {
		defer close(done)
		for i := 0; i < b.N; {
			tx, _ := db.writer.Begin()
			st := tx.Stmt(db.statements.insertMessage)
			for j := 0; j < 256 && i < b.N; j, i = j+1, i+1 {
				seq++
				if _, err := st.Exec(seq, "room:lobby", u.ID, "room:lobby", 0, "text", text, "", "c-"+strconv.Itoa(i), time.Now().UnixMilli()); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		return nil
	}}
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
}
