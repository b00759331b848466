// Package config is the server's configuration: built-in defaults, then the
// TOML file (common/config/dce.toml, or -config FILE), then DCE_* environment
// variables (DCE_ + section + key in upper case, e.g.
// DCE_LIMITS_MESSAGES_PER_SECOND=50), then command-line flags.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration written as "2s", "5m", "720h" in the file and
// the environment.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is every setting. Sections marked "reloadable" are re-read by
// `dce websocket reload`; the rest need a restart.
type Config struct {
	Server    Server    `toml:"server"`
	Limits    Limits    `toml:"limits"` // reloadable
	Session   Session   `toml:"session"`
	Store     Store     `toml:"store"`
	Auth      Auth      `toml:"auth"`
	Transport Transport `toml:"transport"`
}

// Server: addresses and files.
type Server struct {
	Host           string   `toml:"host"`
	Port           int      `toml:"port"`
	TCPPort        int      `toml:"tcp_port"`
	UDPPort        int      `toml:"udp_port"`
	RuntimeDir     string   `toml:"runtime_dir"`
	AllowedOrigins []string `toml:"allowed_origins"` // reloadable
	LogLevel       string   `toml:"log_level"`       // reloadable: debug, info, warn, error
	LogFormat      string   `toml:"log_format"`      // text or json
	TrustedProxies []string `toml:"trusted_proxies"` // addresses whose X-Forwarded-For is believed
	Secure         bool     `toml:"secure"`          // served over TLS by a proxy: Secure cookies and HSTS
	PprofAddr      string   `toml:"pprof_addr"`      // loopback address for net/http/pprof ("": off)
}

// Limits: PROTOCOL.md section 4's numbers. Reloadable.
type Limits struct {
	MaxFrameBytes            int `toml:"max_frame_bytes"`
	NicknameMax              int `toml:"nickname_max"`
	PasswordMin              int `toml:"password_min"`
	PasswordMax              int `toml:"password_max"`
	BriefMax                 int `toml:"brief_max"`
	TextMax                  int `toml:"text_max"`
	MessagesPerSecond        int `toml:"messages_per_second"`
	MessageBurst             int `toml:"message_burst"`
	TypingPerSecond          int `toml:"typing_per_second"`
	FailedLoginsPerNickAddr  int `toml:"failed_logins_per_nickname_address"`
	FailedLoginsPerAddress   int `toml:"failed_logins_per_address"`
	FailedLoginsPerNickname  int `toml:"failed_logins_per_nickname"`
	FailedLoginWindowSeconds int `toml:"failed_login_window_seconds"`
	RegistrationsPerHour     int `toml:"registrations_per_address_hour"`
	ConnectionsPerUser       int `toml:"connections_per_user"`
	AnonConnectionsPerIP     int `toml:"anon_connections_per_ip"`
	MaxConnections           int `toml:"max_connections"` // 0: derived from the open-files limit
	BadFramesPerMinute       int `toml:"bad_frames_per_minute"`
	UDPPeers                 int `toml:"udp_peers"`
	// New connections and resumes: per user, and loosely per address.
	ConnectsPerSecond        int `toml:"connects_per_second"`
	ConnectBurst             int `toml:"connect_burst"`
	ConnectsPerAddressSecond int `toml:"connects_per_address_second"`
	ConnectBurstPerAddress   int `toml:"connect_burst_per_address"`
}

// Session: lifetimes and the cache.
type Session struct {
	Lifetime      Duration `toml:"lifetime"`
	CacheBytes    int      `toml:"cache_bytes"`
	PresenceGrace Duration `toml:"presence_grace"`
	LogoutOnClose bool     `toml:"logout_on_close"`
}

// Store: the durable store.
type Store struct {
	Driver      string `toml:"driver"` // sqlite
	Path        string `toml:"path"`   // default runtime/dce.db
	Synchronous string `toml:"synchronous"`
	MaxBatch    int    `toml:"max_batch"`
}

// Auth: password hashing.
type Auth struct {
	ArgonMemoryKiB int      `toml:"argon_memory_kib"`
	ArgonTime      int      `toml:"argon_time"`
	ArgonThreads   int      `toml:"argon_threads"`
	HashSlots      int      `toml:"hash_slots"` // 0: the number of CPUs
	HashWait       Duration `toml:"hash_wait"`  // how long a login waits for a slot before rate_limited
}

// Transport: timers and queues.
type Transport struct {
	PingInterval    Duration `toml:"ping_interval"`
	PongWait        Duration `toml:"pong_wait"`
	WriteTimeout    Duration `toml:"write_timeout"`
	WriteDelay      Duration `toml:"write_delay"` // a writer's wait for more frames before a write
	QueueBytes      int      `toml:"queue_bytes"`
	QueueFrames     int      `toml:"queue_frames"`
	UDPPeerTimeout  Duration `toml:"udp_peer_timeout"`
	HTTPReadTimeout Duration `toml:"http_read_timeout"`
	TCPIdleTimeout  Duration `toml:"tcp_idle_timeout"`
	// FrameTimeout is how long a TCP line may take to arrive once its first
	// byte has (slowloris protection; nc sends a typed line at once).
	FrameTimeout Duration `toml:"frame_timeout"`
	// SendBufferBytes is each WebSocket and TCP connection's kernel send
	// buffer (SO_SNDBUF); 0 leaves the kernel's autotuning, which lets a
	// stalled reader park up to 4 MiB there before its queue fills.
	SendBufferBytes int `toml:"send_buffer_bytes"`
}

// Default is the built-in configuration.
func Default() Config {
	return Config{
		Server: Server{Host: "0.0.0.0", Port: 20461, TCPPort: 20462, UDPPort: 20463, RuntimeDir: "runtime",
			LogLevel: "info", LogFormat: "text"},
		Limits: Limits{MaxFrameBytes: 64 << 10, NicknameMax: 32, PasswordMin: 8, PasswordMax: 128, BriefMax: 128,
			TextMax: 4000, MessagesPerSecond: 10, MessageBurst: 20, TypingPerSecond: 2,
			FailedLoginsPerNickAddr: 5, FailedLoginsPerAddress: 30, FailedLoginsPerNickname: 50,
			FailedLoginWindowSeconds: 300, RegistrationsPerHour: 60, ConnectionsPerUser: 16,
			AnonConnectionsPerIP: 64, BadFramesPerMinute: 100, UDPPeers: 10000,
			ConnectsPerSecond: 10, ConnectBurst: 20, ConnectsPerAddressSecond: 100, ConnectBurstPerAddress: 200},
		Session: Session{Lifetime: Duration{30 * 24 * time.Hour}, CacheBytes: 16 << 20,
			PresenceGrace: Duration{2 * time.Second}},
		Store: Store{Driver: "sqlite", Synchronous: "FULL", MaxBatch: 1024},
		Auth:  Auth{ArgonMemoryKiB: 19456, ArgonTime: 2, ArgonThreads: 1, HashWait: Duration{200 * time.Millisecond}},
		Transport: Transport{PingInterval: Duration{27 * time.Second}, PongWait: Duration{30 * time.Second},
			WriteTimeout: Duration{10 * time.Second}, WriteDelay: Duration{50 * time.Millisecond}, QueueBytes: 1 << 20, QueueFrames: 4096,
			UDPPeerTimeout: Duration{60 * time.Second}, HTTPReadTimeout: Duration{10 * time.Second},
			TCPIdleTimeout: Duration{10 * time.Minute}, FrameTimeout: Duration{10 * time.Second}},
	}
}

// DefaultFile is where the config file is looked for when -config is not given.
const DefaultFile = "common/config/dce.toml"

// Load builds the configuration from the defaults, the file (a missing
// DefaultFile is fine; a missing explicit file is an error) and the
// environment.
func Load(file string, environ []string) (Config, error) {
	cfg := Default()
	explicit := file != ""
	if !explicit {
		file = DefaultFile
	}
	if _, err := toml.DecodeFile(file, &cfg); err != nil {
		if explicit || !os.IsNotExist(err) {
			return cfg, fmt.Errorf("config %s: %w", file, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Validate rejects settings the server cannot run with.
func (c *Config) Validate() error {
	for name, p := range map[string]int{"port": c.Server.Port, "tcp_port": c.Server.TCPPort, "udp_port": c.Server.UDPPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("config: server.%s %d is not a port", name, p)
		}
	}
	if c.Limits.MaxFrameBytes < 1024 {
		return fmt.Errorf("config: limits.max_frame_bytes must be at least 1024")
	}
	if s := strings.ToUpper(c.Store.Synchronous); s != "FULL" && s != "NORMAL" {
		return fmt.Errorf("config: store.synchronous must be FULL or NORMAL")
	}
	if c.Server.PprofAddr != "" && !loopbackAddr(c.Server.PprofAddr) {
		return fmt.Errorf("config: server.pprof_addr %q must be a loopback host:port", c.Server.PprofAddr)
	}
	if c.Limits.PasswordMin < 1 || c.Limits.PasswordMax < c.Limits.PasswordMin {
		return fmt.Errorf("config: limits.password_min/password_max are inconsistent")
	}
	if c.Transport.PingInterval.Duration <= 0 || c.Transport.PongWait.Duration <= c.Transport.PingInterval.Duration {
		return fmt.Errorf("config: transport.pong_wait must be longer than transport.ping_interval")
	}
	return nil
}

// StorePath is the database file, under the runtime folder by default.
func (c *Config) StorePath() string {
	if c.Store.Path != "" {
		return c.Store.Path
	}
	return filepath.Join(c.Server.RuntimeDir, "dce.db")
}

// applyEnv sets every field that has a DCE_SECTION_KEY variable. Lists are
// comma separated.
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "DCE_") {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	for _, f := range Fields(cfg) {
		v, ok := env[f.Env]
		if !ok {
			continue
		}
		if err := setValue(f.Value, v); err != nil {
			return fmt.Errorf("config: %s=%q: %w", f.Env, v, err)
		}
	}
	return nil
}

// Field is one setting, for the environment and for the README's list.
type Field struct {
	Section, Key, Env string
	Value             reflect.Value
}

// Fields lists every setting of cfg.
func Fields(cfg *Config) []Field {
	var out []Field
	root := reflect.ValueOf(cfg).Elem()
	for i := 0; i < root.NumField(); i++ {
		section := root.Type().Field(i).Tag.Get("toml")
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			key := sv.Type().Field(j).Tag.Get("toml")
			out = append(out, Field{Section: section, Key: key,
				Env: "DCE_" + strings.ToUpper(section+"_"+key), Value: sv.Field(j)})
		}
	}
	return out
}

func setValue(v reflect.Value, s string) error {
	if d, ok := v.Addr().Interface().(*Duration); ok {
		return d.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Slice:
		var items []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Kind())
	}
	return nil
}

// loopbackAddr reports whether addr is host:port with a loopback IP host.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
