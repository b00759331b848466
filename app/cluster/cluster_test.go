package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/cluster"
	"dce/app/hub"
	"dce/app/node"
	"dce/app/servertest/testenv"
	"dce/common/model"
)

// redisURL is the Redis the tests share (each with its own prefix).
func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("DCE_TEST_REDIS")
	if u == "" {
		testenv.Missing(t, "DCE_TEST_REDIS is not set (a redis:// URL of a Redis the tests may use)")
	}
	return u
}

func uniquePrefix(t *testing.T) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "dcetest:" + strings.ReplaceAll(t.Name(), "/", "-") + ":" + hex.EncodeToString(b[:]) + ":"
}

// sink is a connection's socket: it records frames and closes.
type sink struct {
	mu     sync.Mutex
	frames []string
	code   node.CloseCode
	conn   *hub.Conn
}

func (s *sink) WriteFrames(frames [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range frames {
		s.frames = append(s.frames, string(f))
	}
	return nil
}
func (s *sink) Ping() error { return nil }
func (s *sink) Close(code node.CloseCode, reason string) {
	s.mu.Lock()
	s.code = code
	c := s.conn
	s.mu.Unlock()
	go c.Finish() // as a transport's reader does when its socket closes
}
func (s *sink) Abort() {}

func (s *sink) has(frame string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames {
		if f == frame {
			return true
		}
	}
	return false
}

func (s *sink) closedWith() node.CloseCode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

// presenceEvent is what a node's chat is told.
type presenceEvent struct {
	user   int64
	online bool
	places int
}

// testNode is one node: its hub and its cluster engine on the shared Redis.
type testNode struct {
	name string
	cl   *cluster.Cluster
	hub  *hub.Hub
	view *cluster.Hub

	mu     sync.Mutex
	events []presenceEvent
}

type nodeOpts struct {
	url, prefix   string
	grace         time.Duration
	perUser       int
	beat, nodeTTL time.Duration
}

func startNode(t *testing.T, name string, o nodeOpts) *testNode {
	t.Helper()
	cl, err := cluster.Open(context.Background(), cluster.Options{URL: o.url, Prefix: o.prefix, Node: name,
		PresenceGrace: o.grace, Beat: o.beat, NodeTTL: o.nodeTTL})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, cl: cl}
	ho := hub.Options{PresenceGrace: o.grace, MaxConnsPerUser: o.perUser}
	cl.HubOptions(&ho)
	n.hub = hub.New(ho)
	n.view = cl.Hub()
	cl.Start(n.hub, cluster.Events{Presence: func(user int64, online bool, places int) {
		n.mu.Lock()
		n.events = append(n.events, presenceEvent{user, online, places})
		n.mu.Unlock()
	}})
	t.Cleanup(func() { n.stop() })
	return n
}

var stopped sync.Map // *testNode -> bool

func (n *testNode) stop() {
	if _, done := stopped.LoadOrStore(n, true); done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.hub.Shutdown(ctx, node.CloseGoingAway, "")
	_ = n.cl.Close()
}

// connect logs a new connection in as user with session sid.
func (n *testNode) connect(t *testing.T, user int64, sid string) (*hub.Conn, *sink, error) {
	t.Helper()
	s := &sink{}
	c, err := n.hub.RegisterWithCredential(s, node.WebSocket, "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	s.conn = c
	c.WatchPresence(true)
	err = c.SetSession(&model.Session{SID: sid, UserID: user, Created: time.Now(), Expires: time.Now().Add(time.Hour)})
	return c, s, err
}

func (n *testNode) lastEvent(user int64) (presenceEvent, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.events) - 1; i >= 0; i-- {
		if n.events[i].user == user {
			return n.events[i], true
		}
	}
	return presenceEvent{}, false
}

func (n *testNode) eventsOf(user int64) []presenceEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []presenceEvent
	for _, e := range n.events {
		if e.user == user {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func placesOn(n *testNode, user int64, want int) func() bool {
	return func() bool {
		p, online := n.view.Places(user)
		return online && p == want
	}
}

func offlineOn(n *testNode, user int64) func() bool {
	return func() bool {
		_, online := n.view.Places(user)
		return !online
	}
}

// TestPresenceSumsAcrossNodes: places on two nodes are summed on every
// node (Places, Online, the presence callback).
func TestPresenceSumsAcrossNodes(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t), grace: 300 * time.Millisecond}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	ca, _, err := a.connect(t, 7, "s1")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "b sees a's place", placesOn(b, 7, 1))
	if _, _, err := b.connect(t, 7, "s2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.connect(t, 7, "s2"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{a, b} {
		eventually(t, 3*time.Second, n.name+" sums 3 places", placesOn(n, 7, 3))
		eventually(t, time.Second, n.name+" was told 3 places", func() bool {
			e, ok := n.lastEvent(7)
			return ok && e.online && e.places == 3
		})
		found := false
		for _, on := range n.view.Online() {
			found = found || (on.UserID == 7 && on.Places == 3)
		}
		if !found {
			t.Fatalf("%s: Online() lacks user 7 with 3 places: %v", n.name, n.view.Online())
		}
	}
	ca.Close(1000, "")
	eventually(t, 3*time.Second, "a sums 2 places", placesOn(a, 7, 2))
	eventually(t, 3*time.Second, "b sums 2 places", placesOn(b, 7, 2))
}

// TestPresenceGraceAcrossNodes: a user whose one place moves from node a
// to node b is never reported offline, on either node.
func TestPresenceGraceAcrossNodes(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t), grace: 2 * time.Second}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	ca, _, err := a.connect(t, 9, "s1")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "b sees the place", placesOn(b, 9, 1))
	ca.Close(1000, "")
	time.Sleep(300 * time.Millisecond)
	if _, _, err := b.connect(t, 9, "s1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past a's grace
	for _, n := range []*testNode{a, b} {
		if p, online := n.view.Places(9); !online || p != 1 {
			t.Fatalf("%s: places %d online %v, want 1 true", n.name, p, online)
		}
		for _, e := range n.eventsOf(9) {
			if !e.online {
				t.Fatalf("%s reported the user offline during the move: %v", n.name, n.eventsOf(9))
			}
		}
	}
	// Gone from both: offline everywhere after the grace.
	for _, c := range b.hub.UserConns(9) {
		c.Close(1000, "")
	}
	for _, n := range []*testNode{a, b} {
		eventually(t, 5*time.Second, n.name+": offline", offlineOn(n, 9))
		if e, _ := n.lastEvent(9); e.online {
			t.Fatalf("%s: last report %v, want offline", n.name, e)
		}
	}
}

// TestNodeDeathGoesOffline: a node that stops beating (killed: no Close)
// is dropped by the others within 10 s; its users go offline unless they
// have places elsewhere.
func TestNodeDeathGoesOffline(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t), grace: 2 * time.Second}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	dead := startNode(t, "dead", o)
	if _, _, err := dead.connect(t, 1, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dead.connect(t, 2, "s2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.connect(t, 2, "s3"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "a sees user 1", placesOn(a, 1, 1))
	eventually(t, 3*time.Second, "a sees user 2 twice", placesOn(a, 2, 2))
	dead.kill()
	start := time.Now()
	eventually(t, 10*time.Second, "user 1 offline on a", offlineOn(a, 1))
	eventually(t, time.Second, "user 1 offline on b", offlineOn(b, 1))
	t.Logf("offline %s after the node stopped", time.Since(start).Round(100*time.Millisecond))
	if p, online := a.view.Places(2); !online || p != 1 {
		t.Fatalf("user 2 on a: %d places online %v, want 1 (b's)", p, online)
	}
	if e, _ := a.lastEvent(1); e.online {
		t.Fatalf("a's last report of user 1: %v, want offline", e)
	}
}

// kill stops a node the way kill -9 does, as far as Redis can tell: its
// loops stop, its heartbeat and mirror stay until the heartbeat expires.
func (n *testNode) kill() {
	stopped.Store(n, true)
	cluster.Kill(n.cl)
}

// TestBusAcrossNodes: pushes reach the users' connections on every node,
// except the sending connection; broadcasts skip the excepted user.
func TestBusAcrossNodes(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t)}
	a, b, c := startNode(t, "a", o), startNode(t, "b", o), startNode(t, "c", o)
	sender, sa, _ := a.connect(t, 1, "s1")
	_, sa2, _ := a.connect(t, 1, "s1b")
	_, sb, _ := b.connect(t, 1, "s2")
	_, sc, _ := c.connect(t, 2, "s3")
	eventually(t, 3*time.Second, "c sees all", placesOn(c, 1, 3))
	bus := a.cl.Bus()
	bus.Deliver([]int64{1}, []byte("im/typing;{\"n\":1}"), sender.ID())
	eventually(t, 3*time.Second, "delivered to user 1 on a and b", func() bool {
		return sa2.has("im/typing;{\"n\":1}") && sb.has("im/typing;{\"n\":1}")
	})
	if sa.has("im/typing;{\"n\":1}") || sc.has("im/typing;{\"n\":1}") {
		t.Fatal("the sending connection or another user got the push")
	}
	bus.Broadcast([]byte("im/x;|a|b|"), 0, 2)
	eventually(t, 3*time.Second, "broadcast on a and b", func() bool {
		return sa.has("im/x;|a|b|") && sb.has("im/x;|a|b|")
	})
	time.Sleep(200 * time.Millisecond)
	if sc.has("im/x;|a|b|") {
		t.Fatal("the excepted user got the broadcast")
	}
}

// TestEndSessionEverywhere: a logout on one node logs the session out on
// every node before EndSession returns; a kick closes the user's
// connections everywhere before Kick returns.
func TestEndSessionEverywhere(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t)}
	a, b, c := startNode(t, "a", o), startNode(t, "b", o), startNode(t, "c", o)
	_, _, _ = a.connect(t, 1, "gone")
	cb, _, _ := b.connect(t, 1, "gone")
	cc, _, _ := c.connect(t, 1, "gone")
	keep, _, _ := c.connect(t, 1, "kept")
	eventually(t, 3*time.Second, "a sees 4 places", placesOn(a, 1, 4))
	eventually(t, 3*time.Second, "a knows b and c", func() bool { return len(cluster.Others(a.cl)) == 2 })
	start := time.Now()
	a.view.EndSession(1, "gone")
	took := time.Since(start)
	if cb.Session() != nil || cc.Session() != nil {
		t.Fatalf("after EndSession returned (%s), the session is still on b or c", took)
	}
	if keep.Session() == nil {
		t.Fatal("another session of the user was ended")
	}
	if took > 2*time.Second {
		t.Fatalf("EndSession took %s", took)
	}
	_, sk, _ := b.connect(t, 1, "kept")
	eventually(t, 3*time.Second, "a sees c's and b's kept", func() bool { p, _ := a.view.Places(1); return p == 2 })
	n := a.view.Kick(1, []byte("im/kicked;{}"), node.CloseKicked, "kicked")
	if n != 2 {
		t.Fatalf("Kick closed %d connections, want 2", n)
	}
	if !sk.has("im/kicked;{}") || sk.closedWith() != node.CloseKicked || !keep.Closing() {
		t.Fatalf("after Kick returned: frame %v, code %d, c's closing %v", sk.has("im/kicked;{}"), sk.closedWith(), keep.Closing())
	}
}

// TestConnectionCapAcrossNodes: the per-user cap counts connections on
// every node, and a closed connection gives its slot back.
func TestConnectionCapAcrossNodes(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t), perUser: 3}
	a, b := startNode(t, "a", o), startNode(t, "b", o)
	eventually(t, 3*time.Second, "a knows b", func() bool { return len(cluster.Others(a.cl)) == 1 })
	eventually(t, 3*time.Second, "b knows a", func() bool { return len(cluster.Others(b.cl)) == 1 })
	c1, _, err := a.connect(t, 5, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.connect(t, 5, "s"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.connect(t, 5, "s"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.connect(t, 5, "s"); err != hub.ErrTooManyForUser {
		t.Fatalf("the 4th connection over two nodes: %v, want ErrTooManyForUser", err)
	}
	if _, _, err := a.connect(t, 6, "t"); err != nil {
		t.Fatalf("another user: %v", err)
	}
	c1.Close(1000, "")
	eventually(t, 3*time.Second, "the slot comes back", func() bool {
		c, _, err := b.connect(t, 5, "s")
		if err != nil {
			c.Close(1000, "")
		}
		return err == nil
	})
}

// TestConcurrentCapAcrossNodes: many logins of one user at once on three
// nodes never pass the cap.
func TestConcurrentCapAcrossNodes(t *testing.T) {
	o := nodeOpts{url: redisURL(t), prefix: uniquePrefix(t), perUser: 4}
	nodes := []*testNode{startNode(t, "a", o), startNode(t, "b", o), startNode(t, "c", o)}
	for _, n := range nodes {
		eventually(t, 3*time.Second, n.name+" knows the others", func() bool { return len(cluster.Others(n.cl)) == 2 })
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := nodes[i%3].connect(t, 11, fmt.Sprint(i)); err == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if admitted != 4 {
		t.Fatalf("%d connections admitted over three nodes, want the cap, 4", admitted)
	}
}
