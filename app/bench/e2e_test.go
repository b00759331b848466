package bench_test

// The load tool's correctness against a real server on loopback, at a
// size CI can afford: every acked message reaches every reader once and in
// order, every acked private message is in the store, every watcher's
// online list ends exact. Timings belong to `dce bench`, not to tests.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dce/app/bench"
	"dce/app/servertest"
	"dce/common/config"
)

func startBenchServer(t *testing.T, configure ...func(*config.Config)) (*servertest.Server, bench.Options) {
	t.Helper()
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 1_000_000, 1_000_000
		for _, f := range configure {
			f(c)
		}
	})
	o := bench.Options{URL: s.WSURL, Timeout: 2 * time.Minute, Prefix: "t",
		SessionFile: filepath.Join(t.TempDir(), "sessions"),
		Server: func() (bench.ServerFigures, error) {
			st := s.Status()
			return bench.ServerFigures{RSSBytes: st.RSSBytes, CPUSeconds: st.CPUSeconds, Connections: st.Connections,
				Goroutines: st.Goroutines, Commits: st.StoreCommits}, nil
		}}
	return s, o
}

func TestBenchFanoutDeliversEveryMessageOnceInOrder(t *testing.T) {
	_, o := startBenchServer(t)
	res, err := bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 100, Pubs: 2, Msgs: 1000, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fanout: %d readers, %d acked, %d delivered, %.0f deliveries/s, latency %s", res.Readers, res.Acked,
		res.Delivered, res.DeliveriesPerS, res.Latency)
	if res.Acked != 1000 || res.Failed != 0 {
		t.Fatalf("acked %d of 1000, %d failed (%s)", res.Acked, res.Failed, res.FirstError)
	}
	if res.Lost != 0 || res.Duplicated != 0 || res.OutOfOrder != 0 || res.Delivered != 100*1000 {
		t.Fatalf("delivered %d of %d: lost %d, duplicated %d, out of order %d", res.Delivered, res.Expected,
			res.Lost, res.Duplicated, res.OutOfOrder)
	}
	if res.Latency.P99 <= 0 || res.ServerCPUS <= 0 {
		t.Errorf("no latency or CPU measured: %+v", res)
	}

	// Paced, to a second set of readers: the same users resume their
	// sessions from the session file instead of logging in again.
	res, err = bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 100, Pubs: 2, Msgs: 100, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || res.Duplicated != 0 || res.Delivered != 100*100 {
		t.Fatalf("paced: delivered %d, lost %d, duplicated %d", res.Delivered, res.Lost, res.Duplicated)
	}
	if res.DurationS < 0.4 {
		t.Errorf("100 messages at 200/s took %.2f s", res.DurationS)
	}
}

func TestBenchGroupFanoutReachesEveryMember(t *testing.T) {
	_, o := startBenchServer(t)
	res, err := bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 150, Pubs: 2, Msgs: 400, Size: 64, Group: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Workload != "fanout-group" || res.Acked != 400 || res.Failed != 0 {
		t.Fatalf("%s: acked %d of 400, %d failed (%s)", res.Workload, res.Acked, res.Failed, res.FirstError)
	}
	if res.Lost != 0 || res.Duplicated != 0 || res.OutOfOrder != 0 || res.Delivered != 150*400 {
		t.Fatalf("delivered %d of %d: lost %d, duplicated %d, out of order %d", res.Delivered, res.Expected,
			res.Lost, res.Duplicated, res.OutOfOrder)
	}
	if _, err := bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 1, Pubs: 1, Msgs: 1, Group: true, Plain: true}); err == nil {
		t.Error("-group with -plain ran; want an error")
	}
}

func TestBenchPairsStoresEveryAckedMessage(t *testing.T) {
	_, o := startBenchServer(t)
	res, err := bench.Pairs(context.Background(), o, bench.PairsConfig{Pairs: 10, Duration: 2 * time.Second, Window: 8, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pairs: %d acked (%.0f/s), ack %s", res.Acked, res.AckedPerS, res.Ack)
	if res.Acked == 0 || res.Failed != 0 {
		t.Fatalf("acked %d, failed %d (%s)", res.Acked, res.Failed, res.FirstError)
	}
	if !res.Verified || res.MissingStored != 0 {
		t.Fatalf("verified %v, %d acked messages missing from the store", res.Verified, res.MissingStored)
	}
	if res.Delivered != res.Acked {
		t.Errorf("partners got %d pushes for %d acked messages", res.Delivered, res.Acked)
	}
	// Every acked message was committed: a commit carries at least one,
	// and never more than the window lets all senders have in flight.
	if res.PerCommit < 1 || res.PerCommit > 20*8 || res.ToolCPUS <= 0 {
		t.Errorf("%.1f messages per commit, tool CPU %.3f s", res.PerCommit, res.ToolCPUS)
	}
}

func TestBenchPresenceIsExactAndLinear(t *testing.T) {
	_, o := startBenchServer(t)
	res, err := bench.Presence(context.Background(), o, bench.PresenceConfig{Watchers: 20, N: 60, Within: time.Second,
		Settle: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("presence: %d frames, %d bytes, %.0f bytes per joiner", res.PresenceFrames, res.PresenceBytes, res.BytesPerJoiner)
	if res.WatchersExact != 20 || res.JoinersMissing != 0 {
		t.Fatalf("%d of 20 watchers exact, %d joiners missing", res.WatchersExact, res.JoinersMissing)
	}
	// Each arrival is one event to each watcher and to nobody else.
	if res.PresenceFrames != 60*20 {
		t.Fatalf("%d presence frames for 60 arrivals and 20 watchers; want %d", res.PresenceFrames, 60*20)
	}
}

func TestBenchConnsAndLogin(t *testing.T) {
	_, o := startBenchServer(t)
	login, err := bench.Login(context.Background(), o, bench.LoginConfig{N: 10, Concurrency: 2})
	if err != nil || login.Logins != 10 || login.Registered != 10 || login.Failed != 0 {
		t.Fatalf("login: %+v, %v", login, err)
	}
	res, err := bench.Conns(context.Background(), o, bench.ConnsConfig{N: 50, Hold: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connections != 50 || res.Errors != 0 || res.Dropped != 0 {
		t.Fatalf("conns: %+v", res)
	}
	if res.ServerHeld == nil || res.ServerHeld.Connections < 50 {
		t.Fatalf("the server saw %+v", res.ServerHeld)
	}
}

// The tool's connections answer the server's pings, or the server would
// close them when its pong wait ran out.
func TestBenchConnectionsAnswerPings(t *testing.T) {
	_, o := startBenchServer(t, func(c *config.Config) {
		c.Transport.PingInterval.Duration, c.Transport.PongWait.Duration = 100*time.Millisecond, 400*time.Millisecond
	})
	res, err := bench.Conns(context.Background(), o, bench.ConnsConfig{N: 30, Hold: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connections != 30 || res.Errors != 0 || res.Dropped != 0 {
		t.Fatalf("conns with a ping every 100 ms: %+v", res)
	}
}

// A server whose limits would stall the setup for an hour fails the run at
// once with a message that says what to raise.
func TestBenchFailsFastOnLongWaits(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.RegistrationsPerHour = 2 })
	o := bench.Options{URL: s.WSURL, Timeout: time.Minute, Prefix: "t", SessionFile: filepath.Join(t.TempDir(), "sessions")}
	start := time.Now()
	res, err := bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 5, Pubs: 1, Msgs: 1})
	if err == nil || !strings.Contains(err.Error(), "raise its limits") {
		t.Fatalf("Fanout = %+v, %v; want an error that names the limits", res, err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("it took %s to give up", time.Since(start))
	}
}
