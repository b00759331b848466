package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"dce/common/model"
)

// Bounds of the settings that have one beyond "positive" or "not negative".
const (
	minFrameBytes   = 1 << 10
	maxFrameBytes   = 16 << 20
	maxPasswordLen  = 4096
	minCacheBytes   = 512 << 10 // freecache's smallest cache: less is silently raised to it
	maxStoreBatch   = 1 << 16
	maxArgonMemory  = 4 << 20 // KiB: 4 GiB
	maxArgonTime    = 100
	maxArgonThreads = 255 // argon2's parallelism is a byte
)

// Log levels and formats, and store drivers and synchronous modes, this
// build honors. Each is matched without regard to case.
var (
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
	drivers     = []string{"sqlite", "postgres"}
	synchronous = []string{"FULL", "NORMAL"}
)

// checker collects the problems of a configuration. from names where each
// setting was set ("" or missing: the built-in default).
type checker struct {
	from     map[string]string
	problems []string
}

// need records a problem with key unless ok.
func (c *checker) need(ok bool, key string, value any, format string, args ...any) {
	if ok {
		return
	}
	switch v := value.(type) {
	case string:
		value = strconv.Quote(v)
	case Duration:
		value = strconv.Quote(v.String())
	case []string:
		value = fmt.Sprintf("%q", v)
	}
	where := ""
	if src := c.from[key]; src != "" {
		where = " (from " + src + ")"
	}
	c.problems = append(c.problems, fmt.Sprintf("%s = %v%s: %s", key, value, where, fmt.Sprintf(format, args...)))
}

func (c *checker) port(key string, p int) {
	c.need(p >= 0 && p <= 65535, key, p, "a port is 0 (any free one) to 65535")
}

func (c *checker) atLeast(key string, v, low int) {
	if low == 0 {
		c.need(v >= 0, key, v, "must not be negative (0: no limit)")
		return
	}
	c.need(v >= low, key, v, "must be at least %d", low)
}

func (c *checker) between(key string, v, low, high int) {
	c.need(v >= low && v <= high, key, v, "must be %d to %d", low, high)
}

func (c *checker) positive(key string, d Duration) {
	c.need(d.Duration > 0, key, d, "must be a positive duration")
}

func (c *checker) notNegative(key string, d Duration, zero string) {
	c.need(d.Duration >= 0, key, d, "must not be negative (0: %s)", zero)
}

func (c *checker) oneOf(key, v string, allowed []string, why string) {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return
		}
	}
	if len(allowed) == 1 {
		c.need(false, key, v, "must be %s%s", allowed[0], why)
		return
	}
	c.need(false, key, v, "must be one of %s%s", strings.Join(allowed, ", "), why)
}

// check returns every problem of the configuration.
func (cfg *Config) check(from map[string]string) []string {
	c := &checker{from: from}
	s := cfg.Server
	c.need(validHost(s.Host), "server.host", s.Host, "must be an IP address or a host name, without a port")
	c.port("server.port", s.Port)
	c.port("server.tcp_port", s.TCPPort)
	c.port("server.udp_port", s.UDPPort)
	c.need(s.TCPPort == 0 || s.TCPPort != s.Port, "server.tcp_port", s.TCPPort, "is server.port too; HTTP and TCP need a port each")
	c.need(strings.TrimSpace(s.RuntimeDir) != "", "server.runtime_dir", s.RuntimeDir, "must name a folder")
	for _, o := range s.AllowedOrigins {
		c.need(validOrigin(o), "server.allowed_origins", s.AllowedOrigins,
			"%q is not an origin: scheme://host[:port], http or https, with no path (as browsers send it)", o)
	}
	c.oneOf("server.log_level", s.LogLevel, logLevels, "")
	c.oneOf("server.log_format", s.LogFormat, logFormats, "")
	for _, p := range s.TrustedProxies {
		c.need(validProxy(p), "server.trusted_proxies", s.TrustedProxies, "%q is not an IP address or a CIDR prefix", p)
	}
	c.need(s.PprofAddr == "" || loopbackAddr(s.PprofAddr), "server.pprof_addr", s.PprofAddr,
		"must be a loopback host:port such as 127.0.0.1:6060, or empty (off)")

	l := cfg.Limits
	c.between("limits.max_frame_bytes", l.MaxFrameBytes, minFrameBytes, maxFrameBytes)
	c.between("limits.nickname_max", l.NicknameMax, 1, model.MaxNickname)
	c.between("limits.password_min", l.PasswordMin, 1, maxPasswordLen)
	c.need(l.PasswordMax >= l.PasswordMin && l.PasswordMax <= maxPasswordLen, "limits.password_max", l.PasswordMax,
		"must be limits.password_min (%d) to %d", l.PasswordMin, maxPasswordLen)
	c.atLeast("limits.brief_max", l.BriefMax, 1)
	c.atLeast("limits.text_max", l.TextMax, 1)
	c.atLeast("limits.group_members", l.GroupMembers, 1)
	c.atLeast("limits.messages_per_second", l.MessagesPerSecond, 1)
	c.atLeast("limits.message_burst", l.MessageBurst, 1)
	c.atLeast("limits.typing_per_second", l.TypingPerSecond, 1)
	c.atLeast("limits.failed_logins_per_nickname_address", l.FailedLoginsPerNickAddr, 0)
	c.atLeast("limits.failed_logins_per_address", l.FailedLoginsPerAddress, 0)
	c.atLeast("limits.failed_logins_per_nickname", l.FailedLoginsPerNickname, 0)
	c.atLeast("limits.failed_login_window_seconds", l.FailedLoginWindowSeconds, 1)
	c.atLeast("limits.registrations_per_address_hour", l.RegistrationsPerHour, 0)
	c.atLeast("limits.connections_per_user", l.ConnectionsPerUser, 0)
	c.atLeast("limits.anon_connections_per_ip", l.AnonConnectionsPerIP, 0)
	c.atLeast("limits.max_connections", l.MaxConnections, 0)
	c.atLeast("limits.bad_frames_per_minute", l.BadFramesPerMinute, 0)
	c.atLeast("limits.udp_peers", l.UDPPeers, 0)
	c.notNegative("limits.edit_window", l.EditWindow, "authors may always edit and delete")

	se := cfg.Session
	c.positive("session.lifetime", se.Lifetime)
	c.need(se.CacheBytes >= minCacheBytes, "session.cache_bytes", se.CacheBytes, "must be at least %d (the cache's smallest size)", minCacheBytes)
	c.notNegative("session.presence_grace", se.PresenceGrace, "offline as soon as the last connection closes")
	c.positive("session.sweep_interval", se.SweepInterval)

	st := cfg.Store
	c.oneOf("store.driver", st.Driver, drivers, "")
	postgres := strings.EqualFold(st.Driver, "postgres")
	driverFrom := ""
	if src := c.from["store.driver"]; src != "" {
		driverFrom = " (from " + src + ")"
	}
	switch {
	case postgres && st.DSN == "":
		c.need(false, "store.dsn", st.DSN, "store.driver is postgres%s: give the database's URL, postgres://user@host:port/db", driverFrom)
	case postgres:
		c.need(PostgresURL(st.DSN), "store.dsn", RedactURL(st.DSN), "must be a postgres:// or postgresql:// URL")
	case st.DSN != "":
		c.need(false, "store.dsn", RedactURL(st.DSN), "is for store.driver = \"postgres\" (the SQLite file is store.path)")
	}
	c.need(!postgres || st.Path == "", "store.path", st.Path, "is SQLite's file; store.driver is postgres")

	r := cfg.Redis
	if r.URL != "" {
		c.need(validRedisURL(r.URL), "redis.url", RedactURL(r.URL), "must be a redis:// or rediss:// URL: redis://[user:password@]host:port/db")
	}
	c.need(!postgres || r.URL != "", "redis.url", r.URL, "store.driver is postgres%s, and several nodes share sessions, presence and pushes through Redis: give its URL", driverFrom)
	c.need(postgres || r.URL == "", "redis.url", RedactURL(r.URL), "is for several nodes: set store.driver = \"postgres\" too (one node on SQLite needs no Redis)")
	c.need(validNode(s.Node), "server.node", s.Node, "a node's name is 1 to 64 letters, digits, '.', '_', ':' or '-'")
	c.oneOf("store.synchronous", st.Synchronous, synchronous, " (FULL survives power loss, NORMAL only a process crash)")
	c.between("store.max_batch", st.MaxBatch, 1, maxStoreBatch)

	a := cfg.Auth
	c.between("auth.argon_threads", a.ArgonThreads, 1, maxArgonThreads)
	c.between("auth.argon_memory_kib", a.ArgonMemoryKiB, 8*max(1, a.ArgonThreads), maxArgonMemory)
	c.between("auth.argon_time", a.ArgonTime, 1, maxArgonTime)
	c.atLeast("auth.hash_slots", a.HashSlots, 0)
	c.positive("auth.hash_wait", a.HashWait)

	t := cfg.Transport
	c.positive("transport.ping_interval", t.PingInterval)
	c.need(t.PongWait.Duration > t.PingInterval.Duration, "transport.pong_wait", t.PongWait,
		"must be longer than transport.ping_interval (%v)", t.PingInterval)
	c.positive("transport.write_timeout", t.WriteTimeout)
	c.notNegative("transport.write_delay", t.WriteDelay, "write at once")
	c.need(t.QueueBytes >= l.MaxFrameBytes, "transport.queue_bytes", t.QueueBytes,
		"must hold at least one frame of limits.max_frame_bytes (%d)", l.MaxFrameBytes)
	c.atLeast("transport.queue_frames", t.QueueFrames, 1)
	c.positive("transport.udp_peer_timeout", t.UDPPeerTimeout)
	c.positive("transport.http_read_timeout", t.HTTPReadTimeout)
	c.positive("transport.tcp_idle_timeout", t.TCPIdleTimeout)
	c.notNegative("transport.frame_timeout", t.FrameTimeout, "no limit")
	c.atLeast("transport.send_buffer_bytes", t.SendBufferBytes, 0)
	return c.problems
}

// normalize writes the values matched without regard to case as the server
// uses them.
func (cfg *Config) normalize() {
	cfg.Server.LogLevel = strings.ToLower(cfg.Server.LogLevel)
	cfg.Server.LogFormat = strings.ToLower(cfg.Server.LogFormat)
	cfg.Store.Driver = strings.ToLower(cfg.Store.Driver)
	cfg.Store.Synchronous = strings.ToUpper(cfg.Store.Synchronous)
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// validNode accepts "" (the default name) or a name of nodeName's shape.
func validNode(n string) bool { return n == "" || nodeName.MatchString(n) }

func validRedisURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.Host != ""
}

// RedactURL hides a URL's password, for messages and logs.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// validHost accepts "" (every interface), an IP address or a host name.
func validHost(h string) bool {
	if h == "" {
		return true
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return hostName.MatchString(h)
}

// validOrigin accepts what a browser sends as Origin: scheme://host[:port].
func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && !strings.HasSuffix(o, "?") && !strings.HasSuffix(o, "#")
}

func validProxy(p string) bool {
	if _, err := netip.ParsePrefix(p); err == nil {
		return true
	}
	_, err := netip.ParseAddr(p)
	return err == nil
}

// loopbackAddr reports whether addr is host:port with a loopback IP host
// and a port.
func loopbackAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	ip := net.ParseIP(host)
	return err == nil && n >= 0 && n <= 65535 && ip != nil && ip.IsLoopback()
}
