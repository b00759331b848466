package cluster_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"dce/app/cluster"
	"dce/app/servertest/testenv"
	"dce/app/session"
	"dce/common/store"
)

// memStore is the durable side of the session caches: one for every node,
// as PostgreSQL is.
type memStore struct {
	mu   sync.Mutex
	rows map[string]memRow
}

type memRow struct {
	user             int64
	created, expires time.Time
}

func newMemStore() *memStore { return &memStore{rows: map[string]memRow{}} }

func (m *memStore) SaveSession(_ context.Context, h string, user int64, created, expires time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[h] = memRow{user, created, expires}
	return nil
}

func (m *memStore) LoadSession(_ context.Context, h string) (int64, time.Time, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[h]
	if !ok {
		return 0, time.Time{}, time.Time{}, store.ErrNotFound
	}
	return r.user, r.created, r.expires, nil
}

func (m *memStore) DeleteSession(_ context.Context, h string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, h)
	return nil
}

func (m *memStore) DeleteUserSessions(_ context.Context, user int64) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for h, r := range m.rows {
		if r.user == user {
			out = append(out, h)
			delete(m.rows, h)
		}
	}
	return out, nil
}

// TestSessionsAcrossNodes: a session made on one node resumes on another
// from Redis (the store is not read), and a logout or a ban on one node is
// seen by every node at once.
func TestSessionsAcrossNodes(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t)}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	st := newMemStore()
	ca := session.NewTiered(st, a.cl.SessionTier(), time.Hour, nil)
	cb := session.NewTiered(st, b.cl.SessionTier(), time.Hour, nil)
	ctx := context.Background()
	s, err := ca.Create(ctx, 42)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cb.Get(ctx, s.SID)
	if err != nil || got.UserID != 42 {
		t.Fatalf("resume on b: %v %v", got, err)
	}
	if cb.Stats().Refills != 0 {
		t.Fatal("b read the store: the session was not in Redis")
	}
	if err := ca.Delete(ctx, s.SID); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Get(ctx, s.SID); err != session.ErrNoSession {
		t.Fatalf("b after a's logout: %v, want ErrNoSession", err)
	}
	s2, _ := cb.Create(ctx, 43)
	s3, _ := cb.Create(ctx, 43)
	if _, err := ca.Get(ctx, s2.SID); err != nil {
		t.Fatal(err)
	}
	if err := ca.DeleteUser(ctx, 43); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{s2.SID, s3.SID} {
		if _, err := cb.Get(ctx, sid); err != session.ErrNoSession {
			t.Fatalf("b after a's ban: %v, want ErrNoSession", err)
		}
	}
	if _, err := cb.Get(ctx, "not-a-sid"); err != session.ErrNoSession {
		t.Fatalf("junk sid: %v", err)
	}
}

// TestLimitsShared: a user's bucket is one over the nodes: the burst taken
// on one node is gone on the other, and it refills at the rate.
func TestLimitsShared(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t)}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	la, lb := a.cl.Limiter(), b.cl.Limiter()
	ctx := context.Background()
	for i := range 5 {
		l := la
		if i%2 == 1 {
			l = lb
		}
		if _, ok, err := l.Allow(ctx, "sends:1", 2, 5); err != nil || !ok {
			t.Fatalf("token %d of the burst of 5: ok %v err %v", i, ok, err)
		}
	}
	wait, ok, err := lb.Allow(ctx, "sends:1", 2, 5)
	if err != nil || ok || wait <= 0 || wait > time.Second {
		t.Fatalf("past the burst over two nodes: ok %v wait %s err %v; want refused with a wait of at most 0.5 s", ok, wait, err)
	}
	if _, ok, _ := la.Allow(ctx, "sends:2", 2, 5); !ok {
		t.Fatal("another user's bucket is not their own")
	}
	time.Sleep(wait + 50*time.Millisecond)
	if _, ok, _ := la.Allow(ctx, "sends:1", 2, 5); !ok {
		t.Fatal("no token after the wait the limiter named")
	}
}

// freePort is a loopback TCP port free now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis runs a throwaway redis-server on port, without persistence.
func startRedis(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/usr/bin/redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		testenv.Missing(t, "redis-server cannot start: "+err.Error())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("redis-server on %d did not come up: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stopRedis(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_, _ = cmd.Process.Wait()
}

// TestRedisRestart: while Redis is down each node serves its own
// connections; once it is back (empty: no persistence) pushes cross the
// nodes again within 5 s, presence is whole again and caps count again.
func TestRedisRestart(t *testing.T) {
	if _, err := exec.LookPath("/usr/bin/redis-server"); err != nil {
		testenv.Missing(t, "redis-server is not installed")
	}
	port := freePort(t)
	srv := startRedis(t, port)
	defer func() { stopRedis(srv) }()
	o := nodeOpts{url: fmt.Sprintf("redis://127.0.0.1:%d/0", port), prefix: "dce:", grace: 3 * time.Second}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	ca, sa, _ := a.connect(t, 1, "s1")
	_, sa2, _ := a.connect(t, 1, "s1b")
	_, sb, _ := b.connect(t, 1, "s2")
	eventually(t, 3*time.Second, "b sees a's places", placesOn(b, 1, 3))
	srv.Process.Kill()
	_, _ = srv.Process.Wait()

	a.cl.Bus().Deliver([]int64{1}, []byte("im/typing;down"), ca.ID())
	eventually(t, time.Second, "local delivery while Redis is down", func() bool { return sa2.has("im/typing;down") })
	if sa.has("im/typing;down") {
		t.Fatal("the sending connection got its own push")
	}
	if _, _, err := a.connect(t, 2, "s3"); err != nil {
		t.Fatalf("a login while Redis is down: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)

	srv = startRedis(t, port)
	back := time.Now()
	eventually(t, 5*time.Second, "pushes cross the nodes again", func() bool {
		a.cl.Bus().Deliver([]int64{1}, []byte("im/typing;up"), 0)
		time.Sleep(100 * time.Millisecond)
		return sb.has("im/typing;up")
	})
	t.Logf("cross-node pushes resumed %s after Redis came back", time.Since(back).Round(100*time.Millisecond))
	eventually(t, 5*time.Second, "b sees user 2, who logged in on a during the outage", placesOn(b, 2, 1))
	eventually(t, 5*time.Second, "a still sums user 1's places", placesOn(a, 1, 3))
	if e, _ := b.lastEvent(1); !e.online {
		t.Fatalf("b reported user 1 offline over the restart: %v", b.eventsOf(1))
	}
	_ = cluster.Options{}
}

// TestLimitsLeasedNeverPassTheBucket: with a burst large enough for
// leases, tokens spent over two nodes never add up to more than the one
// bucket holds, and a lease unspent on the other node costs at most its
// size.
func TestLimitsLeasedNeverPassTheBucket(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t)}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	la, lb := a.cl.Limiter(), b.cl.Limiter()
	ctx := context.Background()
	const burst, lease = 80, 10 // a rate of 1/s: at most one token more during the test
	start := time.Now()
	allowed := 0
	for i := range 200 {
		l := la
		if i%3 == 2 {
			l = lb
		}
		_, ok, err := l.Allow(ctx, "sends:7", 1, burst)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	refill := int(time.Since(start)/time.Second) + 1
	if allowed > burst+refill {
		t.Fatalf("%d tokens spent over two nodes from a bucket of %d (+%d refilled)", allowed, burst, refill)
	}
	if allowed < burst-2*(lease-1) {
		t.Fatalf("only %d tokens of a bucket of %d spent: more lost to leases than two leases' worth", allowed, burst)
	}
}
