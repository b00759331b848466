package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// LoginConfig is `dce bench login`.
type LoginConfig struct {
	N           int // logins
	Concurrency int // logins in flight
}

// LoginResult is what `dce bench login` measured.
type LoginResult struct {
	Workload    string         `json:"workload"`
	Logins      int64          `json:"logins"`
	Registered  int64          `json:"registered"`
	RateLimited int64          `json:"rate_limited"` // replies that asked to wait (then retried)
	Failed      int64          `json:"failed"`
	FirstError  string         `json:"first_error,omitempty"`
	DurationS   float64        `json:"duration_s"`
	LoginsPerS  float64        `json:"logins_per_s"`
	Latency     Latency        `json:"latency"` // of the login that succeeded
	ServerCPUS  float64        `json:"server_cpu_s,omitempty"`
	Server      *ServerFigures `json:"server,omitempty"`
}

// Login logs N bench users in with their passwords (registering those that
// do not exist yet), Concurrency at a time, each on its own connection.
func Login(ctx context.Context, o Options, cfg LoginConfig) (LoginResult, error) {
	res := LoginResult{Workload: "login"}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.N <= 0 {
		return res, fmt.Errorf("-n must be positive")
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	var lat Histogram
	var logins, registered, limited, failed, next atomic.Int64
	var errOnce sync.Once
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { res.FirstError = err.Error() })
	}
	before := o.figures()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.N {
					return
				}
				c, err := dial(ctx, o.Node(i)+"?presence=0", o.source(i), nil)
				if err != nil {
					fail(err)
					continue
				}
				req, _ := json.Marshal(map[string]string{"nickname": fmt.Sprintf("%s-l%d", o.Prefix, i), "password": o.Password})
				for {
					at := time.Now()
					body, err := c.call("im/login", req, 60*time.Second)
					var ae *apiError
					if errors.As(err, &ae) && ae.Code == "rate_limited" {
						limited.Add(1)
						time.Sleep(time.Duration(max(ae.RetryAfterMS, 20)) * time.Millisecond)
						continue
					}
					if err != nil {
						fail(err)
						break
					}
					lat.Add(time.Since(at))
					logins.Add(1)
					var r struct {
						Registered bool `json:"registered"`
					}
					if json.Unmarshal(body, &r) == nil && r.Registered {
						registered.Add(1)
					}
					break
				}
				c.close()
			}
		}()
	}
	stop := o.progressEvery(2*time.Second, func() string {
		return fmt.Sprintf("%d/%d logged in", logins.Load(), cfg.N)
	})
	wg.Wait()
	stop()
	res.DurationS = time.Since(start).Seconds()
	after := o.figures()
	res.Logins, res.Registered, res.RateLimited, res.Failed = logins.Load(), registered.Load(), limited.Load(), failed.Load()
	res.LoginsPerS = float64(res.Logins) / res.DurationS
	res.Latency = lat.Summary()
	if before != nil && after != nil {
		res.ServerCPUS, res.Server = after.CPUSeconds-before.CPUSeconds, after
	}
	return res, nil
}
