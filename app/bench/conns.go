package bench

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// ConnsConfig is `dce bench conns`.
type ConnsConfig struct {
	N    int           // connections, one user and one session each
	Rate float64       // new connections a second (0: as fast as Logins allows)
	Hold time.Duration // how long to hold them open
}

// ConnsResult is what `dce bench conns` measured.
type ConnsResult struct {
	Workload        string         `json:"workload"`
	Connections     int            `json:"connections"`
	Errors          int            `json:"errors"`
	FirstError      string         `json:"first_error,omitempty"`
	Logins          int64          `json:"logins"`
	Resumed         int64          `json:"resumed"`
	RampS           float64        `json:"ramp_s"`
	HoldS           float64        `json:"hold_s"`
	Dropped         int            `json:"dropped"` // closed by the server during the hold
	ServerEmpty     *ServerFigures `json:"server_empty,omitempty"`
	ServerHeld      *ServerFigures `json:"server_held,omitempty"`
	RSSPerConnBytes float64        `json:"rss_per_conn_bytes,omitempty"`
}

// Conns opens N logged-in WebSocket connections, holds them, and reports
// the server's memory per connection above what it used before.
func Conns(ctx context.Context, o Options, cfg ConnsConfig) (ConnsResult, error) {
	res := ConnsResult{Workload: "conns"}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.N <= 0 {
		return res, fmt.Errorf("-n must be positive")
	}
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	res.ServerEmpty = o.figures()
	k := newConnector(&o)
	var limit *rate.Limiter
	if cfg.Rate > 0 {
		limit = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	start := time.Now()
	nick := func(i int) string { return fmt.Sprintf("%s-c%d", o.Prefix, i) }
	clients, _, failed, err := k.tryConnectMany(ctx, cfg.N, 0, nick, func(int) connectOpts { return connectOpts{} }, limit, true)
	defer closeAll(clients)
	res.RampS = time.Since(start).Seconds()
	res.Errors, res.Logins, res.Resumed = failed, k.logins.Load(), k.resume.Load()
	if err != nil {
		res.FirstError = err.Error()
	}
	for _, c := range clients {
		if c != nil {
			res.Connections++
		}
	}
	o.progress("%d connected in %.1f s; holding %s", res.Connections, res.RampS, cfg.Hold)
	holdStart := time.Now()
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
	}
	res.HoldS = time.Since(holdStart).Seconds()
	res.ServerHeld = o.figures()
	for _, c := range clients {
		if c != nil && !c.alive() {
			res.Dropped++
		}
	}
	if res.ServerEmpty != nil && res.ServerHeld != nil && res.Connections > 0 {
		res.RSSPerConnBytes = (float64(res.ServerHeld.RSSBytes) - float64(res.ServerEmpty.RSSBytes)) / float64(res.Connections)
	}
	return res, nil
}

// figures reads the server's own figures, or nil if it cannot.
func (o *Options) figures() *ServerFigures {
	if o.Server == nil {
		return nil
	}
	f, err := o.Server()
	if err != nil {
		o.progress("server figures unavailable: %v", err)
		return nil
	}
	return &f
}
