package imtest

// Load held (TESTPLAN section 1) at CI scale: L1 idle hold, L2 lobby
// fan-out, L5 churn. Clients and server share this process, so the
// resource figures below include the clients' side of each connection.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// loadSkipTiming skips a load or timing test where its figures would mean
// nothing: under the race detector, and in -short runs.
func loadSkipTiming(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("timing figures are meaningless under the race detector")
	}
	if testing.Short() {
		t.Skip("load test: skipped in -short mode")
	}
}

// loadQuiesce waits until the servers of earlier tests are gone from the
// heap. fasthttp keeps a stopped server reachable (its worker pool's
// cleaner sleeps up to 10 s before it sees the stop), and an earlier test's
// server (64 MiB of session cache alone) freed in the middle of a
// measurement would hide as much growth.
func loadQuiesce(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	servertest.Eventually(t, 15*time.Second, "earlier tests' servers to be released", func() bool {
		n := runtime.Stack(buf, true)
		return !bytes.Contains(buf[:n], []byte("fasthttp.(*workerPool).Start"))
	})
}

// loadParallel runs do(i) for i in [0, n) on workers goroutines and fails the
// test with the first error.
func loadParallel(t *testing.T, n, workers int, do func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// loadMessage is the part of an im/message push the load tests look at.
type loadMessage struct {
	ID   int64  `json:"id"`
	CID  string `json:"cid"`
	From struct {
		ID int64 `json:"id"`
	} `json:"from"`
}

// loadPresence is an im/presence push.
type loadPresence struct {
	User struct {
		ID int64 `json:"id"`
	} `json:"user"`
	Online bool `json:"online"`
	Places int  `json:"places"`
}

// loadFigures is the server process's figures at one moment.
type loadFigures struct {
	goroutines, fds int
	rss             uint64
}

// loadMeasure reads the figures after returning freed memory to the system, so
// that RSS counts what is live rather than what a storm of pushes left
// behind for the scavenger.
func loadMeasure(t *testing.T, s *servertest.Server) loadFigures {
	debug.FreeOSMemory()
	return loadFigures{goroutines: runtime.NumGoroutine(), fds: loadFDs(t, s), rss: servertest.RSS(t)}
}

// loadFDs counts open files other than the store's: its pool of read
// connections is bounded (four here) and grows with concurrent reads, so it
// is not a per-connection leak.
func loadFDs(t *testing.T, s *servertest.Server) int {
	return servertest.OpenFDs(t, s.Config.StorePath())
}

// loadBaseline is TESTPLAN's baseline: the server has started and one
// client has logged in and out.
func loadBaseline(t *testing.T, s *servertest.Server) loadFigures {
	t.Helper()
	c := s.DialWS(t, "", nil)
	c.Login("baseline-user", "password1")
	c.Close()
	servertest.Eventually(t, 5*time.Second, "the baseline client to leave", func() bool {
		return s.Hub.Stats().Connections == 0
	})
	time.Sleep(200 * time.Millisecond) // its presence grace (100 ms) runs out
	return loadMeasure(t, s)
}

// loadDrained waits until the clients have received every push the hub queued
// since since (received counts them), so that a storm of presence pushes is
// over before figures are taken.
func loadDrained(t *testing.T, s *servertest.Server, since uint64, received *atomic.Int64, timeout time.Duration) {
	t.Helper()
	servertest.Eventually(t, timeout, "every queued push to reach its client", func() bool {
		return received.Load() >= int64(s.Hub.Stats().Delivered-since)
	})
}

// L1 at CI scale: 500 users × 4 WebSocket connections (2,000), one login
// per user and three resumes by ?sid=, held idle, then all closed.
func TestL1IdleHold(t *testing.T) {
	loadSkipTiming(t)
	loadQuiesce(t)
	const (
		users        = 500
		connsPerUser = 4
		conns        = users * connsPerUser
		hold         = 6 * time.Second // TESTPLAN says 60 s; 6 s (3 pings) keeps the suite short
	)
	s := servertest.Start(t, func(c *config.Config) {
		// Pings every 2 s with a 5 s pong wait make the short hold
		// exercise keep-alive on every connection several times.
		c.Transport.PingInterval = config.Duration{Duration: 2 * time.Second}
		c.Transport.PongWait = config.Duration{Duration: 5 * time.Second}
	})
	base := loadBaseline(t, s)
	deliveredBefore := s.Hub.Stats().Delivered

	var received atomic.Int64
	count := func(servertest.Frame) { received.Add(1) }
	clients := make([]*servertest.Client, conns)
	sids := make([]string, users)
	start := time.Now()
	// Four dialers at a time: fasthttp keeps one idle worker goroutine per
	// upgrade served at once for 10 s, which would count against the
	// after-close figure (baseline + 10).
	loadParallel(t, users, 4, func(u int) error { // the first connection logs in
		c, err := s.DialWSPushes(t, "", count)
		if err != nil {
			return err
		}
		var r struct {
			SID string `json:"sid"`
		}
		f, err := c.Call("im/login", map[string]string{"nickname": fmt.Sprintf("l1-%d", u), "password": "password1"}, 10*time.Second)
		if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil {
			return fmt.Errorf("login l1-%d: %v %s", u, err, f.Body)
		}
		clients[u*connsPerUser], sids[u] = c, r.SID
		return nil
	})
	loadParallel(t, users*(connsPerUser-1), 4, func(i int) error { // the others resume
		u, k := i/(connsPerUser-1), i%(connsPerUser-1)+1
		c, err := s.DialWSPushes(t, "sid="+sids[u], count)
		if err != nil {
			return err
		}
		clients[u*connsPerUser+k] = c
		return nil
	})
	servertest.Eventually(t, 30*time.Second, "every connection attached", func() bool {
		st := s.Hub.Stats()
		return st.Connections == conns && st.Online == users
	})
	loadDrained(t, s, deliveredBefore, &received, 60*time.Second)
	t.Logf("L1: %d connections open and presence drained in %v (%d presence pushes)", conns, time.Since(start).Round(time.Millisecond), received.Load())

	held := loadMeasure(t, s)
	time.Sleep(hold) // an idle hold is the point of the test
	// A connection's writer runs only while it writes (each keep-alive ping
	// starts one for a moment, and on a busy machine a moment is longer):
	// the figure is the steady count, so it may settle for a few seconds.
	held.goroutines = servertest.Settle(3*time.Second, base.goroutines+3*conns, runtime.NumGoroutine)
	for i, c := range clients {
		if c.Closed() {
			t.Fatalf("connection %d (user l1-%d) was closed during the hold: code %d", i, i/connsPerUser, c.WSCloseCode())
		}
	}
	if n := s.Hub.Stats().Connections; n != conns {
		t.Fatalf("the server holds %d connections after the hold, want %d", n, conns)
	}
	loadParallel(t, conns, 8, func(i int) error { // every connection still answers
		f, err := clients[i].Call("ping", nil, 10*time.Second)
		if err != nil || f.ErrorCode() != "" {
			return fmt.Errorf("ping on connection %d after the hold: %v %s", i, err, f.Body)
		}
		return nil
	})

	rssPerConn := int64(held.rss-base.rss) / conns
	goroutinesPerConn := float64(held.goroutines-base.goroutines) / conns
	t.Logf("L1: conns=%d rss_per_conn=%dB goroutines_per_conn=%.2f", conns, rssPerConn, goroutinesPerConn)
	if held.rss > base.rss+64<<10*conns {
		t.Errorf("RSS grew by %d bytes for %d connections, over 64 KiB each", held.rss-base.rss, conns)
	}
	if held.goroutines > base.goroutines+3*conns {
		t.Errorf("goroutines %d, over baseline %d + 3 × %d", held.goroutines, base.goroutines, conns)
	}

	for _, c := range clients {
		c.Close()
	}
	closed := time.Now()
	g := servertest.Settle(5*time.Second, base.goroutines+10, runtime.NumGoroutine)
	// On PostgreSQL and Redis the engines' pools open connections as the
	// load needs them and keep them (bounded: pgxpool's 16, go-redis's
	// pool), which are no connection of a client.
	slack := 5
	if servertest.Engine() != servertest.EngineSQLite {
		slack += 16 + 10*runtime.GOMAXPROCS(0)
	}
	fds := servertest.Settle(5*time.Second-time.Since(closed), base.fds+slack, func() int { return loadFDs(t, s) })
	t.Logf("L1: after close: goroutines=%d (baseline %d) fds=%d (baseline %d) in %v", g, base.goroutines, fds, base.fds,
		time.Since(closed).Round(time.Millisecond))
	if g > base.goroutines+10 {
		t.Errorf("goroutines %d five seconds after close, over baseline %d + 10", g, base.goroutines)
	}
	if fds > base.fds+slack {
		t.Errorf("open fds %d after close, over baseline %d + %d", fds, base.fds, slack)
	}
}

// loadLogin logs nickname in over HTTP (no connection is attached, so no
// presence push) and returns its sid and user id. Safe off the test
// goroutine: it returns errors rather than failing the test.
func loadLogin(s *servertest.Server, nickname string) (sid string, id int64, err error) {
	body, _ := json.Marshal(map[string]string{"nickname": nickname, "password": "password1"})
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(s.HTTPURL+"/im/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var r struct {
		SID  string `json:"sid"`
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 || r.SID == "" {
		return "", 0, fmt.Errorf("login %s: status %d, %v", nickname, resp.StatusCode, err)
	}
	return r.SID, r.User.ID, nil
}

// loadReader is one lobby reader's view of the messages it was pushed.
type loadReader struct {
	self                              int64
	mu                                sync.Mutex
	seen                              map[int64]bool  // message ids
	last                              map[int64]int64 // sender -> the last id pushed from them
	dup, inversions, errors, unparsed int
}

// onPush checks one push: exactly once, in order per sender; records the
// send -> push latency of messages whose send time is in sentAt.
func (r *loadReader) onPush(f servertest.Frame, sentAt *sync.Map, latencies *servertest.Latencies) {
	switch {
	case f.Path == "im/message":
		var m loadMessage
		if json.Unmarshal(f.Body, &m) != nil {
			r.mu.Lock()
			r.unparsed++
			r.mu.Unlock()
			return
		}
		if at, ok := sentAt.Load(m.CID); ok {
			latencies.Add(f.At.Sub(at.(time.Time)))
		}
		r.mu.Lock()
		if r.seen[m.ID] {
			r.dup++
		}
		r.seen[m.ID] = true
		if m.ID <= r.last[m.From.ID] {
			r.inversions++
		}
		r.last[m.From.ID] = m.ID
		r.mu.Unlock()
	case f.Path == "error":
		r.mu.Lock()
		r.errors++
		r.mu.Unlock()
	}
}

func (r *loadReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// L2 at CI scale: 500 users in the lobby, 10 senders × 2 messages a second
// for 20 s (TESTPLAN says 60 s): every send acked, every reader gets every
// message exactly once and in order per sender, within the latency figures.
func TestL2LobbyFanOut(t *testing.T) {
	loadSkipTiming(t)
	const (
		users    = 500
		senders  = 10
		perSec   = 2
		duration = 20 * time.Second
		perSend  = int(duration / time.Second * perSec)
	)
	// L2 measures fan-out. On this VM a single fsync now and then stalls
	// for 100-600 ms; under synchronous=FULL such a stall lands in the ack
	// and push tails and says nothing about fan-out. NORMAL keeps the disk
	// out of it; F1 and F3 prove durability under FULL.
	s := servertest.Start(t, func(c *config.Config) { c.Store.Synchronous = "NORMAL" })
	sids, ids := make([]string, users), make([]int64, users)
	loadParallel(t, users, 8, func(i int) (err error) {
		sids[i], ids[i], err = loadLogin(s, fmt.Sprintf("l2-%d", i))
		return err
	})
	var sentAt sync.Map // cid -> time the send was written
	var pushLatency, ackLatency servertest.Latencies
	var received atomic.Int64
	readers := make([]*loadReader, users)
	clients := make([]*servertest.Client, users)
	deliveredBefore := s.Hub.Stats().Delivered
	loadParallel(t, users, 8, func(i int) error {
		r := &loadReader{self: ids[i], seen: map[int64]bool{}, last: map[int64]int64{}}
		readers[i] = r
		c, err := s.DialWSPushes(t, "sid="+sids[i], func(f servertest.Frame) {
			received.Add(1)
			r.onPush(f, &sentAt, &pushLatency)
		})
		clients[i] = c
		return err
	})
	servertest.Eventually(t, 20*time.Second, "every reader online", func() bool { return s.Hub.Stats().Online == users })
	loadDrained(t, s, deliveredBefore, &received, 30*time.Second)

	type ack struct {
		sender int
		id     int64
	}
	acks := make(chan ack, senders*perSend)
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[k*users/senders]
			time.Sleep(time.Duration(k) * time.Second / perSec / senders) // spread the senders
			tick := time.NewTicker(time.Second / perSec)
			defer tick.Stop()
			for n := range perSend {
				cid := fmt.Sprintf("l2-%d-%d", k, n)
				sent := time.Now()
				sentAt.Store(cid, sent)
				f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "cid": cid,
					"text": fmt.Sprintf("message %d from sender %d", n, k)}, 10*time.Second)
				var r struct {
					ID int64 `json:"id"`
				}
				if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil || r.ID == 0 {
					failed.Add(1)
					t.Errorf("send %s: %v %s", cid, err, f.Body)
				} else {
					ackLatency.Add(time.Since(sent))
					acks <- ack{k * users / senders, r.ID}
				}
				<-tick.C
			}
		}()
	}
	wg.Wait()
	close(acks)
	elapsed := time.Since(start)
	fromUser := map[int64]int{} // acked messages per sending user
	acked := 0
	for a := range acks {
		fromUser[ids[a.sender]]++
		acked++
	}
	expect := func(r *loadReader) int { return acked - fromUser[r.self] }
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range readers {
		for r.count() < expect(r) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var lost, dup, inversions, errorFrames, unparsed, pushes int
	for _, r := range readers {
		r.mu.Lock()
		lost += max(0, expect(r)-len(r.seen))
		pushes += len(r.seen)
		dup, inversions, errorFrames, unparsed = dup+r.dup, inversions+r.inversions, errorFrames+r.errors, unparsed+r.unparsed
		r.mu.Unlock()
	}
	closed := 0
	for _, c := range clients {
		if c.Closed() {
			closed++
		}
	}
	p50, p99, ack99 := pushLatency.Percentile(50), pushLatency.Percentile(99), ackLatency.Percentile(99)
	t.Logf("L2: users=%d senders=%d rate=%d/s duration=%v sends=%d acked=%d pushes=%d lost=%d dup=%d inversions=%d errors=%d closed=%d push_p50=%v push_p99=%v ack_p50=%v ack_p99=%v",
		users, senders, perSec, elapsed.Round(time.Millisecond), senders*perSend, acked, pushes, lost, dup, inversions, errorFrames,
		closed, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond),
		ackLatency.Percentile(50).Round(10*time.Microsecond), ack99.Round(10*time.Microsecond))
	switch {
	case acked != senders*perSend || failed.Load() != 0:
		t.Errorf("acked %d of %d sends", acked, senders*perSend)
	case lost != 0 || dup != 0 || inversions != 0:
		t.Errorf("lost %d, duplicated %d, out of order %d", lost, dup, inversions)
	case errorFrames != 0 || unparsed != 0 || closed != 0:
		t.Errorf("%d error frames, %d unparsable pushes, %d readers closed", errorFrames, unparsed, closed)
	}
	if p50 > 20*time.Millisecond || p99 > 150*time.Millisecond {
		t.Errorf("send -> push latency p50 %v (≤ 20 ms), p99 %v (≤ 150 ms)", p50, p99)
	}
	if ack99 > 100*time.Millisecond {
		t.Errorf("ack latency p99 %v, over 100 ms", ack99)
	}
}

// loadWatcher records the presence pushes one stable user sees, per user.
type loadWatcher struct {
	mu     sync.Mutex
	events map[int64][]loadPresence
}

func (w *loadWatcher) onPush(f servertest.Frame) {
	if f.Path != "im/presence" {
		return
	}
	var p loadPresence
	if json.Unmarshal(f.Body, &p) != nil {
		p.Places = -1 // reported as a bad event below
	}
	w.mu.Lock()
	w.events[p.User.ID] = append(w.events[p.User.ID], p)
	w.mu.Unlock()
}

// seen counts the online and offline events seen for user.
func (w *loadWatcher) seen(user int64) (online, offline int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events[user] {
		if e.Online {
			online++
		} else {
			offline++
		}
	}
	return online, offline
}

// L5 at CI scale: 200 stable users (5 of them sending to the lobby) while
// 300 other users take turns to cycle connect / resume by sid / close, 100 cycles a
// second for 10 s (TESTPLAN: 60 s), alternating WebSocket (?sid=) and TCP
// (im/resume). Each cycle of a user starts after the watcher has seen the
// previous one's offline, so every cycle must show exactly one online and
// one offline. A user's presence is pushed at most once a second
// (PROTOCOL.md section 5), so a user's cycle takes two seconds or more:
// 300 churners take turns for the 100 cycles a second.
func TestL5Churn(t *testing.T) {
	loadSkipTiming(t)
	const (
		stable     = 200
		senders    = 5
		churners   = 300
		cyclesPerS = 100
		duration   = 10 * time.Second
	)
	// Like L2, L5 measures what churn does to others, not the disk: see
	// TestL2LobbyFanOut on fsync stalls and synchronous=NORMAL.
	s := servertest.Start(t, func(c *config.Config) { c.Store.Synchronous = "NORMAL" })
	sids, ids := make([]string, stable+churners), make([]int64, stable+churners)
	loadParallel(t, stable+churners, 8, func(i int) (err error) {
		sids[i], ids[i], err = loadLogin(s, fmt.Sprintf("l5-%d", i))
		return err
	})
	var sentAt sync.Map
	var pushLatency, ackLatency servertest.Latencies
	var received atomic.Int64
	watcher := &loadWatcher{events: map[int64][]loadPresence{}}
	readers := make([]*loadReader, stable)
	clients := make([]*servertest.Client, stable)
	loadParallel(t, stable, 8, func(i int) error {
		r := &loadReader{self: ids[i], seen: map[int64]bool{}, last: map[int64]int64{}}
		readers[i] = r
		c, err := s.DialWSPushes(t, "sid="+sids[i], func(f servertest.Frame) {
			received.Add(1)
			r.onPush(f, &sentAt, &pushLatency)
			if i == 0 {
				watcher.onPush(f)
			}
		})
		clients[i] = c
		return err
	})
	servertest.Eventually(t, 20*time.Second, "every stable user online", func() bool { return s.Hub.Stats().Online == stable })
	loadDrained(t, s, 0, &received, 30*time.Second)
	// The arrivals' presence events made the connections hot: their
	// writers linger for a write delay after their last frame. The
	// baseline is taken once they have gone.
	time.Sleep(4 * s.Config.Transport.WriteDelay.Duration)
	base := loadMeasure(t, s)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sendFailures atomic.Int64
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[1+k]
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				cid := fmt.Sprintf("l5-%d-%d", k, n)
				sent := time.Now()
				sentAt.Store(cid, sent)
				f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "text": "during churn", "cid": cid}, 10*time.Second)
				if err != nil || f.ErrorCode() != "" {
					sendFailures.Add(1)
					continue
				}
				ackLatency.Add(time.Since(sent))
			}
		}()
	}

	tokens := make(chan struct{})
	go func() { // the churn rate
		tick := time.NewTicker(time.Second / cyclesPerS)
		defer tick.Stop()
		end := time.After(duration)
		for {
			select {
			case <-end:
				close(tokens)
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default: // every churner is busy: the cycle is skipped
				}
			}
		}
	}()
	cycles := make([]int, churners)
	churnErrs := make(chan error, churners)
	var cwg sync.WaitGroup
	for k := range churners {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			u := stable + k
			for range tokens {
				var c *servertest.Client
				var err error
				if cycles[k]%2 == 0 {
					c, err = s.DialWSPushes(t, "sid="+sids[u], nil)
				} else if c, err = s.DialTCPPushes(t, nil); err == nil {
					var f servertest.Frame
					if f, err = c.Call("im/resume", map[string]string{"sid": sids[u]}, 5*time.Second); err == nil && f.ErrorCode() != "" {
						err = fmt.Errorf("im/resume: %s", f.Body)
					}
				}
				if err != nil {
					churnErrs <- fmt.Errorf("cycle %d of l5-%d: %v", cycles[k], u, err)
					return
				}
				want := cycles[k] + 1
				if !loadWait(5*time.Second, func() bool { on, _ := watcher.seen(ids[u]); return on >= want }) {
					churnErrs <- fmt.Errorf("cycle %d of l5-%d: the watcher saw no online", cycles[k], u)
					return
				}
				c.Close()
				if !loadWait(5*time.Second, func() bool { _, off := watcher.seen(ids[u]); return off >= want }) {
					churnErrs <- fmt.Errorf("cycle %d of l5-%d: the watcher saw no offline", cycles[k], u)
					return
				}
				cycles[k]++
			}
		}()
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	close(churnErrs)
	for err := range churnErrs {
		t.Error(err)
	}

	total := 0
	for k, n := range cycles {
		total += n
		u := ids[stable+k]
		watcher.mu.Lock()
		events := watcher.events[u]
		watcher.mu.Unlock()
		if len(events) != 2*n {
			t.Errorf("l5-%d: %d presence events for %d cycles, want %d", stable+k, len(events), n, 2*n)
			continue
		}
		for i, e := range events {
			if e.Online != (i%2 == 0) || (e.Online && e.Places != 1) {
				t.Errorf("l5-%d: presence event %d is %+v; want online (places 1) and offline alternating", stable+k, i, e)
				break
			}
		}
	}
	closed := 0
	for _, c := range clients {
		if c.Closed() {
			closed++
		}
	}
	g := servertest.Settle(5*time.Second, base.goroutines+10, runtime.NumGoroutine)
	fds := servertest.Settle(5*time.Second, base.fds+5, func() int { return loadFDs(t, s) })
	p99 := pushLatency.Percentile(99)
	t.Logf("L5: stable=%d churners=%d cycles=%d (%.0f/s) stable_push %v ack %v send_failures=%d stable_closed=%d goroutines=%d (baseline %d) fds=%d (baseline %d)",
		stable, churners, total, float64(total)/duration.Seconds(), &pushLatency, &ackLatency, sendFailures.Load(), closed,
		g, base.goroutines, fds, base.fds)
	if total < int(duration.Seconds())*cyclesPerS/2 {
		t.Errorf("only %d churn cycles ran in %v", total, duration)
	}
	if p99 > 150*time.Millisecond {
		t.Errorf("stable users' push p99 %v during churn, over 150 ms", p99)
	}
	if sendFailures.Load() != 0 || closed != 0 {
		t.Errorf("%d sends failed and %d stable users were disconnected during churn", sendFailures.Load(), closed)
	}
	if g > base.goroutines+10 || g < base.goroutines-10 {
		t.Errorf("goroutines %d after churn, baseline %d ± 10", g, base.goroutines)
	}
	if fds > base.fds+5 || fds < base.fds-5 {
		t.Errorf("open fds %d after churn, baseline %d ± 5", fds, base.fds)
	}
}

// loadWait polls cond every 5 ms until it holds or timeout passes.
func loadWait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
