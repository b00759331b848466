package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"dce/app/session"
	"dce/common/config"
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
// the background but what its writes need.
func openStore(ctx context.Context, cfg config.Config, offline bool) (Store, error) {
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
	default:
		return nil, fmt.Errorf("store.driver = %q: this build cannot run on it yet (several nodes on PostgreSQL are being built; use sqlite)", cfg.Store.Driver)
	}
}
