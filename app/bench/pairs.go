package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// PairsConfig is `dce bench pairs`.
type PairsConfig struct {
	Pairs    int
	Duration time.Duration
	Window   int  // sends in flight per user
	Size     int  // text bytes per message
	Verify   bool // page every conversation afterwards and find every acked id
}

// PairsResult is what `dce bench pairs` measured.
type PairsResult struct {
	Workload      string         `json:"workload"`
	Pairs         int            `json:"pairs"`
	Acked         int64          `json:"acked"`
	Failed        int64          `json:"failed"`
	FirstError    string         `json:"first_error,omitempty"`
	DurationS     float64        `json:"duration_s"`
	AckedPerS     float64        `json:"acked_per_s"` // each ack is one durable round trip
	Delivered     int64          `json:"delivered"`   // pushes the partners received
	DeliveredPerS float64        `json:"delivered_per_s"`
	Ack           Latency        `json:"ack"`
	Delivery      Latency        `json:"delivery"` // send to the partner's push
	Verified      bool           `json:"verified"`
	MissingStored int            `json:"missing_in_store"`
	ServerCPUS    float64        `json:"server_cpu_s,omitempty"`
	ToolCPUS      float64        `json:"tool_cpu_s"`                // this load tool's own, while sending
	PerCommit     float64        `json:"msgs_per_commit,omitempty"` // acked messages per group commit
	Server        *ServerFigures `json:"server,omitempty"`
}

// Pairs has K pairs of users send each other private messages for a time,
// each keeping Window sends in flight, then checks that every acked message
// is in the store. The two parties of a pair are consecutive connections,
// so over several nodes they are on different ones (Options.Node).
func Pairs(ctx context.Context, o Options, cfg PairsConfig) (PairsResult, error) {
	res := PairsResult{Workload: "pairs", Pairs: cfg.Pairs}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.Pairs <= 0 || cfg.Duration <= 0 {
		return res, fmt.Errorf("-pairs and -duration must be positive")
	}
	cfg.Window = max(cfg.Window, 1)
	cfg.Size = max(cfg.Size, 40)
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	var delivery, ack Histogram
	var delivered atomic.Int64
	onPush := func(path, body []byte, _ int) {
		if string(path) != "im/message" {
			return
		}
		if _, _, sent, ok := parseBenchText(body); ok {
			delivery.Add(time.Duration(time.Now().UnixNano() - sent))
			delivered.Add(1)
		}
	}
	k := newConnector(&o)
	n := 2 * cfg.Pairs
	clients, users, err := k.connectMany(ctx, n, 0, func(i int) string { return fmt.Sprintf("%s-p%d", o.Prefix, i) },
		func(int) connectOpts { return connectOpts{onPush: onPush} })
	if err != nil {
		return res, err
	}
	defer closeAll(clients)
	o.progress("%d pairs connected; sending for %s", cfg.Pairs, cfg.Duration)

	before, toolBefore := o.figures(), toolCPU()
	ackedIDs := make([][]int64, n) // per sender
	var acked, failed atomic.Int64
	var errOnce sync.Once
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	start := time.Now()
	stopAt := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i, c := range clients {
		partner := users[i^1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Replies to one connection's sends come in the order sent, so
			// one goroutine per user takes them in turn. slots holds the
			// window: a send takes one, its reply gives it back.
			type sent struct {
				ch <-chan reply
				at time.Time
			}
			slots := make(chan struct{}, cfg.Window)
			inflight := make(chan sent, cfg.Window)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for s := range inflight {
					var r reply
					select {
					case r = <-s.ch:
					case <-ctx.Done(): // the run's hard bound: no reply is coming in time
						r.err = ctx.Err()
					}
					<-slots
					if e := replyError(r.body); r.err != nil || e != nil {
						failed.Add(1)
						errOnce.Do(func() { res.FirstError = fmt.Sprint(r.err, e) })
						continue
					}
					ack.Add(time.Since(s.at))
					acked.Add(1)
					if id, ok := replyID(r.body); ok {
						ackedIDs[i] = append(ackedIDs[i], id)
					}
				}
			}()
			// Each turn sends every message the window has room for,
			// with one write, as a client with an outbox would.
			var bodies [][]byte
			for seq := 0; time.Now().Before(stopAt) && ctx.Err() == nil; {
				slots <- struct{}{}
				n := 1
			fill:
				for n < cfg.Window {
					select {
					case slots <- struct{}{}:
						n++
					default:
						break fill
					}
				}
				bodies = bodies[:0]
				for range n {
					bodies = append(bodies, sendBody("user:"+strconv.FormatInt(partner.id, 10), benchText(i, seq, cfg.Size),
						"b"+run+"-"+strconv.Itoa(i)+"-"+strconv.Itoa(seq)))
					seq++
				}
				at := time.Now()
				chs, err := c.startMany("im/send", bodies)
				if err != nil {
					failed.Add(int64(n))
					errOnce.Do(func() { res.FirstError = err.Error() })
					break
				}
				for _, ch := range chs {
					inflight <- sent{ch, at}
				}
			}
			close(inflight)
			<-done
		}()
	}
	stopProgress := o.progressEvery(2*time.Second, func() string {
		return fmt.Sprintf("acked %d (%.0f/s)", acked.Load(), float64(acked.Load())/time.Since(start).Seconds())
	})
	wg.Wait()
	stopProgress()
	res.DurationS = time.Since(start).Seconds()
	after, toolAfter := o.figures(), toolCPU()
	// The partners' last pushes may still be on their way.
	deadline := time.Now().Add(5 * time.Second)
	for delivered.Load() < acked.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	res.Acked, res.Failed, res.Delivered = acked.Load(), failed.Load(), delivered.Load()
	res.ToolCPUS = toolAfter - toolBefore
	res.AckedPerS = float64(res.Acked) / res.DurationS
	res.DeliveredPerS = float64(res.Delivered) / res.DurationS
	res.Ack, res.Delivery = ack.Summary(), delivery.Summary()
	if before != nil && after != nil {
		res.ServerCPUS, res.Server = after.CPUSeconds-before.CPUSeconds, after
		res.PerCommit = perCommit(res.Acked, before, after)
	}
	if cfg.Verify {
		missing, err := verifyPairs(ctx, clients, users, ackedIDs)
		if err != nil {
			return res, fmt.Errorf("verifying the store: %w", err)
		}
		res.Verified, res.MissingStored = true, missing
	}
	return res, nil
}

// verifyPairs pages each pair's conversation with im/load, newest first
// from just above its largest acked id down past its smallest, and counts
// acked ids it does not find. Pairs take turns at which party asks, so
// that over several nodes every node is asked about the messages the
// others stored.
func verifyPairs(ctx context.Context, clients []*client, users []user, ackedIDs [][]int64) (int, error) {
	var missing atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for p := 0; p < len(clients); p += 2 {
		want := map[int64]bool{}
		var lowest, highest int64 = -1, 0
		for _, id := range append(append([]int64(nil), ackedIDs[p]...), ackedIDs[p+1]...) {
			want[id] = true
			if lowest < 0 || id < lowest {
				lowest = id
			}
			highest = max(highest, id)
		}
		if len(want) == 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			before := highest + 1
			for len(want) > 0 && ctx.Err() == nil {
				asker := p + (p/2)%2
				body, _ := json.Marshal(map[string]any{"with": fmt.Sprintf("user:%d", users[asker^1].id), "before": before, "limit": 100})
				reply, err := clients[asker].call("im/load", body, 30*time.Second)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				var page struct {
					Messages []struct {
						ID int64 `json:"id"`
					} `json:"messages"`
					More bool `json:"more"`
				}
				if err := json.Unmarshal(reply, &page); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				for _, m := range page.Messages {
					delete(want, m.ID)
					before = min(before, m.ID)
				}
				if !page.More || len(page.Messages) == 0 || before < lowest {
					break
				}
			}
			missing.Add(int64(len(want)))
		}()
	}
	wg.Wait()
	return int(missing.Load()), firstErr
}
