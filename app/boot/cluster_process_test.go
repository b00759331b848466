package boot_test

// Several nodes as processes (PROTOCOL.md section 8, TESTPLAN F-rows for
// several nodes): real binaries on one PostgreSQL database and one Redis.

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"dce/app/servertest"
)

// clusterEnv is the environment of a node of the cluster on dsn and redis.
func clusterEnv(dsn, redisURL, prefix, node string) []string {
	return []string{"DCE_STORE_DRIVER=postgres", "DCE_STORE_DSN=" + dsn, "DCE_REDIS_URL=" + redisURL,
		"DCE_REDIS_PREFIX=" + prefix, "DCE_SERVER_NODE=" + node, "DCE_SESSION_PRESENCE_GRACE=500ms"}
}

// A node killed with -9: its users show offline on the other node within
// 10 s, and a client that reconnects to the other node resumes its session
// and finds, through im/sync, every message sent meanwhile.
func TestClusterNodeKilled(t *testing.T) {
	dsn := servertest.PostgresDSN(t)
	redisURL, prefix := servertest.RedisURL(t)
	pa, pb := freePorts(t), freePorts(t)
	a := startProcess(t, t.TempDir(), pa, clusterEnv(dsn, redisURL, prefix, "a"))
	waitHealthy(t, a, pa, 30*time.Second)
	b := startProcess(t, t.TempDir(), pb, clusterEnv(dsn, redisURL, prefix, "b"))
	waitHealthy(t, b, pb, 30*time.Second)

	watcher, _, err := dialLoggedIn(t, pb.remote(), "websocket", "watcher", "")
	if err != nil {
		t.Fatal(err)
	}
	victim, sid, err := dialLoggedIn(t, pa.remote(), "tcp", "victim", "")
	if err != nil {
		t.Fatal(err)
	}
	var signer struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	f, err := victim.Call("im/signer", nil, 5*time.Second)
	if err != nil || json.Unmarshal(f.Body, &signer) != nil || signer.User.ID == 0 {
		t.Fatalf("im/signer: %v %s", err, f.Body)
	}
	victimID := signer.User.ID
	if _, ok := watcher.WaitMatch(10*time.Second, presenceOf(victimID, true)); !ok {
		t.Fatal("the watcher on node b never saw the victim on node a come online")
	}
	f, err = victim.Call("im/send", map[string]string{"to": "room:lobby", "text": "before the kill"}, 5*time.Second)
	if err != nil || f.ErrorCode() != "" {
		t.Fatalf("send on node a: %v %s", err, f)
	}
	var before struct {
		Seq int64 `json:"seq"`
	}
	var last int64
	if m, ok := watcher.WaitPush("im/message", 5*time.Second); ok && json.Unmarshal(m.Body, &before) == nil {
		last = before.Seq
	}

	killed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.waitExit(10 * time.Second)
	for i := range 3 {
		f, err := watcher.Call("im/send", map[string]string{"to": "room:lobby", "text": fmt.Sprint("while a was down ", i)}, 5*time.Second)
		if err != nil || f.ErrorCode() != "" {
			t.Fatalf("send on node b after the kill: %v %s", err, f)
		}
	}
	if _, ok := watcher.WaitMatch(10*time.Second, presenceOf(victimID, false)); !ok {
		t.Fatalf("the victim still showed online on node b %v after node a was killed", time.Since(killed))
	}
	t.Logf("offline on node b %v after the kill", time.Since(killed).Round(time.Millisecond))

	again, _, err := dialLoggedIn(t, pb.remote(), "websocket", "victim", sid)
	if err != nil {
		t.Fatalf("the victim's session on node b: %v", err)
	}
	f, err = again.Call("im/sync", map[string]any{"since": last}, 5*time.Second)
	if err != nil || f.ErrorCode() != "" {
		t.Fatalf("im/sync on node b: %v %s", err, f)
	}
	for i := range 3 {
		if want := fmt.Sprint("while a was down ", i); !strings.Contains(string(f.Body), want) {
			t.Errorf("im/sync since %d on node b lacks %q: %s", last, want, f.Body)
		}
	}
}

// presenceOf matches an im/presence push of user going online or offline.
func presenceOf(user int64, online bool) func(servertest.Frame) bool {
	return func(f servertest.Frame) bool {
		if f.Path != "im/presence" {
			return false
		}
		var p struct {
			User struct {
				ID int64 `json:"id"`
			} `json:"user"`
			Online bool `json:"online"`
		}
		return json.Unmarshal(f.Body, &p) == nil && p.User.ID == user && p.Online == online
	}
}

// An unreachable store or Redis at start stops the node, naming it.
func TestClusterUnreachableEnginesStopStart(t *testing.T) {
	dsn := servertest.PostgresDSN(t)
	redisURL, prefix := servertest.RedisURL(t)
	dead := fmt.Sprintf("127.0.0.1:%d", servertest.FreePort(t))
	for _, c := range []struct {
		name  string
		env   []string
		names []string
	}{
		{"postgres", clusterEnv("postgres://dce@"+dead+"/dce", redisURL, prefix, "n"), []string{"store", dead}},
		{"redis", clusterEnv(dsn, "redis://"+dead+"/0", prefix, "n"), []string{"redis", dead}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			start := time.Now()
			_, stderr, code := runCLI(t, dir, c.env, append([]string{"websocket", "start"}, freePorts(t).args()...)...)
			if code != 1 {
				t.Fatalf("exit status %d, want 1; stderr:\n%s", code, stderr)
			}
			for _, n := range c.names {
				if !strings.Contains(stderr, n) {
					t.Errorf("the message does not name %q:\n%s", n, stderr)
				}
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("start took %v to give up", d)
			}
		})
	}
}
