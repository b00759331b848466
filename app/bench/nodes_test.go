package bench_test

// The spread over several nodes: connections go to the -url list's
// addresses in turn, sessions are remembered per address, and presence
// says, node by node, which watchers' lists are not what the tool holds
// online. Two single-node servers, each on its own SQLite file, stand in
// for the nodes: they share nothing, which is what makes the spread and
// the mismatches visible.

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/bench"
	"dce/app/servertest"
	"dce/common/config"
)

// twoServers starts two unrelated servers and options whose -url names
// both; Server records each one's connections when it is read.
func twoServers(t *testing.T) (bench.Options, func() [2]int) {
	t.Helper()
	var servers [2]*servertest.Server
	for i := range servers {
		servers[i] = servertest.Start(t, func(c *config.Config) {
			c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 1_000_000, 1_000_000
		})
	}
	var mu sync.Mutex
	var held [2]int
	o := bench.Options{URL: servers[0].WSURL + ", " + servers[1].WSURL, Timeout: time.Minute, Prefix: "t",
		SessionFile: filepath.Join(t.TempDir(), "sessions"),
		Server: func() (bench.ServerFigures, error) {
			var sum bench.ServerFigures
			mu.Lock()
			defer mu.Unlock()
			for i, s := range servers {
				st := s.Status()
				held[i] = st.Connections
				sum.Connections += st.Connections
				sum.RSSBytes += st.RSSBytes
				sum.CPUSeconds += st.CPUSeconds
			}
			return sum, nil
		}}
	return o, func() [2]int {
		mu.Lock()
		defer mu.Unlock()
		return held
	}
}

func TestBenchConnsSpreadOverTheNodesInTurn(t *testing.T) {
	o, held := twoServers(t)
	res, err := bench.Conns(context.Background(), o, bench.ConnsConfig{N: 10, Hold: 300 * time.Millisecond})
	if err != nil || res.Connections != 10 || res.Errors != 0 {
		t.Fatalf("conns: %+v, %v", res, err)
	}
	if got := held(); got != [2]int{5, 5} {
		t.Fatalf("the two nodes held %v connections; want 5 each", got)
	}
	if res.Logins != 10 || res.Resumed != 0 {
		t.Fatalf("first run: %d logins, %d resumed; want 10 logins", res.Logins, res.Resumed)
	}
	// Each user goes to the same node again and finds its session there.
	res, err = bench.Conns(context.Background(), o, bench.ConnsConfig{N: 10, Hold: 300 * time.Millisecond})
	if err != nil || res.Resumed != 10 || res.Logins != 0 {
		t.Fatalf("second run: %d resumed, %d logins (%v); want every session resumed", res.Resumed, res.Logins, err)
	}
	if got := held(); got != [2]int{5, 5} {
		t.Fatalf("second run: the nodes held %v", got)
	}

	// Logins spread the same way: each node registers half the users.
	login, err := bench.Login(context.Background(), o, bench.LoginConfig{N: 6, Concurrency: 2})
	if err != nil || login.Logins != 6 || login.Registered != 6 || login.Failed != 0 {
		t.Fatalf("login over two nodes: %+v, %v", login, err)
	}
}

// Unrelated servers do not share who is online, so every watcher's list
// is wrong, and the result says so on each node.
func TestBenchPresenceNamesTheNodesWhoseListsAreWrong(t *testing.T) {
	o, _ := twoServers(t)
	res, err := bench.Presence(context.Background(), o, bench.PresenceConfig{Watchers: 4, N: 6, Within: 300 * time.Millisecond,
		Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Nodes != 2 || res.ListsExact != 0 || !slices.Equal(res.ListMismatches, []int{2, 2}) || res.WatchersExact != 0 {
		t.Fatalf("over two unrelated servers: %d nodes, %d lists exact, mismatches %v, %d watchers exact; want every list wrong",
			res.Nodes, res.ListsExact, res.ListMismatches, res.WatchersExact)
	}
}

func TestBenchPlainFanoutTakesOneNode(t *testing.T) {
	o, _ := twoServers(t)
	_, err := bench.Fanout(context.Background(), o, bench.FanoutConfig{Readers: 1, Pubs: 1, Msgs: 1, Plain: true})
	if err == nil || !strings.Contains(err.Error(), "one -url") {
		t.Fatalf("-plain over two nodes: %v; want an error asking for one -url", err)
	}
}
