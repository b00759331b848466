package sqlite

import (
	"context"
	"fmt"
	"time"
)

// The janitor removes expired sessions: once when the store opens (so
// sessions that expired while it was closed are gone before it serves),
// then every Options.SessionSweep. LoadSession never returns an expired
// session whether or not its row is still there; the janitor keeps the
// table from growing with every login.
//
// Each removal deletes at most sessionSweepBatch rows in one write, so a
// sweep after a long downtime is many short writes that queue with the
// others rather than one long one holding the writer.

// DefaultSessionSweep is how often expired sessions are removed when
// Options.SessionSweep is 0.
const DefaultSessionSweep = 5 * time.Minute

// sessionSweepBatch is the most sessions one write removes.
const sessionSweepBatch = 500

// janitor is the sweeping goroutine's handle: stop ends it (and any sweep
// under way, between batches), done is closed when it has returned.
type janitor struct {
	stop context.CancelFunc
	done chan struct{}
}

// startJanitor removes the sessions expired now, then starts sweeping
// every interval (0: DefaultSessionSweep); a negative interval does
// neither. Call it from Open once the writer runs.
func (db *DB) startJanitor(openCtx context.Context, interval time.Duration) error {
	db.janitor.done = make(chan struct{})
	if interval < 0 {
		close(db.janitor.done)
		return nil
	}
	if interval == 0 {
		interval = DefaultSessionSweep
	}
	if _, err := db.DeleteExpiredSessions(openCtx); err != nil {
		close(db.janitor.done)
		return fmt.Errorf("sqlite: removing expired sessions: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	db.janitor.stop = stop
	go func() {
		defer close(db.janitor.done)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			// An error (a full disk, the store closing) is left for the
			// next sweep: the rows stay, and LoadSession ignores them.
			_, _ = db.DeleteExpiredSessions(ctx)
		}
	}()
	return nil
}

// stopJanitor stops the janitor and waits for it, before Close stops
// taking writes.
func (db *DB) stopJanitor() {
	if db.janitor.stop != nil {
		db.janitor.stop()
		<-db.janitor.done
	}
}
