package servertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"dce/app/boot"
	"dce/common/config"

	"github.com/jackc/pgx/v5"
)

// The engines the end-to-end tests run on. DCE_TEST_ENGINE=postgres runs
// them on PostgreSQL and Redis (DCE_TEST_POSTGRES, DCE_TEST_REDIS: the
// servers scripts/services.sh starts), each test on a database and a Redis
// prefix of its own; unset, on the embedded SQLite file.
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
)

// Engine is the engine the end-to-end tests run on.
func Engine() string {
	if strings.EqualFold(os.Getenv("DCE_TEST_ENGINE"), EnginePostgres) {
		return EnginePostgres
	}
	return EngineSQLite
}

// SQLiteOnly skips a test of what only the embedded engines have (the
// SQLite file, its upgrades and pragmas, the search's reader pool, the
// in-process session cache) when the suite runs on another engine, whose
// own tests cover the same ground (common/store/postgres, app/cluster).
func SQLiteOnly(tb testing.TB) {
	tb.Helper()
	if Engine() != EngineSQLite {
		tb.Skipf("a test of the embedded engines; the suite runs on %s", Engine())
	}
}

// PostgresDSN makes a fresh, empty database on the PostgreSQL server of
// DCE_TEST_POSTGRES and returns its URL; the database is dropped when the
// test ends (after the servers that use it, which are closed first).
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("DCE_TEST_POSTGRES")
	if base == "" {
		Missing(tb, "no PostgreSQL server: set DCE_TEST_POSTGRES (scripts/services.sh start DIR prints it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("PostgreSQL at DCE_TEST_POSTGRES: %v", err)
	}
	defer admin.Close(context.Background())
	name := "dce_test_" + randomHex(tb, 8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Logf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("DCE_TEST_POSTGRES: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// RedisURL is the Redis server of DCE_TEST_REDIS and a key prefix no other
// test uses.
func RedisURL(tb testing.TB) (url, prefix string) {
	tb.Helper()
	url = os.Getenv("DCE_TEST_REDIS")
	if url == "" {
		Missing(tb, "no Redis server: set DCE_TEST_REDIS (scripts/services.sh start DIR prints it)")
	}
	return url, "dcetest:" + randomHex(tb, 6) + ":"
}

// Cluster sets cfg to run as one node of several on a fresh PostgreSQL
// database and Redis prefix, and returns an edit that makes another
// node's configuration share them (each node keeps its own runtime folder
// and ports).
func Cluster(tb testing.TB, cfg *config.Config) func(*config.Config) {
	tb.Helper()
	dsn := PostgresDSN(tb)
	redisURL, prefix := RedisURL(tb)
	share := func(c *config.Config) {
		c.Store.Driver, c.Store.DSN, c.Store.Path = "postgres", dsn, ""
		c.Redis.URL, c.Redis.Prefix = redisURL, prefix
	}
	share(cfg)
	return share
}

// StartNodes runs n nodes of one server on PostgreSQL and Redis, each with
// Config(tb) changed by edits, named node1, node2, ...; each is closed
// when the test ends.
func StartNodes(tb testing.TB, n int, edits ...func(*config.Config)) []*Server {
	tb.Helper()
	first := Config(tb)
	share := Cluster(tb, &first)
	nodes := make([]*Server, n)
	for i := range nodes {
		cfg := first
		if i > 0 {
			cfg = Config(tb)
			share(&cfg)
		}
		cfg.Server.Node = "node" + strconv.Itoa(i+1)
		for _, edit := range edits {
			edit(&cfg)
		}
		nodes[i] = StartConfig(tb, cfg, boot.Options{})
	}
	return nodes
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}
