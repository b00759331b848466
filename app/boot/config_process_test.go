package boot_test

// The configuration through the real program: TESTPLAN A18 (every bad
// setting stops start at once, named, with nothing written), reload's
// reply naming what needs a restart, and `dce user admin -config` working
// on the running server's store.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"
)

// withoutEnv is env without the variables named.
func withoutEnv(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// A18: each bad setting, from the file, the environment or the flags,
// makes `dce websocket start` exit non-zero within 5 s with a message that
// names it, and leaves no database behind.
func TestA18BadConfigurationStopsStart(t *testing.T) {
	cases := []struct {
		name  string
		file  string   // config file text ("": none)
		env   []string // extra variables
		args  []string // extra flags
		names []string // what the message must name
	}{
		{name: "unknown section", file: "[cache]\naddr = \"127.0.0.1:6379\"\n", names: []string{"[cache]"}},
		{name: "misspelt redis key", file: "[redis]\naddr = \"127.0.0.1:6379\"\n", names: []string{"redis.addr"}},
		{name: "misspelt key", file: "[limits]\nmessage_per_second = 50\n", names: []string{"limits.message_per_second"}},
		{name: "misspelt variable", env: []string{"DCE_LIMITS_MESSAGE_PER_SECOND=50"}, names: []string{"DCE_LIMITS_MESSAGE_PER_SECOND"}},
		{name: "postgres without its dsn and redis", env: []string{"DCE_STORE_DRIVER=postgres"}, names: []string{"store.dsn", "DCE_STORE_DRIVER", "redis.url"}},
		{name: "unknown driver", env: []string{"DCE_STORE_DRIVER=mysql"}, names: []string{"store.driver", "DCE_STORE_DRIVER", "mysql"}},
		{name: "log level", file: "[server]\nlog_level = \"debgu\"\n", names: []string{"server.log_level", "debgu"}},
		{name: "log format", env: []string{"DCE_SERVER_LOG_FORMAT=xml"}, names: []string{"server.log_format", "DCE_SERVER_LOG_FORMAT"}},
		{name: "lifetime 0", file: "[session]\nlifetime = \"0s\"\n", names: []string{"session.lifetime"}},
		{name: "synchronous", env: []string{"DCE_STORE_SYNCHRONOUS=OFF"}, names: []string{"store.synchronous"}},
		{name: "negative cap", env: []string{"DCE_LIMITS_CONNECTIONS_PER_USER=-1"}, names: []string{"limits.connections_per_user"}},
		{name: "unknown flag", args: []string{"-prot", "1"}, names: []string{"-prot"}},
		{name: "port out of range", args: []string{"-udp_port", "70000"}, names: []string{"server.udp_port", "-udp_port"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := append([]string{"websocket", "start"}, freePorts(t).args()...)
			if c.file != "" {
				file := filepath.Join(t.TempDir(), "dce.toml")
				if err := os.WriteFile(file, []byte(c.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-config", file)
			}
			args = append(args, c.args...)
			start := time.Now()
			// The file's log level must not be overridden by the tests' own.
			env := withoutEnv(processEnv(dir, c.env...), "DCE_SERVER_LOG_LEVEL")
			out, errOut, code := runCLIEnv(t, dir, env, args...)
			elapsed := time.Since(start)
			t.Logf("%s: exit %d after %v: %s", c.name, code, elapsed.Round(time.Millisecond), strings.TrimSpace(errOut))
			if code == 0 {
				t.Fatalf("start exited 0\n%s%s", out, errOut)
			}
			if elapsed > 5*time.Second {
				t.Errorf("start took %v to refuse, want <= 5 s", elapsed)
			}
			for _, name := range c.names {
				if !strings.Contains(out+errOut, name) {
					t.Errorf("the message does not name %q:\n%s%s", name, out, errOut)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "dce.db")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a database was created under a refused configuration (%v)", err)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
				t.Errorf("the runtime folder is not empty after a refused start: %v %v", entries, err)
			}
		})
	}
}

// runCLIEnv is runCLI with exactly the environment env.
func runCLIEnv(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dceBinary, args...)
	cmd.Env, cmd.Dir = env, dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("dce %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// reloadReply is `dce websocket reload`'s answer.
type reloadReply struct {
	Reloaded      bool     `json:"reloaded"`
	Applied       []string `json:"applied"`
	RestartNeeded []string `json:"restart_needed"`
}

// Reload through the real control socket: the connection caps apply at
// once; each changed setting that does not is named in the reply and in
// the log; a refused file changes nothing.
func TestCLIReloadAppliesOrNamesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	dir, base := t.TempDir(), t.TempDir()
	file := filepath.Join(base, "dce.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[limits]\nconnections_per_user = 2\n")
	p := freePorts(t)
	proc := startProcess(t, dir, p, []string{"DCE_SERVER_LOG_LEVEL=info"}, "-config", file)
	waitHealthy(t, proc, p, 10*time.Second)
	remote := p.remote()

	// Two connections of one user are allowed, a third is refused.
	login := func() (*servertest.Client, error) {
		c, _, err := dialLoggedIn(t, remote, "tcp", "reload-user", "")
		return c, err
	}
	for i := range 2 {
		if _, err := login(); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	if _, err := login(); err == nil {
		t.Fatal("a third connection was allowed with connections_per_user = 2")
	}

	// Raise the cap and change settings that need a restart.
	write("[limits]\nconnections_per_user = 3\nmax_frame_bytes = 32768\nudp_peers = 50\nfailed_login_window_seconds = 60\n" +
		"[transport]\nping_interval = \"20s\"\n[server]\nlog_format = \"json\"\n")
	out, errOut, code := runCLI(t, dir, nil, "websocket", "reload", "-config", file)
	if code != 0 {
		t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
	}
	var r reloadReply
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("reload printed %q: %v", out, err)
	}
	t.Logf("reload: %s", strings.Join(strings.Fields(out), " "))
	if !r.Reloaded {
		t.Errorf("reloaded is not true: %s", out)
	}
	for _, key := range []string{"limits.max_frame_bytes", "limits.udp_peers", "limits.failed_login_window_seconds",
		"transport.ping_interval", "server.log_format"} {
		if !slices.Contains(r.RestartNeeded, key) {
			t.Errorf("restart_needed does not name %s: %s", key, out)
		}
		servertest.Eventually(t, 5*time.Second, "the log naming "+key, func() bool { return strings.Contains(proc.out.String(), key) })
	}
	if !slices.Contains(r.Applied, "limits.connections_per_user") || slices.Contains(r.RestartNeeded, "limits.connections_per_user") {
		t.Errorf("connections_per_user is not among the applied settings: %s", out)
	}
	if len(r.RestartNeeded) != 5 {
		t.Errorf("restart_needed names %d settings, want the 5 changed: %s", len(r.RestartNeeded), out)
	}
	if _, err := login(); err != nil {
		t.Fatalf("a third connection after raising connections_per_user to 3 and reloading: %v", err)
	}

	// A bad file is refused by reload, naming the key; the server runs on.
	write("[limits]\nconnections_per_user = 3\nmessage_per_second = 5\n")
	out, errOut, code = runCLI(t, dir, nil, "websocket", "reload", "-config", file)
	if code == 0 || !strings.Contains(out+errOut, "limits.message_per_second") {
		t.Errorf("reload of a file with a misspelt key: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := login(); err == nil {
		t.Error("a fourth connection was allowed: the refused reload changed the cap")
	}
	waitHealthy(t, proc, p, 2*time.Second)
}

// `dce user admin -config FILE NICKNAME` works on the running server's
// store, found through the file's runtime_dir; a configuration whose store
// does not exist is an error naming it, and no empty database is made.
func TestCLIUserAdminUsesConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	runtimeDir, work := t.TempDir(), t.TempDir()
	file := filepath.Join(t.TempDir(), "dce.toml")
	if err := os.WriteFile(file, []byte("[server]\nruntime_dir = \""+runtimeDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := freePorts(t)
	proc := startProcess(t, work, p, []string{"DCE_SERVER_RUNTIME_DIR=" + runtimeDir}, "-config", file)
	waitHealthy(t, proc, p, 10*time.Second)

	c, _, err := dialLoggedIn(t, p.remote(), "tcp", "admin-to-be", "")
	if err != nil {
		t.Fatal(err)
	}
	if f, err := c.Call("admin/stats", nil, 5*time.Second); err != nil || f.ErrorCode() != "forbidden" {
		t.Fatalf("admin/stats before the grant: %v %s", err, f.Body)
	}

	// The command line finds the runtime folder from the file alone.
	env := withoutEnv(processEnv(work), "DCE_SERVER_RUNTIME_DIR")
	out, errOut, code := runCLIEnv(t, work, env, "user", "admin", "-config", file, "admin-to-be")
	if code != 0 {
		t.Fatalf("dce user admin -config: exit %d\n%s%s", code, out, errOut)
	}
	if f, err := c.Call("admin/stats", nil, 5*time.Second); err != nil || f.ErrorCode() != "" {
		t.Fatalf("admin/stats after the grant: %v %s", err, f.Body)
	}

	// A configuration whose runtime folder holds no database.
	empty := t.TempDir()
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte("[server]\nruntime_dir = \""+empty+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLIEnv(t, work, env, "user", "admin", "-config", other, "admin-to-be")
	want := filepath.Join(empty, "dce.db")
	if code == 0 || !strings.Contains(out+errOut, want) {
		t.Errorf("dce user admin on a folder without a store: exit %d, want non-zero naming %s\n%s%s", code, want, out, errOut)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an empty database was created at %s (%v)", want, err)
	}
	// Nor under the working folder's default runtime/.
	if _, err := os.Stat(filepath.Join(work, "runtime")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a runtime folder was created in the working folder (%v)", err)
	}
}
