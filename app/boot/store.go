package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"dce/app/session"
	"dce/common/config"
	"dce/common/store"
	"dce/common/store/postgres"
	"dce/common/store/sqlite"
	"dce/project/im/service"
)

// Store is what the server needs of its store engine: the chat's store,
// the sessions' durable side, and the kernel's figures. Each engine
// (common/store/sqlite, common/store/postgres) is one.
type Store interface {
	service.Store
	session.Store
	LastSeq(ctx context.Context) (int64, error)
	SetBannedUntil(ctx context.Context, id int64, until time.Time) error
	SetMutedUntil(ctx context.Context, id int64, until time.Time) error
	// Commits is how many group commits the engine has made since it opened.
	Commits() int64
	Close() error
}

// openStore opens the store cfg names. offline is for a command line
// (`dce user admin`): the store must exist already, and nothing runs in
// the background but what its writes need. remote gets the changes other
// nodes store (an engine shared by several nodes), in seq order.
func openStore(ctx context.Context, cfg config.Config, offline bool, remote func(store.Change)) (Store, error) {
	switch cfg.Store.Driver {
	case "sqlite":
		path := cfg.StorePath()
		if offline {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no store at %s: is this the server's configuration? (-config FILE, DCE_SERVER_RUNTIME_DIR, store.path)", path)
			} else if err != nil {
				return nil, fmt.Errorf("store %s: %w", path, err)
			}
			return sqlite.Open(ctx, sqlite.Options{Path: path, Synchronous: cfg.Store.Synchronous})
		}
		return sqlite.Open(ctx, sqlite.Options{Path: path, Synchronous: cfg.Store.Synchronous,
			MaxBatch: cfg.Store.MaxBatch, SessionSweep: cfg.Session.SweepInterval.Duration})
	case "postgres":
		opts := postgres.Options{DSN: cfg.Store.DSN, MaxBatch: cfg.Store.MaxBatch, SessionSweep: cfg.Session.SweepInterval.Duration,
			Remote: remote}
		if offline {
			opts.SessionSweep, opts.Remote = -1, nil
		}
		db, err := postgres.Open(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("store.dsn = %s: %w", config.RedactURL(cfg.Store.DSN), err)
		}
		return db, nil
	default:
		return nil, fmt.Errorf("store.driver = %q: no such engine", cfg.Store.Driver)
	}
}

// remoteGate hands another node's changes to the chat once its groups are
// loaded. Until then (the store's publisher starts with the store, before
// the chat exists) it keeps them; open hands on, in order, those above
// the seq the groups were loaded from (those at or below it are in them;
// a membership change applied twice in order ends where it would have),
// then lets every later one through.
type remoteGate struct {
	mu      sync.Mutex
	to      func(store.Change)
	waiting []store.Change
}

func (g *remoteGate) handle(c store.Change) {
	g.mu.Lock()
	to := g.to
	if to == nil {
		g.waiting = append(g.waiting, c)
	}
	g.mu.Unlock()
	if to != nil {
		to(c)
	}
}

// open hands the changes kept above from to to, and every later one.
// The store's publisher calls handle one change at a time, so holding the
// lock while the kept ones are handed on keeps seq order.
func (g *remoteGate) open(to func(store.Change), from int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.waiting {
		if c.Seq > from {
			to(c)
		}
	}
	g.waiting, g.to = nil, to
}
