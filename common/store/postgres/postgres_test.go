package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dce/app/servertest/testenv"
	"dce/common/store"
	"dce/common/store/storetest"
)

// freshDatabase makes an empty database on the server DCE_TEST_POSTGRES
// names, dropped when t ends, and returns its DSN; without the variable
// the test is Missing.
func freshDatabase(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("DCE_TEST_POSTGRES")
	if dsn == "" {
		testenv.Missing(t, "DCE_TEST_POSTGRES is not set (a PostgreSQL URL whose role may create databases)")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to DCE_TEST_POSTGRES: %v", err)
	}
	defer admin.Close(ctx)
	var suffix [6]byte
	rand.Read(suffix[:])
	name := "dce_test_" + hex.EncodeToString(suffix[:])
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("dropping %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("DCE_TEST_POSTGRES: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// openTest opens an engine on dsn, closed when t ends.
func openTest(t testing.TB, dsn string, opts Options) *DB {
	t.Helper()
	opts.DSN = dsn
	if opts.Poll == 0 {
		opts.Poll = 200 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Engine {
		return openTest(t, freshDatabase(t), Options{})
	})
}

// TestConcurrentOpensMigrateOnce: several engines opening one empty
// database at once all succeed, and the schema is there once.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	dsn := freshDatabase(t)
	errs := make(chan error, 4)
	dbs := make(chan *DB, 4)
	for range 4 {
		go func() {
			db, err := Open(context.Background(), Options{DSN: dsn})
			errs <- err
			dbs <- db
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("Open: %v", err)
		}
		db := <-dbs
		t.Cleanup(func() { db.Close() })
	}
	db := openTest(t, dsn, Options{})
	var versions int
	if err := db.pool.QueryRow(context.Background(), `SELECT COUNT(*) FROM schema_version`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	list, _ := migrations()
	if versions != len(list) {
		t.Errorf("schema_version has %d rows, want %d", versions, len(list))
	}
	ann := storetest.MustCreateUser(t, db, "Ann")
	storetest.MustAppend(t, db, storetest.LobbyMessage(ann.ID, "hello", ""))
}

func TestClosedStoreRefuses(t *testing.T) {
	db := openTest(t, freshDatabase(t), Options{})
	db.Close()
	if _, err := db.LastSeq(context.Background()); err != store.ErrClosed {
		t.Errorf("LastSeq after Close: %v, want store.ErrClosed", err)
	}
}
