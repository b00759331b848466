package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// FanoutConfig is `dce bench fanout`.
type FanoutConfig struct {
	Readers int           // connections that only read
	Pubs    int           // senders
	Msgs    int           // messages in all
	Rate    float64       // messages a second in all (0: full speed)
	Size    int           // text bytes per message
	To      string        // room:lobby or group:ID
	Window  int           // sends in flight per sender at full speed
	Drain   time.Duration // how long to wait for the last deliveries
	// Plain drives a plain broadcast server instead of the chat, such as
	// the bare stack's probe: connections join ?room=lobby without a
	// login, a message is a bare text frame that the server relays to
	// everyone in the room, and a sender's own copy coming back is its
	// acknowledgement. The same readers, senders, pacing and checks run
	// against either, so the two servers compare in one command.
	Plain bool
	// Group sends to a group made for the run instead of To: the first
	// sender creates an open group whose members are every reader and
	// sender, so that each message goes out through the hub's delivery to
	// a list of users (Bus.Deliver) rather than its broadcast.
	Group bool
}

// FanoutResult is what `dce bench fanout` measured.
type FanoutResult struct {
	Workload         string         `json:"workload"`
	Readers          int            `json:"readers"`
	Pubs             int            `json:"pubs"`
	Rate             float64        `json:"rate"` // messages a second asked for; 0: full speed
	Sent             int            `json:"sent"`
	Acked            int            `json:"acked"`
	Failed           int            `json:"failed"`
	FirstError       string         `json:"first_error,omitempty"`
	Expected         int64          `json:"expected"` // acked messages x readers
	Delivered        int64          `json:"delivered"`
	Lost             int64          `json:"lost"`
	Duplicated       int64          `json:"duplicated"`
	OutOfOrder       int64          `json:"out_of_order"`
	DurationS        float64        `json:"duration_s"` // first send to last delivery
	DeliveriesPerS   float64        `json:"deliveries_per_s"`
	Latency          Latency        `json:"latency"` // send to push
	Ack              Latency        `json:"ack"`
	ServerCPUS       float64        `json:"server_cpu_s,omitempty"`
	ToolCPUS         float64        `json:"tool_cpu_s"` // this load tool's own, first send to last delivery
	DeliveriesPerCPU float64        `json:"deliveries_per_cpu_s,omitempty"`
	Server           *ServerFigures `json:"server,omitempty"`
}

// reader is one reading connection's record of what arrived.
type reader struct {
	seen      []uint64 // bitmap over message numbers
	last      []int    // per sender, the last sequence seen
	got       atomic.Int64
	dups      atomic.Int64
	inversion atomic.Int64
	warm      atomic.Bool // a warm-up frame arrived (FanoutConfig.Plain)
}

// benchText is a message's text: "SENDER SEQ UNIXNANO " padded with x.
func benchText(sender, seq int, size int) string {
	s := strconv.Itoa(sender) + " " + strconv.Itoa(seq) + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + " "
	if len(s) < size {
		s += strings.Repeat("x", size-len(s))
	}
	return s
}

var textKey = []byte(`"text":"`)

// parseBenchText finds a bench message's sender, sequence and send time in
// an im/message body without decoding the JSON.
func parseBenchText(body []byte) (sender, seq int, sent int64, ok bool) {
	i := bytes.Index(body, textKey)
	if i < 0 {
		return 0, 0, 0, false
	}
	return parseBenchFields(body[i+len(textKey):])
}

// parseBenchFields reads the "SENDER SEQ UNIXNANO " that starts rest:
// three runs of at most 19 decimal digits, each ended by a space and each
// within an int64. It reads the digits itself (no string, no error value)
// because every reader runs it on every push.
func parseBenchFields(rest []byte) (sender, seq int, sent int64, ok bool) {
	fields := [3]int64{}
	for f := range fields {
		var v uint64 // 19 digits fit
		j := 0
		for ; j < len(rest) && j < 20 && rest[j] >= '0' && rest[j] <= '9'; j++ {
			v = v*10 + uint64(rest[j]-'0')
		}
		if j == 0 || j > 19 || j == len(rest) || rest[j] != ' ' || v > math.MaxInt64 {
			return 0, 0, 0, false
		}
		fields[f], rest = int64(v), rest[j+1:]
	}
	return int(fields[0]), int(fields[1]), fields[2], true
}

// Fanout has Pubs senders send Msgs messages to one conversation that
// Readers connections read, and checks that every reader got every acked
// message exactly once and in each sender's order.
func Fanout(ctx context.Context, o Options, cfg FanoutConfig) (FanoutResult, error) {
	res := FanoutResult{Workload: "fanout", Readers: cfg.Readers, Pubs: cfg.Pubs, Rate: cfg.Rate}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.Readers <= 0 || cfg.Pubs <= 0 || cfg.Msgs <= 0 {
		return res, fmt.Errorf("-n, -pubs and -msgs must be positive")
	}
	if cfg.Plain && len(o.URLs) > 1 {
		return res, fmt.Errorf("-plain drives one broadcast server: a plain relay's nodes do not pass messages to each other, give one -url")
	}
	if cfg.Group && cfg.Plain {
		return res, fmt.Errorf("-group needs the chat: a plain broadcast server has no groups")
	}
	if cfg.To == "" {
		cfg.To = "room:lobby"
	}
	if cfg.Window <= 0 {
		cfg.Window = 32
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	cfg.Size = max(cfg.Size, 40)
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	perSender := (cfg.Msgs + cfg.Pubs - 1) / cfg.Pubs
	var lat Histogram
	readers := make([]*reader, cfg.Readers)
	var warmed atomic.Int64 // connections that have seen a warm-up frame
	onPush := func(r *reader) func([]byte, []byte, int) {
		return func(path, body []byte, _ int) {
			if cfg.Plain && bytes.Equal(path, warmUpText) {
				if !r.warm.Swap(true) {
					warmed.Add(1)
				}
				return
			}
			var (
				sender, seq int
				sent        int64
				ok          bool
			)
			switch {
			case cfg.Plain: // the whole frame is the text
				sender, seq, sent, ok = parseBenchFields(path)
			case string(path) == "im/message":
				sender, seq, sent, ok = parseBenchText(body)
			}
			if !ok || sender < 0 || sender >= cfg.Pubs || seq < 0 || seq >= perSender {
				return
			}
			lat.Add(time.Duration(time.Now().UnixNano() - sent))
			n := sender*perSender + seq
			word, bit := n/64, uint64(1)<<(n%64)
			if r.seen[word]&bit != 0 {
				r.dups.Add(1)
				return
			}
			r.seen[word] |= bit
			if seq < r.last[sender] {
				r.inversion.Add(1)
			}
			r.last[sender] = seq
			r.got.Add(1)
		}
	}
	for i := range readers {
		readers[i] = &reader{seen: make([]uint64, (cfg.Pubs*perSender+63)/64), last: make([]int, cfg.Pubs)}
	}
	var (
		rclients, sclients []*client
		err                error
		plainAcks          [][]chan reply // by sender and sequence, with cfg.Plain
	)
	if cfg.Plain {
		res.Workload = "fanout-plain"
		rclients, err = connectPlain(ctx, &o, cfg.Readers, 0, func(i int) func([]byte, []byte, int) { return onPush(readers[i]) })
		if err != nil {
			return res, err
		}
		defer closeAll(rclients)
		plainAcks = make([][]chan reply, cfg.Pubs)
		for s := range plainAcks {
			plainAcks[s] = make([]chan reply, perSender)
			for seq := range plainAcks[s] {
				plainAcks[s][seq] = make(chan reply, 1)
			}
		}
		swarm := make([]atomic.Bool, cfg.Pubs)
		sclients, err = connectPlain(ctx, &o, cfg.Pubs, cfg.Readers, func(s int) func([]byte, []byte, int) {
			return func(path, _ []byte, _ int) {
				if bytes.Equal(path, warmUpText) {
					if !swarm[s].Swap(true) {
						warmed.Add(1)
					}
					return
				}
				if sender, seq, _, ok := parseBenchFields(path); ok && sender == s && seq >= 0 && seq < perSender {
					select {
					case plainAcks[s][seq] <- reply{}:
					default: // a duplicate: the readers count those
					}
				}
			}
		})
		if err != nil {
			return res, err
		}
		defer closeAll(sclients)
		if err := warmUp(ctx, sclients[0], &warmed, int64(cfg.Readers+cfg.Pubs)); err != nil {
			return res, err
		}
	} else {
		k := newConnector(&o)
		var rusers, susers []user
		rclients, rusers, err = k.connectMany(ctx, cfg.Readers, 0, func(i int) string { return fmt.Sprintf("%s-r%d", o.Prefix, i) },
			func(i int) connectOpts { return connectOpts{onPush: onPush(readers[i])} })
		if err != nil {
			return res, err
		}
		defer closeAll(rclients)
		sclients, susers, err = k.connectMany(ctx, cfg.Pubs, cfg.Readers, func(i int) string { return fmt.Sprintf("%s-s%d", o.Prefix, i) },
			func(int) connectOpts { return connectOpts{} })
		if err != nil {
			return res, err
		}
		defer closeAll(sclients)
		if cfg.Group {
			res.Workload = "fanout-group"
			if cfg.To, err = benchGroup(sclients[0], susers, rusers); err != nil {
				return res, err
			}
		}
	}
	o.progress("%d readers and %d senders connected; sending %d messages", cfg.Readers, cfg.Pubs, cfg.Msgs)

	before, toolBefore := o.figures(), toolCPU()
	var ack Histogram
	var acked, failed, sent atomic.Int64
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for s, c := range sclients {
		count := min(perSender, cfg.Msgs-s*perSender)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Paced senders take turns: sender s starts s/P of an interval
			// late, so the messages arrive evenly at the rate asked, not P
			// at a time.
			var interval, offset time.Duration
			if cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(cfg.Pubs) / cfg.Rate)
				offset = interval * time.Duration(s) / time.Duration(cfg.Pubs)
			}
			window := make(chan struct{}, cfg.Window)
			var inflight sync.WaitGroup
			for seq := 0; seq < count && ctx.Err() == nil; seq++ {
				if interval > 0 {
					if d := time.Until(start.Add(offset + time.Duration(seq)*interval)); d > 0 {
						time.Sleep(d)
					}
				}
				window <- struct{}{}
				text := benchText(s, seq, cfg.Size)
				at := time.Now()
				var ch <-chan reply
				var err error
				if cfg.Plain {
					ch, err = plainAcks[s][seq], c.writeFrame(ws.OpText, []byte(text))
				} else {
					ch, err = c.start("im/send", sendBody(cfg.To, text, ""))
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { res.FirstError = err.Error() })
					<-window
					continue
				}
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					defer func() { <-window }()
					select {
					case r := <-ch:
						if r.err == nil && replyError(r.body) == nil {
							ack.Add(time.Since(at))
							acked.Add(1)
							return
						}
						failed.Add(1)
						errOnce.Do(func() {
							if r.err != nil {
								res.FirstError = r.err.Error()
							} else {
								res.FirstError = string(r.body)
							}
						})
					case <-ctx.Done():
						failed.Add(1)
					}
				}()
			}
			inflight.Wait()
		}()
	}
	stopProgress := o.progressEvery(2*time.Second, func() string {
		var got int64
		for _, r := range readers {
			got += r.got.Load()
		}
		return fmt.Sprintf("acked %d/%d, delivered %d", acked.Load(), cfg.Msgs, got)
	})
	wg.Wait()
	res.Sent, res.Acked, res.Failed = int(sent.Load()), int(acked.Load()), int(failed.Load())
	res.Expected = int64(res.Acked) * int64(cfg.Readers)

	// Wait for the deliveries: until every acked message has reached every
	// reader, or nothing has arrived for the drain time.
	lastCount, lastChange := int64(-1), time.Now()
	var lastDelivery time.Time
	for {
		var got int64
		for _, r := range readers {
			got += r.got.Load()
		}
		if got != lastCount {
			lastCount, lastChange, lastDelivery = got, time.Now(), time.Now()
		}
		if got >= res.Expected || time.Since(lastChange) > cfg.Drain || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopProgress()
	after, toolAfter := o.figures(), toolCPU()
	res.ToolCPUS = toolAfter - toolBefore
	if lastDelivery.IsZero() {
		lastDelivery = time.Now()
	}
	res.DurationS = lastDelivery.Sub(start).Seconds()
	for _, r := range readers {
		res.Delivered += r.got.Load()
		res.Duplicated += r.dups.Load()
		res.OutOfOrder += r.inversion.Load()
	}
	res.Lost = max(res.Expected-res.Delivered, 0)
	if res.DurationS > 0 {
		res.DeliveriesPerS = float64(res.Delivered) / res.DurationS
	}
	res.Latency, res.Ack = lat.Summary(), ack.Summary()
	if before != nil && after != nil {
		res.ServerCPUS = after.CPUSeconds - before.CPUSeconds
		if res.ServerCPUS > 0 {
			res.DeliveriesPerCPU = float64(res.Delivered) / res.ServerCPUS
		}
		res.Server = after
	}
	for _, c := range rclients {
		if !c.alive() {
			return res, fmt.Errorf("a reader's connection was closed (code %d)", c.closeCode)
		}
	}
	return res, nil
}

// warmUpText is the frame a plain fan-out sends before it measures
// anything. It is no bench message (parseBenchFields refuses it), so no
// reader counts it as a delivery, and the relay echoes it like any text.
var warmUpText = []byte("warm-up")

// warmUpEvery is how long warmUp waits for its frame to reach everyone
// before it sends another.
const warmUpEvery = 100 * time.Millisecond

// warmUp has sender c send warm-up frames until each of the want
// connections has seen one (warmed counts them). A plain relay puts a
// connection in its room in its handler, after the upgrade that dial
// waited for, so a message sent as soon as every dial returned could miss
// a connection that is not in the room yet; once a connection has seen a
// frame, every later one reaches it.
func warmUp(ctx context.Context, c *client, warmed *atomic.Int64, want int64) error {
	for {
		if err := c.writeFrame(ws.OpText, warmUpText); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		deadline := time.Now().Add(warmUpEvery)
		for warmed.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
		}
		if warmed.Load() >= want {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("warm-up: %d of %d connections joined the room: %w", warmed.Load(), want, ctx.Err())
		}
	}
}

// groupCreateIDs is how many members one im/group/create names: their ids
// stay well inside the default 64 KiB frame. The rest are invited one by
// one, each invite a push to every member so far.
const groupCreateIDs = 8000

// benchGroup has the first sender create an open group of every sender and
// reader for a group fan-out, and returns its address.
func benchGroup(owner *client, senders, readers []user) (string, error) {
	var ids []int64
	for _, u := range append(senders[1:], readers...) {
		ids = append(ids, u.id)
	}
	first := ids[:min(len(ids), groupCreateIDs)]
	body, _ := json.Marshal(map[string]any{"name": "bench fanout", "members": first})
	raw, err := owner.call("im/group/create", body, time.Minute)
	if err != nil {
		return "", fmt.Errorf("im/group/create: %w", err)
	}
	var created struct {
		Group struct {
			ID      int64 `json:"id"`
			Members int   `json:"members"`
		} `json:"group"`
	}
	if err := json.Unmarshal(raw, &created); err != nil || created.Group.ID == 0 {
		return "", fmt.Errorf("im/group/create replied %s", raw)
	}
	for _, id := range ids[len(first):] {
		body, _ := json.Marshal(map[string]int64{"id": created.Group.ID, "user": id})
		if _, err := owner.call("im/group/invite", body, time.Minute); err != nil {
			return "", fmt.Errorf("im/group/invite: %w", err)
		}
	}
	return "group:" + strconv.FormatInt(created.Group.ID, 10), nil
}

// connectPlain opens n connections to a plain broadcast server's lobby
// (FanoutConfig.Plain), Options.Logins at a time, connection i from the
// source of number first+i, each handing its frames to onPush(i).
func connectPlain(ctx context.Context, o *Options, n, first int, onPush func(i int) func([]byte, []byte, int)) ([]*client, error) {
	clients := make([]*client, n)
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(o.Logins, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := dial(ctx, o.URL+"?room=lobby", o.source(first+i), onPush(i))
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					cancel()
					return
				}
				clients[i] = c
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(clients)
		return nil, firstErr
	}
	return clients, nil
}
