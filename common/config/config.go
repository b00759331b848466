// Package config is the server's configuration: built-in defaults, then the
// TOML file (common/config/dce.toml, or -config FILE), then DCE_* environment
// variables (DCE_ + section + key in upper case, e.g.
// DCE_LIMITS_MESSAGES_PER_SECOND=50), then command-line flags.
//
// Nothing is ignored: an unknown section, key, variable or flag, a value of
// the wrong type and a value the server cannot honor all refuse the whole
// configuration, with one line per problem naming the setting and where it
// was set (the file, the variable, the flag). check.go holds each setting's
// valid range.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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

// Config is every setting. Those tagged reload:"apply" are applied by
// `dce websocket reload`; a change to any other needs a restart, and
// reload's reply names it.
type Config struct {
	Server    Server    `toml:"server"`
	Limits    Limits    `toml:"limits"`
	Session   Session   `toml:"session"`
	Store     Store     `toml:"store"`
	Auth      Auth      `toml:"auth"`
	Transport Transport `toml:"transport"`
	Redis     Redis     `toml:"redis"`
}

// Server: addresses and files.
type Server struct {
	Host           string   `toml:"host"`
	Port           int      `toml:"port"`
	TCPPort        int      `toml:"tcp_port"`
	UDPPort        int      `toml:"udp_port"`
	RuntimeDir     string   `toml:"runtime_dir"`
	AllowedOrigins []string `toml:"allowed_origins" reload:"apply"`
	LogLevel       string   `toml:"log_level" reload:"apply"` // debug, info, warn, error
	LogFormat      string   `toml:"log_format"`               // text or json
	TrustedProxies []string `toml:"trusted_proxies"`          // addresses whose X-Forwarded-For is believed
	Secure         bool     `toml:"secure"`                   // served over TLS by a proxy: Secure cookies and HSTS
	PprofAddr      string   `toml:"pprof_addr"`               // loopback address for net/http/pprof ("": off)
	// Node is this server's name among several nodes, shown by status, in
	// logs and metrics; "": the host name and the HTTP port.
	Node string `toml:"node"`
}

// Limits: PROTOCOL.md section 4's numbers. A reload applies all but the
// frame limit (built into the HTTP server and the router), the failed-login
// window (into its counter) and the UDP peer cap (into the UDP transport).
type Limits struct {
	MaxFrameBytes            int `toml:"max_frame_bytes"`
	NicknameMax              int `toml:"nickname_max" reload:"apply"`
	PasswordMin              int `toml:"password_min" reload:"apply"`
	PasswordMax              int `toml:"password_max" reload:"apply"`
	BriefMax                 int `toml:"brief_max" reload:"apply"`
	TextMax                  int `toml:"text_max" reload:"apply"`
	MessagesPerSecond        int `toml:"messages_per_second" reload:"apply"`
	MessageBurst             int `toml:"message_burst" reload:"apply"`
	TypingPerSecond          int `toml:"typing_per_second" reload:"apply"`
	FailedLoginsPerNickAddr  int `toml:"failed_logins_per_nickname_address" reload:"apply"`
	FailedLoginsPerAddress   int `toml:"failed_logins_per_address" reload:"apply"`
	FailedLoginsPerNickname  int `toml:"failed_logins_per_nickname" reload:"apply"`
	FailedLoginWindowSeconds int `toml:"failed_login_window_seconds"`
	RegistrationsPerHour     int `toml:"registrations_per_address_hour" reload:"apply"`
	ConnectionsPerUser       int `toml:"connections_per_user" reload:"apply"`
	AnonConnectionsPerIP     int `toml:"anon_connections_per_ip" reload:"apply"`
	MaxConnections           int `toml:"max_connections" reload:"apply"` // 0: derived from the open-files limit
	BadFramesPerMinute       int `toml:"bad_frames_per_minute" reload:"apply"`
	UDPPeers                 int `toml:"udp_peers"`
	// New connections and resumes: per user, and loosely per address.
	ConnectsPerSecond        int `toml:"connects_per_second"`
	ConnectBurst             int `toml:"connect_burst"`
	ConnectsPerAddressSecond int `toml:"connects_per_address_second"`
	ConnectBurstPerAddress   int `toml:"connect_burst_per_address"`
	// EditWindow is how long after sending authors may edit or delete
	// their messages; 0: always. Admins' deletions have no window.
	EditWindow Duration `toml:"edit_window" reload:"apply"`
	// GroupMembers is the most members a group may have.
	GroupMembers int `toml:"group_members" reload:"apply"`
}

// Session: lifetimes and the cache.
type Session struct {
	Lifetime      Duration `toml:"lifetime"`
	CacheBytes    int      `toml:"cache_bytes"`
	PresenceGrace Duration `toml:"presence_grace"`
	LogoutOnClose bool     `toml:"logout_on_close" reload:"apply"`
	// SweepInterval is how often expired sessions are removed from the
	// store.
	SweepInterval Duration `toml:"sweep_interval"`
}

// Store: the durable store.
type Store struct {
	Driver      string `toml:"driver"` // sqlite or postgres
	Path        string `toml:"path"`   // sqlite's file; default runtime/dce.db
	DSN         string `toml:"dsn"`    // postgres: a postgres:// URL
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

// Redis: the shared engine of several nodes (sessions, presence, the bus
// of pushes that are not stored, rate limits). URL "" runs one node alone.
type Redis struct {
	URL    string `toml:"url"`    // redis://[user:password@]host:port/db
	Prefix string `toml:"prefix"` // before every key and channel, so deployments can share one Redis
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
			ConnectsPerSecond: 10, ConnectBurst: 20, ConnectsPerAddressSecond: 100, ConnectBurstPerAddress: 200,
			GroupMembers: 10000},
		Session: Session{Lifetime: Duration{30 * 24 * time.Hour}, CacheBytes: 16 << 20,
			PresenceGrace: Duration{2 * time.Second}, SweepInterval: Duration{5 * time.Minute}},
		Store: Store{Driver: "sqlite", Synchronous: "FULL", MaxBatch: 1024},
		Auth:  Auth{ArgonMemoryKiB: 19456, ArgonTime: 2, ArgonThreads: 1, HashWait: Duration{200 * time.Millisecond}},
		Transport: Transport{PingInterval: Duration{27 * time.Second}, PongWait: Duration{30 * time.Second},
			WriteTimeout: Duration{10 * time.Second}, WriteDelay: Duration{50 * time.Millisecond}, QueueBytes: 1 << 20, QueueFrames: 4096,
			UDPPeerTimeout: Duration{60 * time.Second}, HTTPReadTimeout: Duration{10 * time.Second},
			TCPIdleTimeout: Duration{10 * time.Minute}, FrameTimeout: Duration{10 * time.Second}},
		Redis: Redis{Prefix: "dce:"},
	}
}

// DefaultFile is where the config file is looked for when -config is not given.
const DefaultFile = "common/config/dce.toml"

// NotSettings are DCE_* variables that the tests read; they are known, and
// no setting.
var NotSettings = []string{"DCE_TEST_LOGS", "DCE_SCREENSHOTS", "DCE_TEST_POSTGRES", "DCE_TEST_REDIS"}

// Error is a refused configuration: one line per problem.
type Error struct{ Problems []string }

func (e *Error) Error() string { return "config: " + strings.Join(e.Problems, "\nconfig: ") }

// Load builds the configuration from the defaults, the file (a missing
// DefaultFile is fine; a missing explicit file is an error) and the
// environment, and refuses it if anything in them is unknown or cannot be
// honored.
func Load(file string, environ []string) (Config, error) { return load(file, environ, nil) }

// Flags are the command-line flags every command that reads the
// configuration takes: -config FILE, and the settings most often changed
// for one run. They override the file and the environment.
type Flags struct {
	File string
	set  []flagValue // in the order given
}

type flagValue struct{ flag, key, value string }

// flagSettings are the settings with a flag of their own.
var flagSettings = []struct{ flag, key, usage string }{
	{"host", "server.host", "`address` to listen on"},
	{"port", "server.port", "HTTP and WebSocket `port`"},
	{"tcp_port", "server.tcp_port", "TCP `port`"},
	{"udp_port", "server.udp_port", "UDP `port`"},
	{"store", "", "the store: a postgres:// `URL`, or an SQLite file's path"},
	{"redis", "redis.url", "Redis `URL` (redis://host:port/db), shared by several nodes"},
	{"node", "server.node", "this node's `name` among several"},
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.File, "config", "", "configuration file (default "+DefaultFile+")")
	def := Default()
	fields := fieldsByKey(&def)
	for _, s := range flagSettings {
		usage := s.usage
		if f, ok := fields[s.key]; ok && !f.Value.IsZero() {
			usage = fmt.Sprintf("%s (default %v)", s.usage, f.Value.Interface())
		}
		fs.Func(s.flag, usage, func(v string) error {
			if s.key == "" { // -store: the driver follows from the value
				driver, key := "sqlite", "store.path"
				if PostgresURL(v) {
					driver, key = "postgres", "store.dsn"
				}
				f.set = append(f.set, flagValue{flag: "-store", key: "store.driver", value: driver},
					flagValue{flag: "-store", key: key, value: v})
				return nil
			}
			f.set = append(f.set, flagValue{flag: "-" + s.flag, key: s.key, value: v})
			return nil
		})
	}
}

// Load builds the configuration from the defaults, the file, environ and
// the flags.
func (f *Flags) Load(environ []string) (Config, error) { return load(f.File, environ, f.set) }

func load(file string, environ []string, flags []flagValue) (Config, error) {
	cfg := Default()
	from := map[string]string{} // "section.key" -> where it was last set
	var problems []string
	explicit := file != ""
	if !explicit {
		file = DefaultFile
	}
	meta, err := toml.DecodeFile(file, &cfg)
	switch {
	case err != nil && !explicit && errors.Is(err, os.ErrNotExist):
	case err != nil:
		problems = append(problems, fmt.Sprintf("%s: %v", file, err))
	default:
		problems = append(problems, unknownKeys(file, meta)...)
		for _, k := range meta.Keys() {
			from[k.String()] = file
		}
	}
	fields := fieldsByKey(&cfg)
	problems = append(problems, applyEnv(fields, environ, from)...)
	for _, fl := range flags {
		if err := setValue(fields[fl.key].Value, fl.value); err != nil {
			problems = append(problems, fmt.Sprintf("%s %q: %v", fl.flag, fl.value, err))
		}
		from[fl.key] = fl.flag
	}
	problems = append(problems, cfg.check(from)...)
	if len(problems) > 0 {
		return cfg, &Error{Problems: problems}
	}
	cfg.normalize()
	return cfg, nil
}

// Validate refuses a configuration built in code (the tests', a reload's)
// with the same rules as Load.
func (c *Config) Validate() error {
	if p := c.check(nil); len(p) > 0 {
		return &Error{Problems: p}
	}
	return nil
}

// PostgresURL reports whether s is a postgres:// or postgresql:// URL.
func PostgresURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && (strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql"))
}

// Clustered reports whether the server runs as one of several nodes.
func (c *Config) Clustered() bool { return c.Store.Driver == "postgres" }

// StorePath is the database file, under the runtime folder by default.
func (c *Config) StorePath() string {
	if c.Store.Path != "" {
		return c.Store.Path
	}
	return filepath.Join(c.Server.RuntimeDir, "dce.db")
}

// unknownKeys names every key of the file that no setting took: a whole
// unknown section once, not each of its keys.
func unknownKeys(file string, meta toml.MetaData) []string {
	def := Default()
	fields := Fields(&def)
	sections := map[string]bool{}
	for _, f := range fields {
		sections[f.Section] = true
	}
	var out []string
	var reported []toml.Key
	for _, k := range meta.Undecoded() {
		if slices.ContainsFunc(reported, func(r toml.Key) bool { return len(k) > len(r) && slices.Equal(k[:len(r)], r) }) {
			continue // inside a table already named
		}
		reported = append(reported, k)
		switch {
		case len(k) == 1 && meta.Type(k...) == "Hash":
			out = append(out, fmt.Sprintf("%s: unknown section [%s]%s", file, k[0], suggest(k[0], keysOf(sections))))
		case len(k) == 1:
			out = append(out, fmt.Sprintf("%s: unknown key %s (every key belongs in a section such as [server])", file, k))
		case len(k) == 2 && sections[k[0]]:
			var here []string
			hint := ""
			for _, f := range fields {
				if f.Section == k[0] {
					here = append(here, f.Key)
				} else if f.Key == k[1] {
					hint = fmt.Sprintf(" (%s belongs in [%s])", f.Key, f.Section)
				}
			}
			if hint == "" {
				hint = suggest(k[1], here)
			}
			out = append(out, fmt.Sprintf("%s: unknown key %s%s", file, k, hint))
		default:
			out = append(out, fmt.Sprintf("%s: unknown key %s", file, k))
		}
	}
	return out
}

// applyEnv sets every field that has a DCE_SECTION_KEY variable (lists are
// comma separated) and names every DCE_* variable that is no setting.
func applyEnv(fields map[string]Field, environ []string, from map[string]string) []string {
	byEnv := map[string]Field{}
	var names []string
	for _, f := range fields {
		byEnv[f.Env] = f
		names = append(names, f.Env)
	}
	slices.Sort(names)
	var problems []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "DCE_") || slices.Contains(NotSettings, k) {
			continue
		}
		f, known := byEnv[k]
		if !known {
			problems = append(problems, fmt.Sprintf("environment variable %s: unknown setting%s", k, suggest(k, names)))
			continue
		}
		if err := setValue(f.Value, v); err != nil {
			problems = append(problems, fmt.Sprintf("environment variable %s=%q: %v", k, v, err))
		}
		from[f.Section+"."+f.Key] = k
	}
	return problems
}

// Field is one setting, for the environment, reload and the README's list.
type Field struct {
	Section, Key, Env string
	Value             reflect.Value
	Reloadable        bool // a reload applies it (tag reload:"apply")
}

// Fields lists every setting of cfg.
func Fields(cfg *Config) []Field {
	var out []Field
	root := reflect.ValueOf(cfg).Elem()
	for i := 0; i < root.NumField(); i++ {
		section := root.Type().Field(i).Tag.Get("toml")
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			tag := sv.Type().Field(j).Tag
			key := tag.Get("toml")
			out = append(out, Field{Section: section, Key: key, Env: "DCE_" + strings.ToUpper(section+"_"+key),
				Value: sv.Field(j), Reloadable: tag.Get("reload") == "apply"})
		}
	}
	return out
}

func fieldsByKey(cfg *Config) map[string]Field {
	out := map[string]Field{}
	for _, f := range Fields(cfg) {
		out[f.Section+"."+f.Key] = f
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
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not a whole number")
		}
		v.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not true or false")
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

// suggest is " (did you mean X?)" for the known name closest to name, if
// one is close.
func suggest(name string, known []string) string {
	best, bestD := "", 4
	for _, k := range known {
		if d := distance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
