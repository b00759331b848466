package config_test

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dce/common/config"
)

// writeFile writes a config file into a fresh folder and returns its path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dce.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The shipped file is every default, and loads without a word.
func TestShippedFileIsTheDefaults(t *testing.T) {
	cfg, err := config.Load(filepath.Join("dce.toml"), nil)
	if err != nil {
		t.Fatalf("dce.toml: %v", err)
	}
	def := config.Default()
	for i, f := range config.Fields(&cfg) {
		want := config.Fields(&def)[i]
		if got, want := f.Value.Interface(), want.Value.Interface(); !equal(got, want) {
			t.Errorf("dce.toml sets %s.%s = %v, the built-in default is %v", f.Section, f.Key, got, want)
		}
	}
}

// The README's table lists every setting's variable.
func TestReadmeListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	for _, f := range config.Fields(&def) {
		if !strings.Contains(string(readme), "| `"+f.Env+"` | `"+f.Section+"."+f.Key+"`") {
			t.Errorf("README.md's configuration table has no row for %s (%s.%s)", f.Env, f.Section, f.Key)
		}
	}
}

func equal(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return len(as) == len(bs) && strings.Join(as, "\x00") == strings.Join(bs, "\x00")
	}
	return a == b
}

// loadCase is one configuration, from a file, the environment and flags.
type loadCase struct {
	name  string
	file  string   // the file's text ("": no file)
	env   []string // KEY=VALUE
	flags []string // command-line arguments
	// want are the words the error must hold (the setting and where it
	// came from); none: the configuration must load.
	want []string
	// check, when set, looks at a configuration that loaded.
	check func(t *testing.T, cfg config.Config)
}

var goodCases = []loadCase{
	{name: "nothing"},
	{name: "file sets a limit", file: "[limits]\nmessages_per_second = 50\n",
		check: func(t *testing.T, c config.Config) { wantInt(t, "messages_per_second", c.Limits.MessagesPerSecond, 50) }},
	{name: "env over file", file: "[limits]\nmessages_per_second = 50\n", env: []string{"DCE_LIMITS_MESSAGES_PER_SECOND=70"},
		check: func(t *testing.T, c config.Config) { wantInt(t, "messages_per_second", c.Limits.MessagesPerSecond, 70) }},
	{name: "flag over env", env: []string{"DCE_SERVER_PORT=8080"}, flags: []string{"-port", "8081"},
		check: func(t *testing.T, c config.Config) { wantInt(t, "port", c.Server.Port, 8081) }},
	{name: "edit window", file: "[limits]\nedit_window = \"15m\"\n",
		check: func(t *testing.T, c config.Config) {
			if c.Limits.EditWindow.Duration != 15*time.Minute {
				t.Errorf("edit_window %v, want 15m", c.Limits.EditWindow)
			}
			if config.Default().Limits.EditWindow.Duration != 0 {
				t.Errorf("the default edit_window is %v, want 0 (no window)", config.Default().Limits.EditWindow)
			}
		}},
	{name: "port 0 picks a free one", flags: []string{"-port", "0", "-tcp_port", "0", "-udp_port", "0"}},
	{name: "host flag", flags: []string{"-host", "127.0.0.1"},
		check: func(t *testing.T, c config.Config) {
			if c.Server.Host != "127.0.0.1" {
				t.Errorf("host %q", c.Server.Host)
			}
		}},
	{name: "log level and format in any case", file: "[server]\nlog_level = \"DEBUG\"\nlog_format = \"JSON\"\n",
		check: func(t *testing.T, c config.Config) {
			if c.Server.LogLevel != "debug" || c.Server.LogFormat != "json" {
				t.Errorf("log_level %q, log_format %q; want debug and json", c.Server.LogLevel, c.Server.LogFormat)
			}
		}},
	{name: "synchronous normal", env: []string{"DCE_STORE_SYNCHRONOUS=normal"},
		check: func(t *testing.T, c config.Config) {
			if c.Store.Synchronous != "NORMAL" {
				t.Errorf("synchronous %q", c.Store.Synchronous)
			}
		}},
	{name: "durations", env: []string{"DCE_SESSION_LIFETIME=1h", "DCE_TRANSPORT_WRITE_DELAY=0s", "DCE_SESSION_PRESENCE_GRACE=0s"},
		check: func(t *testing.T, c config.Config) {
			if c.Session.Lifetime.Duration != time.Hour {
				t.Errorf("lifetime %v", c.Session.Lifetime)
			}
		}},
	{name: "zero caps are no cap", file: "[limits]\nconnections_per_user = 0\nanon_connections_per_ip = 0\nmax_connections = 0\nudp_peers = 0\nregistrations_per_address_hour = 0\n"},
	{name: "lists", env: []string{"DCE_SERVER_TRUSTED_PROXIES=10.0.0.0/8, 127.0.0.1", "DCE_SERVER_ALLOWED_ORIGINS=https://chat.example.com,http://127.0.0.1:8080"},
		check: func(t *testing.T, c config.Config) {
			if len(c.Server.TrustedProxies) != 2 || len(c.Server.AllowedOrigins) != 2 {
				t.Errorf("trusted_proxies %q, allowed_origins %q", c.Server.TrustedProxies, c.Server.AllowedOrigins)
			}
		}},
	{name: "no frame timeout", env: []string{"DCE_TRANSPORT_FRAME_TIMEOUT=0s"}},
	{name: "pprof on loopback", env: []string{"DCE_SERVER_PPROF_ADDR=127.0.0.1:6060"}},
	{name: "several nodes by flags", flags: []string{"-store", "postgres://dce@127.0.0.1:5432/dce", "-redis", "redis://127.0.0.1:6379/0", "-node", "n1"},
		check: func(t *testing.T, c config.Config) {
			if c.Store.Driver != "postgres" || c.Store.DSN != "postgres://dce@127.0.0.1:5432/dce" || c.Redis.URL != "redis://127.0.0.1:6379/0" ||
				c.Server.Node != "n1" || !c.Clustered() {
				t.Errorf("store %+v redis %+v node %q", c.Store, c.Redis, c.Server.Node)
			}
		}},
	{name: "several nodes by env", env: []string{"DCE_STORE_DRIVER=POSTGRES", "DCE_STORE_DSN=postgresql://dce@db/dce", "DCE_REDIS_URL=rediss://cache:6380/1",
		"DCE_REDIS_PREFIX=chat1:", "DCE_SERVER_NODE=web-1.example"},
		check: func(t *testing.T, c config.Config) {
			if c.Store.Driver != "postgres" || c.Redis.Prefix != "chat1:" || c.Server.Node != "web-1.example" {
				t.Errorf("store %+v redis %+v node %q", c.Store, c.Redis, c.Server.Node)
			}
		}},
	{name: "store flag with a file", flags: []string{"-store", "/tmp/other.db"},
		check: func(t *testing.T, c config.Config) {
			if c.Store.Driver != "sqlite" || c.StorePath() != "/tmp/other.db" || c.Clustered() {
				t.Errorf("store %+v", c.Store)
			}
		}},
	{name: "variables of the tests are not settings", env: []string{"DCE_TEST_LOGS=1", "DCE_SCREENSHOTS=/tmp/x", "OTHER=1"}},
}

var badCases = []loadCase{
	// Unknown names, in each source.
	{name: "unknown section", file: "[cache]\naddr = \"127.0.0.1:6379\"\n", want: []string{"[cache]", "unknown section"}},
	{name: "unknown empty section", file: "[cache]\n", want: []string{"[cache]"}},
	{name: "misspelt redis key", file: "[redis]\naddr = \"127.0.0.1:6379\"\n", want: []string{"redis.addr", "unknown key"}},
	{name: "misspelt key", file: "[limits]\nmessage_per_second = 5\n",
		want: []string{"limits.message_per_second", "unknown key", "messages_per_second"}},
	{name: "key in the wrong section", file: "[server]\nlifetime = \"1h\"\n", want: []string{"server.lifetime", "unknown key"}},
	{name: "top-level key", file: "port = 1\n", want: []string{"port", "unknown key"}},
	{name: "misspelt variable", env: []string{"DCE_LIMITS_MESSAGE_PER_SECOND=5"},
		want: []string{"DCE_LIMITS_MESSAGE_PER_SECOND", "unknown", "DCE_LIMITS_MESSAGES_PER_SECOND"}},
	{name: "unknown variable", env: []string{"DCE_REDIS_ADDR=x"}, want: []string{"DCE_REDIS_ADDR", "unknown"}},
	{name: "unknown flag", flags: []string{"-prot", "1"}, want: []string{"-prot"}},
	{name: "stray argument", flags: []string{"start"}, want: []string{"start"}},
	{name: "missing explicit file", flags: []string{"-config", "/nonexistent/dce.toml"}, want: []string{"/nonexistent/dce.toml"}},

	// Values the server cannot honor.
	{name: "unknown driver", env: []string{"DCE_STORE_DRIVER=mysql"}, want: []string{"store.driver", "DCE_STORE_DRIVER", "mysql", "sqlite, postgres"}},
	{name: "postgres by env without a dsn", env: []string{"DCE_STORE_DRIVER=postgres"}, want: []string{"store.dsn", "DCE_STORE_DRIVER", "postgres", "redis.url"}},
	{name: "postgres by file without a dsn", file: "[store]\ndriver = \"postgres\"\n", want: []string{"store.dsn", "dce.toml", "postgres"}},
	{name: "postgres without redis", flags: []string{"-store", "postgres://dce@127.0.0.1/dce"}, want: []string{"redis.url", "-store"}},
	{name: "dsn not postgres", env: []string{"DCE_STORE_DRIVER=postgres", "DCE_STORE_DSN=mysql://x", "DCE_REDIS_URL=redis://127.0.0.1:6379/0"},
		want: []string{"store.dsn", "mysql://x", "DCE_STORE_DSN"}},
	{name: "dsn for sqlite", env: []string{"DCE_STORE_DSN=postgres://dce@127.0.0.1/dce"}, want: []string{"store.dsn", "store.path"}},
	{name: "dsn password not shown", env: []string{"DCE_STORE_DSN=postgres://dce:hunter2@127.0.0.1/dce"}, want: []string{"store.dsn", "xxxxx"}},
	{name: "sqlite path with postgres", flags: []string{"-store", "postgres://dce@127.0.0.1/dce", "-redis", "redis://127.0.0.1:6379/0"},
		env: []string{"DCE_STORE_PATH=/tmp/x.db"}, want: []string{"store.path", "postgres"}},
	{name: "redis without postgres", flags: []string{"-redis", "redis://127.0.0.1:6379/0"}, want: []string{"redis.url", "-redis", "postgres"}},
	{name: "redis url not redis", flags: []string{"-store", "postgres://dce@127.0.0.1/dce", "-redis", "127.0.0.1:6379"},
		want: []string{"redis.url", "127.0.0.1:6379", "redis://"}},
	{name: "bad node name", flags: []string{"-node", "node one"}, want: []string{"server.node", "-node", "node one"}},
	{name: "node name too long", env: []string{"DCE_SERVER_NODE=" + strings.Repeat("n", 65)}, want: []string{"server.node", "DCE_SERVER_NODE"}},
	{name: "log level", file: "[server]\nlog_level = \"debgu\"\n", want: []string{"server.log_level", "debgu", "dce.toml"}},
	{name: "log level with offset", env: []string{"DCE_SERVER_LOG_LEVEL=info+2"}, want: []string{"server.log_level", "DCE_SERVER_LOG_LEVEL"}},
	{name: "log format", env: []string{"DCE_SERVER_LOG_FORMAT=xml"}, want: []string{"server.log_format", "xml", "DCE_SERVER_LOG_FORMAT"}},
	{name: "synchronous", file: "[store]\nsynchronous = \"OFF\"\n", want: []string{"store.synchronous", "OFF"}},
	{name: "lifetime 0", file: "[session]\nlifetime = \"0s\"\n", want: []string{"session.lifetime", "dce.toml"}},
	{name: "lifetime negative", env: []string{"DCE_SESSION_LIFETIME=-1h"}, want: []string{"session.lifetime", "DCE_SESSION_LIFETIME"}},
	{name: "bad duration", env: []string{"DCE_SESSION_LIFETIME=forever"}, want: []string{"DCE_SESSION_LIFETIME", "forever"}},
	{name: "bad duration in file", file: "[transport]\nping_interval = \"soon\"\n", want: []string{"transport.ping_interval"}},
	{name: "wrong type in file", file: "[server]\nport = \"http\"\n", want: []string{"server.port"}},
	{name: "bad integer", env: []string{"DCE_LIMITS_TEXT_MAX=lots"}, want: []string{"DCE_LIMITS_TEXT_MAX", "lots"}},
	{name: "bad bool", env: []string{"DCE_SERVER_SECURE=yes please"}, want: []string{"DCE_SERVER_SECURE"}},
	{name: "port out of range by flag", flags: []string{"-port", "70000"}, want: []string{"server.port", "-port", "70000"}},
	{name: "port not a number by flag", flags: []string{"-udp_port", "x"}, want: []string{"-udp_port"}},
	{name: "negative port by env", env: []string{"DCE_SERVER_TCP_PORT=-1"}, want: []string{"server.tcp_port", "DCE_SERVER_TCP_PORT"}},
	{name: "same port twice", flags: []string{"-port", "9000", "-tcp_port", "9000"}, want: []string{"server.tcp_port", "9000"}},
	{name: "bad host", flags: []string{"-host", "0.0.0.0:80"}, want: []string{"server.host", "-host"}},
	{name: "empty runtime dir", env: []string{"DCE_SERVER_RUNTIME_DIR="}, want: []string{"server.runtime_dir"}},
	{name: "origin with a path", env: []string{"DCE_SERVER_ALLOWED_ORIGINS=https://chat.example.com/"}, want: []string{"server.allowed_origins"}},
	{name: "origin without a scheme", file: "[server]\nallowed_origins = [\"chat.example.com\"]\n", want: []string{"server.allowed_origins"}},
	{name: "trusted proxy", env: []string{"DCE_SERVER_TRUSTED_PROXIES=10.0.0.0/33"}, want: []string{"server.trusted_proxies", "10.0.0.0/33"}},
	{name: "pprof off loopback", env: []string{"DCE_SERVER_PPROF_ADDR=0.0.0.0:6060"}, want: []string{"server.pprof_addr"}},
	{name: "frame too small", env: []string{"DCE_LIMITS_MAX_FRAME_BYTES=100"}, want: []string{"limits.max_frame_bytes"}},
	{name: "negative count", file: "[limits]\nconnections_per_user = -1\n", want: []string{"limits.connections_per_user"}},
	{name: "negative udp peers", env: []string{"DCE_LIMITS_UDP_PEERS=-5"}, want: []string{"limits.udp_peers"}},
	{name: "no messages at all", env: []string{"DCE_LIMITS_MESSAGES_PER_SECOND=0"}, want: []string{"limits.messages_per_second"}},
	{name: "zero burst", env: []string{"DCE_LIMITS_MESSAGE_BURST=0"}, want: []string{"limits.message_burst"}},
	{name: "zero text", env: []string{"DCE_LIMITS_TEXT_MAX=0"}, want: []string{"limits.text_max"}},
	{name: "negative edit window", env: []string{"DCE_LIMITS_EDIT_WINDOW=-1m"}, want: []string{"limits.edit_window", "DCE_LIMITS_EDIT_WINDOW"}},
	{name: "edit window not a duration", file: "[limits]\nedit_window = \"a while\"\n", want: []string{"limits.edit_window"}},
	{name: "zero group members", env: []string{"DCE_LIMITS_GROUP_MEMBERS=0"}, want: []string{"limits.group_members"}},
	{name: "zero nickname", env: []string{"DCE_LIMITS_NICKNAME_MAX=0"}, want: []string{"limits.nickname_max"}},
	{name: "passwords inverted", file: "[limits]\npassword_min = 20\npassword_max = 10\n", want: []string{"limits.password_max"}},
	{name: "zero login window", env: []string{"DCE_LIMITS_FAILED_LOGIN_WINDOW_SECONDS=0"}, want: []string{"limits.failed_login_window_seconds"}},
	{name: "negative failed logins", env: []string{"DCE_LIMITS_FAILED_LOGINS_PER_ADDRESS=-1"}, want: []string{"limits.failed_logins_per_address"}},
	{name: "zero max batch", env: []string{"DCE_STORE_MAX_BATCH=0"}, want: []string{"store.max_batch"}},
	{name: "negative cache", env: []string{"DCE_SESSION_CACHE_BYTES=-1"}, want: []string{"session.cache_bytes"}},
	{name: "negative grace", env: []string{"DCE_SESSION_PRESENCE_GRACE=-1s"}, want: []string{"session.presence_grace"}},
	{name: "no session sweep", env: []string{"DCE_SESSION_SWEEP_INTERVAL=0s"}, want: []string{"session.sweep_interval"}},
	{name: "argon time 0", env: []string{"DCE_AUTH_ARGON_TIME=0"}, want: []string{"auth.argon_time"}},
	{name: "argon threads 0", env: []string{"DCE_AUTH_ARGON_THREADS=0"}, want: []string{"auth.argon_threads"}},
	{name: "argon threads over 255", env: []string{"DCE_AUTH_ARGON_THREADS=256"}, want: []string{"auth.argon_threads"}},
	{name: "argon memory too small", env: []string{"DCE_AUTH_ARGON_MEMORY_KIB=4"}, want: []string{"auth.argon_memory_kib"}},
	{name: "negative hash slots", env: []string{"DCE_AUTH_HASH_SLOTS=-1"}, want: []string{"auth.hash_slots"}},
	{name: "zero hash wait", env: []string{"DCE_AUTH_HASH_WAIT=0s"}, want: []string{"auth.hash_wait"}},
	{name: "pong before ping", file: "[transport]\nping_interval = \"30s\"\npong_wait = \"10s\"\n", want: []string{"transport.pong_wait"}},
	{name: "zero write timeout", env: []string{"DCE_TRANSPORT_WRITE_TIMEOUT=0s"}, want: []string{"transport.write_timeout"}},
	{name: "negative write delay", env: []string{"DCE_TRANSPORT_WRITE_DELAY=-1ms"}, want: []string{"transport.write_delay"}},
	{name: "queue under a frame", env: []string{"DCE_TRANSPORT_QUEUE_BYTES=1000"}, want: []string{"transport.queue_bytes"}},
	{name: "zero queue frames", env: []string{"DCE_TRANSPORT_QUEUE_FRAMES=0"}, want: []string{"transport.queue_frames"}},
	{name: "zero udp peer timeout", env: []string{"DCE_TRANSPORT_UDP_PEER_TIMEOUT=0s"}, want: []string{"transport.udp_peer_timeout"}},
	{name: "zero http read timeout", env: []string{"DCE_TRANSPORT_HTTP_READ_TIMEOUT=0s"}, want: []string{"transport.http_read_timeout"}},
	{name: "zero tcp idle timeout", env: []string{"DCE_TRANSPORT_TCP_IDLE_TIMEOUT=0s"}, want: []string{"transport.tcp_idle_timeout"}},
	{name: "negative frame timeout", env: []string{"DCE_TRANSPORT_FRAME_TIMEOUT=-1s"}, want: []string{"transport.frame_timeout"}},
	{name: "negative send buffer", env: []string{"DCE_TRANSPORT_SEND_BUFFER_BYTES=-1"}, want: []string{"transport.send_buffer_bytes"}},

	// Every problem is named, not only the first.
	{name: "several at once", file: "[cache]\n[store]\ndriver = \"postgres\"\n", env: []string{"DCE_SERVER_LOG_LEVEL=loud"},
		want: []string{"[cache]", "store.dsn", "redis.url", "server.log_level"}},
}

// load runs one case the way `dce websocket start` does: its flags on a
// flag set, then the file they name (or the case's file), the
// environment and the flags.
func load(t *testing.T, c loadCase) (config.Config, error) {
	t.Helper()
	var f config.Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.Register(fs)
	args := c.flags
	if c.file != "" {
		args = append([]string{"-config", writeFile(t, c.file)}, args...)
	} else {
		// No file: the default one would be read from the working folder,
		// which in this package is the shipped dce.toml; point at an empty one.
		args = append([]string{"-config", writeFile(t, "")}, args...)
	}
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return f.Load(c.env)
}

func TestLoadGood(t *testing.T) {
	for _, c := range goodCases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := load(t, c)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.check != nil {
				c.check(t, cfg)
			}
		})
	}
}

func TestLoadBad(t *testing.T) {
	for _, c := range badCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(t, c)
			if err == nil {
				t.Fatalf("accepted; want an error naming %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

// Validate, on a configuration built in code (tests, reload), refuses the
// same values without a source to name.
func TestValidate(t *testing.T) {
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	cfg.Store.Driver = "postgres"
	cfg.Session.Lifetime = config.Duration{}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "store.dsn") || !strings.Contains(err.Error(), "session.lifetime") {
		t.Fatalf("Validate: %v", err)
	}
}

// Load with a plain file and environment, as the load tool calls it.
func TestLoadFileAndEnv(t *testing.T) {
	path := writeFile(t, "[server]\nruntime_dir = \"/tmp/x\"\n")
	cfg, err := config.Load(path, []string{"DCE_SERVER_PORT=1234"})
	if err != nil || cfg.Server.RuntimeDir != "/tmp/x" || cfg.Server.Port != 1234 {
		t.Fatalf("Load: %+v %v", cfg.Server, err)
	}
	if _, err := config.Load(path, []string{"DCE_SERVER_PROT=1"}); err == nil || !strings.Contains(err.Error(), "DCE_SERVER_PROT") {
		t.Fatalf("a misspelt variable: %v", err)
	}
}

func wantInt(t *testing.T, name string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", name, got, want)
	}
}
