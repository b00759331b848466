package boot_test

// TESTPLAN F9: a Redis outage under two real node processes.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"
)

// redisServer runs a redis-server of the test's own on port, in the
// foreground, and waits until it answers.
func redisServer(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			continue
		}
		fmt.Fprint(conn, "PING\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if strings.HasPrefix(line, "+PONG") {
			return cmd
		}
	}
	t.Fatal("redis-server did not answer")
	return nil
}

// health is GET /healthz's status and body.
func health(p ports) (int, string) {
	resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", p.http))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitHealth waits until both nodes' /healthz answer 200 with a body that
// begins with want.
func waitHealth(t *testing.T, want string, timeout time.Duration, nodes ...ports) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, p := range nodes {
		for {
			code, body := health(p)
			if code == http.StatusOK && strings.HasPrefix(body, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz on :%d: %d %q, want 200 %q...", p.http, code, body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// goroutines is a node's goroutine count from `dce websocket status`.
func goroutines(t *testing.T, dir string) int {
	t.Helper()
	stdout, stderr, code := runCLI(t, dir, nil, "websocket", "status")
	var st struct {
		Goroutines int `json:"goroutines"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil {
		t.Fatalf("status: %d %s %s", code, stdout, stderr)
	}
	return st.Goroutines
}

// TestF9RedisOutage: two nodes on PostgreSQL and a Redis of the test's
// own; ann on node a, bob on node b. Redis is killed for 5 s: both nodes
// report degraded on /healthz and keep serving; what ann sends meanwhile
// is acknowledged from the store, reaches bob across the nodes (stored
// changes travel through the store) and is in im/load on node b. When
// Redis is back, pushes that travel through it (typing) cross again
// within 5 s, /healthz says ok, neither node crashed and neither holds
// more than 100 goroutines over its count before.
func TestF9RedisOutage(t *testing.T) {
	dsn := servertest.PostgresDSN(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		servertest.Missing(t, "redis-server is not installed")
	}
	rport := servertest.FreePort(t)
	redis := redisServer(t, rport)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", rport)
	pa, pb := freePorts(t), freePorts(t)
	da, db := t.TempDir(), t.TempDir()
	a := startProcess(t, da, pa, clusterEnv(dsn, redisURL, "f9:", "a"))
	waitHealthy(t, a, pa, 30*time.Second)
	b := startProcess(t, db, pb, clusterEnv(dsn, redisURL, "f9:", "b"))
	waitHealthy(t, b, pb, 30*time.Second)
	waitHealth(t, "ok", 5*time.Second, pa, pb)

	ann, _, err := dialLoggedIn(t, pa.remote(), "websocket", "ann", "")
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := dialLoggedIn(t, pb.remote(), "tcp", "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	id := func(c *servertest.Client) int64 {
		var r struct {
			User struct {
				ID int64 `json:"id"`
			} `json:"user"`
		}
		f, err := c.Call("im/signer", nil, 5*time.Second)
		if err != nil || json.Unmarshal(f.Body, &r) != nil {
			t.Fatalf("im/signer: %v %s", err, f.Body)
		}
		return r.User.ID
	}
	annID, bobID := id(ann), id(bob)
	typing := func(within time.Duration) bool {
		bob.Drain()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			ann.Fire("im/typing", map[string]string{"to": fmt.Sprint("user:", bobID)})
			if _, ok := bob.WaitPush("im/typing", 200*time.Millisecond); ok {
				return true
			}
		}
		return false
	}
	if !typing(5 * time.Second) {
		t.Fatal("typing did not cross the nodes before the outage")
	}
	baseA, baseB := goroutines(t, da), goroutines(t, db)

	_ = redis.Process.Kill()
	_ = redis.Wait()
	down := time.Now()
	waitHealth(t, "degraded", 5*time.Second, pa, pb)

	texts := []string{"during the outage 1", "during the outage 2", "during the outage 3"}
	for _, text := range texts {
		if f, err := ann.Call("im/send", map[string]string{"to": "room:lobby", "text": text}, 5*time.Second); err != nil || f.ErrorCode() != "" {
			t.Fatalf("a lobby send while Redis is down: %v %s", err, f)
		}
	}
	if f, err := ann.Call("im/send", map[string]string{"to": fmt.Sprint("user:", bobID), "text": "private, outage"}, 5*time.Second); err != nil || f.ErrorCode() != "" {
		t.Fatalf("a private send while Redis is down: %v %s", err, f)
	}
	pushed := map[string]bool{}
	for deadline := time.Now().Add(5 * time.Second); len(pushed) < len(texts)+1 && time.Now().Before(deadline); {
		if f, ok := bob.WaitPush("im/message", time.Until(deadline)); ok {
			var m struct {
				Text string `json:"text"`
			}
			_ = json.Unmarshal(f.Body, &m)
			pushed[m.Text] = true
		}
	}
	if len(pushed) != len(texts)+1 {
		t.Fatalf("bob on node b got %v of the messages sent on node a during the outage", pushed)
	}
	load := func(with string) string {
		f, err := bob.Call("im/load", map[string]any{"with": with, "limit": 50}, 5*time.Second)
		if err != nil || f.ErrorCode() != "" {
			t.Fatalf("im/load %s on node b: %v %s", with, err, f)
		}
		return string(f.Body)
	}
	for _, text := range texts {
		if !strings.Contains(load("room:lobby"), text) {
			t.Fatalf("im/load of the lobby on node b lacks %q", text)
		}
	}
	if !strings.Contains(load(fmt.Sprint("user:", annID)), "private, outage") {
		t.Fatal("im/load of the private chat on node b lacks the message sent during the outage")
	}
	if code, body := health(pa); code != http.StatusOK || !strings.HasPrefix(body, "degraded") {
		t.Fatalf("/healthz on node a during the outage: %d %q", code, body)
	}

	time.Sleep(time.Until(down.Add(5 * time.Second)))
	redis = redisServer(t, rport)
	back := time.Now()
	if !typing(5 * time.Second) {
		t.Fatal("typing did not cross the nodes within 5 s of Redis coming back")
	}
	t.Logf("F9: cross-node pushes resumed %s after Redis came back", time.Since(back).Round(10*time.Millisecond))
	waitHealth(t, "ok", 5*time.Second, pa, pb)
	if a.exited() || b.exited() {
		t.Fatalf("a node exited: a %v, b %v", a.exited(), b.exited())
	}
	if ga, gb := goroutines(t, da), goroutines(t, db); ga > baseA+100 || gb > baseB+100 {
		t.Fatalf("goroutines after the outage: a %d (before %d), b %d (before %d)", ga, baseA, gb, baseB)
	}
}
