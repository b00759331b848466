package boot_test

// The real program as a process: TestMain builds it once, and each test runs
// it with its own runtime folder and free ports on 127.0.0.1. Covered here:
// TESTPLAN F1 (kill -9 mid-load, three kill points), F3 (graceful stop
// under load, by `dce websocket stop` and by SIGTERM), and the command line
// (help, status, reload, a busy port, -daemon and stop, the control
// socket's mode, A13).

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/node"
	"dce/app/servertest"

	_ "modernc.org/sqlite"
)

// dceBinary is the program under test, built by TestMain.
var dceBinary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dce-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Another user (A13's nobody) must be able to run the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dceBinary = filepath.Join(dir, "dce")
	build := exec.Command("go", "build", "-o", dceBinary, "./app")
	build.Dir = filepath.Join("..", "..") // the module root, from app/boot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the dce binary: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// ports are a server's three ports.
type ports struct{ http, tcp, udp int }

// freePorts picks three ports that were free a moment ago.
func freePorts(t *testing.T) ports {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	return ports{http: servertest.FreePort(t), tcp: servertest.FreePort(t), udp: udp.LocalAddr().(*net.UDPAddr).Port}
}

func (p ports) args() []string {
	return []string{"-host", "127.0.0.1", "-port", strconv.Itoa(p.http), "-tcp_port", strconv.Itoa(p.tcp),
		"-udp_port", strconv.Itoa(p.udp)}
}

// remote is a client-side view of the server on p.
func (p ports) remote() *servertest.Server {
	return servertest.Remote(fmt.Sprintf("127.0.0.1:%d", p.http), fmt.Sprintf("127.0.0.1:%d", p.tcp),
		fmt.Sprintf("127.0.0.1:%d", p.udp))
}

// processEnv is the environment of every process a test runs: no DCE_*
// setting of the caller's, the runtime folder, cheap password hashing (the
// server warns about it) and room for many registrations from 127.0.0.1.
func processEnv(runtimeDir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCE_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "DCE_SERVER_RUNTIME_DIR="+runtimeDir, "DCE_AUTH_ARGON_MEMORY_KIB=1024",
		"DCE_AUTH_ARGON_TIME=1", "DCE_AUTH_HASH_WAIT=5s", "DCE_LIMITS_REGISTRATIONS_PER_ADDRESS_HOUR=100000",
		"DCE_SERVER_LOG_LEVEL=warn"), extra...)
}

// process is a running `dce websocket start`.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *servertest.LogBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// startProcess runs `dce websocket start` on p with the runtime folder dir.
// It is killed when the test ends, if it is still running.
func startProcess(t *testing.T, dir string, p ports, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(dceBinary, append(append([]string{"websocket", "start"}, p.args()...), args...)...)
	cmd.Env, cmd.Dir = processEnv(dir, env...), dir
	out := &servertest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	proc := &process{t: t, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { proc.err = cmd.Wait(); close(proc.done) }()
	t.Cleanup(func() {
		if !proc.exited() {
			_ = cmd.Process.Kill()
			<-proc.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	return proc
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to timeout for the process to exit.
func (p *process) waitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// waitHealthy polls GET /healthz until it answers 200, and returns how long
// that took; it fails the test if the process exits or timeout passes.
func waitHealthy(t *testing.T, proc *process, p ports, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", p.http)
	for time.Since(start) < timeout {
		if proc != nil && proc.exited() {
			t.Fatalf("the server exited at start: %v\n%s", proc.err, proc.out.String())
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the server was not healthy within %v", timeout)
	return 0
}

// runCLI runs the binary to completion with args and returns its output
// and exit code.
func runCLI(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLIEnv(t, dir, processEnv(dir, env...), args...)
}

// openStore opens the server's database read-only, after the server has
// stopped.
func openStore(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "dce.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func integrityCheck(t *testing.T, db *sql.DB) string {
	t.Helper()
	var result string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&result); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	return result
}

// storedMessage is a message as the store holds it.
type storedMessage struct {
	ID   int64
	TS   int64
	Text string
	CID  string
}

// storedByCID reads every message that has a cid, and counts cids seen
// more than once.
func storedByCID(t *testing.T, db *sql.DB) (map[string]storedMessage, int) {
	t.Helper()
	rows, err := db.Query(`SELECT id, ts, text, cid FROM messages WHERE cid IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out, dup := map[string]storedMessage{}, 0
	for rows.Next() {
		var m storedMessage
		if err := rows.Scan(&m.ID, &m.TS, &m.Text, &m.CID); err != nil {
			t.Fatal(err)
		}
		if _, ok := out[m.CID]; ok {
			dup++
		}
		out[m.CID] = m
	}
	return out, dup
}

// sendReply is im/send's result.
type sendReply struct {
	ID  int64  `json:"id"`
	TS  int64  `json:"ts"`
	CID string `json:"cid"`
}

// dialLoggedIn opens a client on transport ("websocket" or "tcp") and logs
// it in: a WebSocket with a sid resumes it with ?sid=, anything else logs in
// with the password. Pushes are dropped. It returns the sid.
func dialLoggedIn(t *testing.T, remote *servertest.Server, transport, nickname, sid string) (*servertest.Client, string, error) {
	var c *servertest.Client
	var err error
	if transport == "websocket" {
		query := ""
		if sid != "" {
			query = "sid=" + sid
		}
		c, err = remote.DialWSPushes(t, query, nil)
	} else {
		c, err = remote.DialTCPPushes(t, nil)
	}
	if err != nil {
		return nil, "", err
	}
	if transport == "websocket" && sid != "" {
		f, err := c.Call("im/signer", nil, 5*time.Second)
		if err != nil || !strings.Contains(string(f.Body), `"nickname":"`+nickname+`"`) {
			return nil, "", fmt.Errorf("resume %s by ?sid=: %v %s", nickname, err, f.Body)
		}
		return c, sid, nil
	}
	f, err := c.Call("im/login", map[string]string{"nickname": nickname, "password": "password1"}, 10*time.Second)
	var r struct {
		SID string `json:"sid"`
	}
	if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil {
		return nil, "", fmt.Errorf("login %s: %v %s", nickname, err, f.Body)
	}
	return c, r.SID, nil
}

// F1: 100 clients (half WebSocket, half TCP) × 100 lobby sends with unique
// cids; kill -9 at three kill points (20-40 %, 40-60 %, 60-80 % of the
// sends acknowledged), restart on the same files, resend the last
// acknowledged cid (same reply expected) and everything unacknowledged with
// its original cid, then check the store through im/load and directly:
// nothing acknowledged is lost or changed, no cid is stored twice, and the
// file is intact. Along the way every client edits every tenth message it
// sent and deletes every tenth other one, waiting for each reply: every
// acknowledged edit and deletion must have survived too (one in flight at
// the kill may or may not have). Under the race detector the clients are
// 50 × 60.
func TestF1KillMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	seed := time.Now().UnixNano()
	t.Logf("F1: seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	for run := 1; run <= 3; run++ {
		low := 20 + 20*(run-1)
		killPercent := low + rng.IntN(20)
		t.Run(fmt.Sprintf("run%d", run), func(t *testing.T) { f1Run(t, run, killPercent) })
	}
}

func f1Run(t *testing.T, run, killPercent int) {
	clients, perClient := 100, 100
	if raceEnabled { // the clients, not the server, run under the detector: fewer of them
		clients, perClient = 50, 60
	}
	total := clients * perClient
	dir, p := t.TempDir(), freePorts(t)
	env := []string{"DCE_LIMITS_MESSAGES_PER_SECOND=1000000", "DCE_LIMITS_MESSAGE_BURST=1000000"}
	proc := startProcess(t, dir, p, env)
	waitHealthy(t, proc, p, 10*time.Second)
	remote := p.remote()

	transport := func(i int) string {
		if i%2 == 0 {
			return "websocket"
		}
		return "tcp"
	}
	nick := func(i int) string { return fmt.Sprintf("f1-%d", i) }
	cid := func(i, n int) string { return fmt.Sprintf("f1-%d-%d-%d", run, i, n) }
	text := func(i, n int) string { return fmt.Sprintf("message %d of client %d, run %d", n, i, run) }

	conns := make([]*servertest.Client, clients)
	sids := make([]string, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sem := make(chan struct{}, 8) // at most 8 anonymous connections at once
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, sid, err := dialLoggedIn(t, remote, transport(i), nick(i), "")
			conns[i], sids[i] = c, sid
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The load: every client sends its messages one after another; the
	// server is killed once killAt of them have been acknowledged.
	killAt := total * killPercent / 100
	var ackedCount atomic.Int64
	acked := make([]map[int]sendReply, clients) // per client: n -> reply
	// Per client: n -> the change acknowledged ("edited" or "deleted"),
	// and the one in flight at the kill, if any.
	changed := make([]map[int]string, clients)
	inFlight := make([]map[int]bool, clients)
	next := make([]int, clients) // per client: the first n not acknowledged
	killed := make(chan struct{})
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			_ = proc.cmd.Process.Signal(syscall.SIGKILL)
			close(killed)
		})
	}
	for i := range clients {
		acked[i] = map[int]sendReply{}
		changed[i], inFlight[i] = map[int]string{}, map[int]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perClient {
				f, err := conns[i].Call("im/send", map[string]string{"to": "room:lobby", "text": text(i, n), "cid": cid(i, n)}, 10*time.Second)
				var r sendReply
				if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil {
					return // the server is gone: this send is unacknowledged
				}
				acked[i][n], next[i] = r, n+1
				if ackedCount.Add(1) >= int64(killAt) {
					kill()
				}
				if n%10 == 3 || n%10 == 7 { // change a message sent a little earlier
					change, path, body := "edited", "im/edit", map[string]any{"id": acked[i][n-2].ID, "text": editedText(i, n-2)}
					if n%10 == 7 {
						change, path, body = "deleted", "im/delete", map[string]any{"id": acked[i][n-2].ID}
					}
					inFlight[i][n-2] = true
					f, err := conns[i].Call(path, body, 10*time.Second)
					if err != nil || f.ErrorCode() != "" {
						return // the server is gone: this change is unacknowledged
					}
					delete(inFlight[i], n-2)
					changed[i][n-2] = change
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("every client stopped before the kill point (%d acknowledged)\n%s", ackedCount.Load(), proc.out.String())
	}
	if !proc.waitExit(5 * time.Second) {
		t.Fatal("the server did not die of SIGKILL")
	}
	killedAtMS := time.Now().UnixMilli()
	ackedBeforeKill := int(ackedCount.Load())
	for _, c := range conns {
		c.Close()
	}

	// Restart on the same runtime folder and ports.
	proc2 := startProcess(t, dir, p, env)
	restart := waitHealthy(t, proc2, p, 10*time.Second)

	// Every client comes back (WebSocket by ?sid=, TCP by password), sends
	// its last acknowledged cid again (it must get the same reply), then
	// everything it has no acknowledgement for, with the original cids.
	var resent, committedUnacked atomic.Int64 // sends after the restart; those the crash had stored unanswered
	errs = make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			c, _, err := dialLoggedIn(t, remote, transport(i), nick(i), sids[i])
			<-sem
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			if n := next[i] - 1; n >= 0 {
				f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "text": text(i, n), "cid": cid(i, n)}, 10*time.Second)
				var r sendReply
				if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil {
					errs <- fmt.Errorf("resend of acknowledged %s: %v %s", cid(i, n), err, f.Body)
					return
				}
				if r != acked[i][n] {
					errs <- fmt.Errorf("resend of acknowledged %s replied %+v, first reply %+v", cid(i, n), r, acked[i][n])
				}
			}
			for n := next[i]; n < perClient; n++ {
				f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "text": text(i, n), "cid": cid(i, n)}, 10*time.Second)
				var r sendReply
				if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil {
					errs <- fmt.Errorf("send %s after the restart: %v %s", cid(i, n), err, f.Body)
					return
				}
				acked[i][n] = r
				resent.Add(1)
				if r.TS < killedAtMS { // stored before the crash: the reply is the original one
					committedUnacked.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A reader pages through the lobby with im/load.
	type loaded struct {
		ID      int64  `json:"id"`
		TS      int64  `json:"ts"`
		Text    string `json:"text"`
		CID     string `json:"cid"`
		Edited  bool   `json:"edited"`
		Deleted bool   `json:"deleted"`
	}
	seen := map[string]loaded{}
	ids := map[int64]bool{}
	dup := 0
	for before := int64(0); ; { // newest page first, then older ones
		body := map[string]any{"with": "room:lobby", "limit": 100}
		if before > 0 {
			body["before"] = before
		}
		f, err := conns[0].Call("im/load", body, 10*time.Second)
		var page struct {
			Messages []loaded `json:"messages"`
			More     bool     `json:"more"`
		}
		if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &page) != nil {
			t.Fatalf("im/load before %d: %v %s", before, err, f.Body)
		}
		for _, m := range page.Messages {
			if _, ok := seen[m.CID]; ok || ids[m.ID] {
				dup++
			}
			seen[m.CID], ids[m.ID] = m, true
		}
		if !page.More || len(page.Messages) == 0 {
			break
		}
		before = page.Messages[0].ID
	}
	lost, changes := 0, 0
	for i := range clients {
		for n := range perClient {
			r, ok := acked[i][n]
			m, found := seen[cid(i, n)]
			// What the message must read now: as sent, edited or deleted
			// if that was acknowledged, any of the two if it was in flight.
			asSent := m.Text == text(i, n) && !m.Edited && !m.Deleted
			asEdited := m.Text == editedText(i, n) && m.Edited && !m.Deleted
			asDeleted := m.Text == "" && m.Deleted
			var right bool
			switch changed[i][n] {
			case "edited":
				right, changes = asEdited, changes+1
			case "deleted":
				right, changes = asDeleted, changes+1
			default:
				right = asSent || inFlight[i][n] && (asEdited || asDeleted)
			}
			if !ok || !found || m.ID != r.ID || m.TS != r.TS || !right {
				lost++
				if lost <= 5 {
					t.Errorf("%s: acknowledged %+v (%v), loaded %+v (%v)", cid(i, n), r, ok, m, found)
				}
			}
		}
	}
	if len(seen) != total {
		t.Errorf("the lobby holds %d messages, want %d", len(seen), total)
	}

	// Stop, then check the file itself.
	_ = proc2.cmd.Process.Signal(syscall.SIGTERM)
	if !proc2.waitExit(10 * time.Second) {
		t.Fatal("the restarted server did not stop on SIGTERM")
	}
	db := openStore(t, dir)
	integrity := integrityCheck(t, db)
	stored, storedDup := storedByCID(t, db)
	t.Logf("F1: run=%d kill_at=%d acked=%d changes_acked=%d resent=%d lost=%d dup=%d restart_ms=%d committed_unacked=%d integrity=%s",
		run, killAt, ackedBeforeKill, changes, resent.Load(), lost, dup+storedDup, restart.Milliseconds(), committedUnacked.Load(), integrity)
	if changes == 0 {
		t.Error("no edit or deletion was acknowledged before the kill")
	}
	if integrity != "ok" {
		t.Errorf("integrity_check: %s", integrity)
	}
	if lost != 0 || dup != 0 || storedDup != 0 || len(stored) != total {
		t.Errorf("lost %d, duplicated %d (load) and %d (store), the store holds %d cids, want %d", lost, dup, storedDup, len(stored), total)
	}
	if restart > 5*time.Second {
		t.Errorf("restart to healthy took %v, over 5 s", restart)
	}
}

// editedText is what F1's edit of message n of client i makes it read.
func editedText(i, n int) string { return fmt.Sprintf("message %d of client %d, edited", n, i) }

// F3: graceful stop under load, by `dce websocket stop` and by SIGTERM.
func TestF3GracefulStopUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	for _, how := range []string{"stop command", "SIGTERM"} {
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) { f3Run(t, how) })
	}
}

func f3Run(t *testing.T, how string) {
	const (
		readers = 40
		senders = 10
	)
	dir, p := t.TempDir(), freePorts(t)
	env := []string{"DCE_LIMITS_MESSAGES_PER_SECOND=1000", "DCE_LIMITS_MESSAGE_BURST=1000"}
	proc := startProcess(t, dir, p, env)
	waitHealthy(t, proc, p, 10*time.Second)
	remote := p.remote()

	clients := make([]*servertest.Client, readers)
	for i := range readers {
		c, _, err := dialLoggedIn(t, remote, "websocket", fmt.Sprintf("f3-%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	// Senders are the first readers: each sends as fast as it is answered.
	var mu sync.Mutex
	acked := map[string]sendReply{}
	texts := map[string]string{}
	var wg sync.WaitGroup
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				cid, text := fmt.Sprintf("f3-%d-%d", k, n), fmt.Sprintf("message %d from %d", n, k)
				f, err := clients[k].Call("im/send", map[string]string{"to": "room:lobby", "text": text, "cid": cid}, 10*time.Second)
				var r sendReply
				if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil {
					return // the server is stopping
				}
				mu.Lock()
				acked[cid], texts[cid] = r, text
				mu.Unlock()
			}
		}()
	}
	loadStart := time.Now()
	servertest.Eventually(t, 10*time.Second, "a second of load", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200 && time.Since(loadStart) >= time.Second
	})

	stopAt := time.Now()
	switch how {
	case "stop command":
		if out, errOut, code := runCLI(t, dir, nil, "websocket", "stop"); code != 0 {
			t.Fatalf("dce websocket stop: exit %d\n%s%s", code, out, errOut)
		}
	case "SIGTERM":
		_ = proc.cmd.Process.Signal(syscall.SIGTERM)
	}
	// Every client is told 1001 within 5 s of the stop.
	closedBy := make([]time.Duration, readers)
	for i, c := range clients {
		if !c.WaitClosed(5*time.Second - time.Since(stopAt)) {
			t.Errorf("client %d not closed within 5 s of the stop", i)
			continue
		}
		closedBy[i] = time.Since(stopAt)
		if code := c.WSCloseCode(); code != 1001 {
			t.Errorf("client %d closed with %d, want 1001", i, code)
		}
	}
	exited := proc.waitExit(10*time.Second - time.Since(stopAt))
	exitAfter := time.Since(stopAt)
	wg.Wait()
	if !exited {
		t.Fatalf("the process had not exited 10 s after the stop")
	}
	if proc.err != nil {
		t.Errorf("the process exited with %v", proc.err)
	}
	for _, name := range []string{"dce.sock", "dce.pid"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after the stop (%v)", name, err)
		}
	}
	db := openStore(t, dir)
	stored, dup := storedByCID(t, db)
	missing := 0
	mu.Lock()
	for cid, r := range acked {
		m, ok := stored[cid]
		if !ok || m.ID != r.ID || m.TS != r.TS || m.Text != texts[cid] {
			missing++
		}
	}
	mu.Unlock()
	var slowest time.Duration
	for _, d := range closedBy {
		slowest = max(slowest, d)
	}
	t.Logf("F3: how=%q acked=%d missing=%d dup=%d clients=%d last_close_ms=%d exit_ms=%d integrity=%s",
		how, len(acked), missing, dup, readers, slowest.Milliseconds(), exitAfter.Milliseconds(), integrityCheck(t, db))
	if missing != 0 || dup != 0 {
		t.Errorf("%d acknowledged messages are not in the store as acknowledged; %d cids stored twice", missing, dup)
	}
}

// `dce help` lists every node with the transports it serves.
func TestCLIHelpListsEveryNode(t *testing.T) {
	out, errOut, code := runCLI(t, t.TempDir(), nil, "help")
	if code != 0 {
		t.Fatalf("dce help: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	for _, n := range boot.NodeTable(nil, nil) {
		path := n.Path
		if n.Methods == node.CLI {
			path = "dce " + strings.ReplaceAll(n.Path, "/", " ")
		}
		found := false
		for _, line := range lines {
			fields := strings.Fields(line)
			if strings.HasPrefix(line, path+" ") && len(fields) > len(strings.Fields(path)) &&
				fields[len(strings.Fields(path))] == n.Methods.String() {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("dce help has no line for %s with transports %s:\n%s", path, n.Methods, out)
		}
	}
}

// A busy port makes start fail at once, naming the port, with a non-zero
// exit status.
func TestCLIBusyPortFailsAtOnce(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := freePorts(t)
	p.http = busy.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	start := time.Now()
	out, errOut, code := runCLI(t, dir, nil, append([]string{"websocket", "start"}, p.args()...)...)
	elapsed := time.Since(start)
	t.Logf("busy port %d: exit %d after %v: %s", p.http, code, elapsed.Round(time.Millisecond), strings.TrimSpace(errOut))
	if code == 0 {
		t.Errorf("start on a busy port exited 0\n%s%s", out, errOut)
	}
	if elapsed > 2*time.Second {
		t.Errorf("start on a busy port took %v to fail, want < 2 s", elapsed)
	}
	if !strings.Contains(out+errOut, strconv.Itoa(p.http)) {
		t.Errorf("the message does not name port %d:\n%s%s", p.http, out, errOut)
	}
}

// pidGone reports whether pid has exited (a zombie waiting for its parent
// counts as exited).
func pidGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces, so look after the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// The command line against a server started with -daemon: status, the
// control socket's mode (and A13: another user is refused), reload
// changing a limit live, and stop.
func TestCLIDaemonStatusReloadStop(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "runtime")
	if err := os.Mkdir(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// Others may pass through the folders to the socket, so that only the
	// socket's own mode can refuse them (A13).
	for _, d := range []string{filepath.Dir(base), base, dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	configFile := filepath.Join(base, "dce.toml")
	writeConfig := func(textMax int) {
		t.Helper()
		if err := os.WriteFile(configFile, []byte(fmt.Sprintf("[limits]\ntext_max = %d\n", textMax)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(20)
	p := freePorts(t)

	out, errOut, code := runCLI(t, dir, nil, append(append([]string{"websocket", "start"}, p.args()...), "-config", configFile, "-daemon")...)
	if code != 0 {
		t.Fatalf("start -daemon: exit %d\n%s%s", code, out, errOut)
	}
	var pid int
	if i := strings.Index(out, "pid "); i < 0 {
		t.Fatalf("start -daemon printed no pid: %q", out)
	} else if _, err := fmt.Sscanf(out[i:], "pid %d", &pid); err != nil || pid <= 0 {
		t.Fatalf("start -daemon printed no pid: %q", out)
	}
	t.Cleanup(func() {
		if !pidGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	waitHealthy(t, nil, p, 10*time.Second)

	// A client, logged in, so that status has something to count.
	remote := p.remote()
	c, _, err := dialLoggedIn(t, remote, "websocket", "cli-user", "")
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, code = runCLI(t, dir, nil, "websocket", "status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	var status map[string]any
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	figure := map[string]float64{}
	for _, key := range []string{"pid", "uptime_s", "connections", "online_users", "messages_per_s", "rss_bytes"} {
		v, ok := status[key].(float64)
		if !ok {
			t.Errorf("status has no number %q: %s", key, out)
		}
		figure[key] = v
	}
	if int(figure["pid"]) != pid || figure["connections"] < 1 || figure["online_users"] < 1 || figure["rss_bytes"] <= 0 ||
		figure["uptime_s"] < 0 || figure["messages_per_s"] < 0 {
		t.Errorf("status figures are off (daemon pid %d, one client online): %s", pid, out)
	}

	// The control socket: a socket, mode 0600.
	info, err := os.Stat(filepath.Join(dir, "dce.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", info.Mode())
	}
	// A13: another user is refused by the socket's mode.
	t.Run("A13_nobody_refused", func(t *testing.T) {
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			servertest.Missing(t, "no runuser on this machine")
		}
		if _, err := user.Lookup("nobody"); err != nil || os.Geteuid() != 0 {
			servertest.Missing(t, "needs root and a nobody user")
		}
		cmd := exec.Command(runuser, "-u", "nobody", "--", dceBinary, "websocket", "status")
		cmd.Env, cmd.Dir = processEnv(dir), "/"
		got, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("nobody got the status:\n%s", got)
		}
		if !strings.Contains(string(got), "dce.sock") || !strings.Contains(string(got), "permission denied") {
			t.Errorf("nobody was refused, but not for the socket's permissions: %v\n%s", err, got)
		}
		// The control: with the socket opened up, the same command works,
		// so the mode alone refused it above.
		sock := filepath.Join(dir, "dce.sock")
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(sock, 0o600)
		cmd = exec.Command(runuser, "-u", "nobody", "--", dceBinary, "websocket", "status")
		cmd.Env, cmd.Dir = processEnv(dir), "/"
		if got, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("with the socket at 0666 nobody still cannot get the status (%v), so the test proves nothing:\n%s", err, got)
		}
	})

	// Reload: a text over the limit is refused; after the file raises the
	// limit and `reload`, the same text is accepted.
	long := strings.Repeat("y", 50)
	if f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "text": long}, 5*time.Second); err != nil || f.ErrorCode() != "too_large" {
		t.Fatalf("a 50-character text with text_max 20: %v %s", err, f.Body)
	}
	writeConfig(100)
	if out, errOut, code := runCLI(t, dir, nil, "websocket", "reload"); code != 0 {
		t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
	}
	if f, err := c.Call("im/send", map[string]string{"to": "room:lobby", "text": long}, 5*time.Second); err != nil || f.ErrorCode() != "" {
		t.Fatalf("a 50-character text after raising text_max to 100 and reloading: %v %s", err, f.Body)
	}

	// Stop: the daemon exits; the socket and the pid file go.
	if out, errOut, code := runCLI(t, dir, nil, "websocket", "stop"); code != 0 {
		t.Fatalf("stop: exit %d\n%s%s", code, out, errOut)
	}
	if !c.WaitClosed(5 * time.Second) {
		t.Error("the client was not closed by the stop")
	} else if code := c.WSCloseCode(); code != 1001 {
		t.Errorf("the client was closed with %d, want 1001", code)
	}
	servertest.Eventually(t, 10*time.Second, "the daemon to exit", func() bool { return pidGone(pid) })
	for _, name := range []string{"dce.sock", "dce.pid"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after stop (%v)", name, err)
		}
	}
	if _, errOut, code := runCLI(t, dir, nil, "websocket", "status"); code == 0 {
		t.Errorf("status answered after stop: %s", errOut)
	}
}
