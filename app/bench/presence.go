package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// PresenceConfig is `dce bench presence`.
type PresenceConfig struct {
	Watchers int           // connections that follow the online list
	N        int           // users who come online while they watch
	Within   time.Duration // the time the N arrive in
	WatchAll bool          // the arriving users follow the list too
	Settle   time.Duration // how long to let the last events arrive
}

// PresenceResult is what `dce bench presence` measured.
type PresenceResult struct {
	Workload       string  `json:"workload"`
	Watchers       int     `json:"watchers"`
	Joined         int     `json:"joined"`
	WatchAll       bool    `json:"watch_all"`
	RampS          float64 `json:"ramp_s"`
	PresenceFrames int64   `json:"presence_frames"`
	PresenceBytes  int64   `json:"presence_bytes"`
	BytesPerJoiner float64 `json:"bytes_per_joiner"`
	WatchersExact  int     `json:"watchers_exact"`  // watchers whose list, kept from events, ends equal to who is online
	JoinersMissing int     `json:"joiners_missing"` // joiners not on the first watcher's final im/users
	// ListsExact counts watchers whose own final im/users, asked on the
	// node they are connected to, is exactly the users the tool holds
	// online (each with its one place); ListMismatches counts the others,
	// by node (the -url list's order).
	ListsExact       int     `json:"lists_exact"`
	ListMismatches   []int   `json:"list_mismatches_by_node"`
	Nodes            int     `json:"nodes"`
	ServerCPUS       float64 `json:"server_cpu_s,omitempty"`
	ServerRSSGrowthB int64   `json:"server_rss_growth_bytes,omitempty"`
}

// watcher is one watching connection's view of who is online.
type watcher struct {
	mu     sync.Mutex
	online map[int64]int // user -> places
}

type onlineList struct {
	Users []struct {
		ID     int64 `json:"id"`
		Places int   `json:"places"`
	} `json:"users"`
}

func (w *watcher) apply(body []byte) {
	var e struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
		Online bool `json:"online"`
		Places int  `json:"places"`
	}
	if json.Unmarshal(body, &e) != nil {
		return
	}
	w.mu.Lock()
	if e.Online {
		w.online[e.User.ID] = e.Places
	} else {
		delete(w.online, e.User.ID)
	}
	w.mu.Unlock()
}

// Presence has Watchers connections follow the online list (im/users, then
// im/presence events) while N users come online, and reports the presence
// bytes that were sent and whether every watcher's list ends exact.
func Presence(ctx context.Context, o Options, cfg PresenceConfig) (PresenceResult, error) {
	res := PresenceResult{Workload: "presence", Watchers: cfg.Watchers, WatchAll: cfg.WatchAll}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.Watchers <= 0 || cfg.N <= 0 {
		return res, fmt.Errorf("-watchers and -n must be positive")
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 3 * time.Second
	}
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	var frames, size atomic.Int64
	counting := func(w *watcher) func([]byte, []byte, int) {
		return func(path, body []byte, n int) {
			if string(path) != "im/presence" {
				return
			}
			frames.Add(1)
			size.Add(int64(n))
			if w != nil {
				w.apply(body)
			}
		}
	}
	watchers := make([]*watcher, cfg.Watchers)
	for i := range watchers {
		watchers[i] = &watcher{online: map[int64]int{}}
	}
	k := newConnector(&o)
	wclients, wusers, err := k.connectMany(ctx, cfg.Watchers, 0, func(i int) string { return fmt.Sprintf("%s-w%d", o.Prefix, i) },
		func(i int) connectOpts { return connectOpts{watch: true, onPush: counting(watchers[i])} })
	if err != nil {
		return res, err
	}
	defer closeAll(wclients)
	// Let the watchers' own arrivals settle, then take each one's list.
	time.Sleep(cfg.Settle)
	for i, c := range wclients {
		body, err := c.call("im/users", nil, 30*time.Second)
		if err != nil {
			return res, err
		}
		var l onlineList
		if err := json.Unmarshal(body, &l); err != nil {
			return res, err
		}
		watchers[i].mu.Lock()
		for _, u := range l.Users {
			watchers[i].online[u.ID] = u.Places
		}
		watchers[i].mu.Unlock()
	}
	frames.Store(0)
	size.Store(0)
	before := o.figures()
	o.progress("%d watchers ready; %d users arrive within %s", cfg.Watchers, cfg.N, cfg.Within)

	var limit *rate.Limiter
	if cfg.Within > 0 {
		limit = rate.NewLimiter(rate.Limit(float64(cfg.N)/cfg.Within.Seconds()), 1)
	}
	start := time.Now()
	jclients, jusers, failed, err := k.tryConnectMany(ctx, cfg.N, cfg.Watchers, func(i int) string { return fmt.Sprintf("%s-c%d", o.Prefix, i) },
		func(int) connectOpts { return connectOpts{watch: cfg.WatchAll, onPush: counting(nil)} }, limit, false)
	defer closeAll(jclients)
	if failed > 0 {
		return res, err
	}
	res.RampS = time.Since(start).Seconds()
	res.Joined = cfg.N
	time.Sleep(cfg.Settle)
	after := o.figures()
	res.PresenceFrames, res.PresenceBytes = frames.Load(), size.Load()
	res.BytesPerJoiner = float64(res.PresenceBytes) / float64(cfg.N)
	if before != nil && after != nil {
		res.ServerCPUS = after.CPUSeconds - before.CPUSeconds
		res.ServerRSSGrowthB = int64(after.RSSBytes) - int64(before.RSSBytes)
	}

	// Who is online is known: every watcher and every joiner, one place
	// each. Every watcher must hold that list, both as its events built it
	// and as its own node answers im/users now.
	want := map[int64]int{}
	for _, u := range append(wusers, jusers...) {
		want[u.id]++
	}
	res.Nodes = len(o.URLs)
	res.ListMismatches = make([]int, len(o.URLs))
	lists := make([]map[int64]int, len(wclients))
	var wg sync.WaitGroup
	var errOnce sync.Once
	var listErr error
	sem := make(chan struct{}, 8)
	for i, c := range wclients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body, err := c.call("im/users", nil, 30*time.Second)
			var l onlineList
			if err == nil {
				err = json.Unmarshal(body, &l)
			}
			if err != nil {
				errOnce.Do(func() { listErr = fmt.Errorf("watcher %d's im/users: %w", i, err) })
				return
			}
			lists[i] = map[int64]int{}
			for _, u := range l.Users {
				lists[i][u.ID] = u.Places
			}
		}()
	}
	wg.Wait()
	if listErr != nil {
		return res, listErr
	}
	for _, u := range jusers {
		if _, ok := lists[0][u.id]; !ok {
			res.JoinersMissing++
		}
	}
	for i, w := range watchers {
		if maps.Equal(lists[i], want) {
			res.ListsExact++
		} else {
			res.ListMismatches[i%len(o.URLs)]++
		}
		w.mu.Lock()
		if maps.Equal(w.online, want) {
			res.WatchersExact++
		}
		w.mu.Unlock()
	}
	return res, nil
}
