// Package bench is the load tool behind `dce bench`: workloads that drive a
// running server over the real protocol, from many WebSocket connections,
// and report what the server did (rates, loss, latency, server CPU and
// memory). It only ever talks to loopback addresses.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Options are the settings every workload shares.
type Options struct {
	// URL is the server's WebSocket address (ws://127.0.0.1:20461/ws); an
	// http:// address or one without a path is turned into it. A
	// comma-separated list names the nodes of one server: connections are
	// spread over them round-robin (Options.Node).
	URL string
	// URLs are URL's addresses, one a node, filled in by Check.
	URLs []string
	// Sources are the local addresses connections are spread over, so the
	// ephemeral port range does not cap the number of connections.
	Sources []net.IP
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Password is the bench users' password.
	Password string
	// Prefix starts every bench user's nickname.
	Prefix string
	// SessionFile keeps the bench users' sids between runs, so a second run
	// resumes sessions instead of hashing passwords again ("" : none).
	SessionFile string
	// Server reads the server's own figures (nil: not available).
	Server func() (ServerFigures, error)
	// Progress gets a line now and then on long runs (nil: silent).
	Progress io.Writer
	// Logins is how many logins run at once while a workload sets up.
	Logins int
}

// ServerFigures are what the server says about itself, or the sums over
// the processes that serve it (ProcessFigures).
type ServerFigures struct {
	RSSBytes    uint64  `json:"rss_bytes"`
	CPUSeconds  float64 `json:"cpu_s"`
	Connections int     `json:"connections"`
	Goroutines  int     `json:"goroutines"`
	Commits     int64   `json:"store_commits"`
	// Processes is how many processes the figures sum (0: the server's
	// own status, through its control socket).
	Processes int `json:"processes,omitempty"`
}

// toolCPU is the CPU time, user and system, that this process has used:
// the load tool's own share of the machine, reported next to the server's.
func toolCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// perCommit is how many messages each of the store's group commits
// carried between two readings of the server's figures, or 0 if unknown.
func perCommit(msgs int64, before, after *ServerFigures) float64 {
	if before == nil || after == nil || after.Commits <= before.Commits {
		return 0
	}
	return float64(msgs) / float64(after.Commits-before.Commits)
}

// Check validates the options and fills in defaults.
func (o *Options) Check() error {
	urls, err := ParseURLs(o.URL)
	if err != nil {
		return err
	}
	o.URLs, o.URL = urls, strings.Join(urls, ",")
	for _, ip := range o.Sources {
		if !ip.IsLoopback() {
			return fmt.Errorf("-src: %s is not a loopback address", ip)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Password == "" {
		o.Password = "bench-password"
	}
	if o.Prefix == "" {
		o.Prefix = "bench"
	}
	if o.Logins <= 0 {
		o.Logins = 8
	}
	return nil
}

// defaultURL is the address of a server started with the defaults.
const defaultURL = "ws://127.0.0.1:20461/ws"

// ParseURLs reads -url: one WebSocket address, or a comma-separated list
// of the nodes of one server, each turned into ws://HOST:PORT/PATH (an
// http:// address becomes ws://, a missing path /ws) and each on loopback.
// An empty list is the default address; a node named twice is refused, as
// the spread over the nodes would be uneven.
func ParseURLs(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		list = defaultURL
	}
	var urls []string
	seen := map[string]bool{}
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return nil, fmt.Errorf("-url: an empty address in %q", list)
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("-url: %v", err)
		}
		switch u.Scheme {
		case "http":
			u.Scheme = "ws"
		case "https":
			u.Scheme = "wss"
		case "ws", "wss":
		default:
			return nil, fmt.Errorf("-url: %s: scheme %q is not ws or http", raw, u.Scheme)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/ws"
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("-url: %s: no query or fragment, please: the tool adds its own", raw)
		}
		if err := loopbackHost(u.Hostname()); err != nil {
			return nil, fmt.Errorf("-url: %v", err)
		}
		s := u.String()
		if seen[s] {
			return nil, fmt.Errorf("-url: %s is named twice", s)
		}
		seen[s] = true
		urls = append(urls, s)
	}
	return urls, nil
}

// Node is the address connection number slot dials: the nodes in turn, so
// that any run of consecutive slots is spread evenly over them (and two
// consecutive slots are on different nodes when there are several).
func (o *Options) Node(slot int) string {
	if len(o.URLs) == 0 {
		return o.URL
	}
	return o.URLs[slot%len(o.URLs)]
}

// loopbackHost accepts a host only if every address it names is loopback:
// the tool never sends load anywhere else.
func loopbackHost(host string) error {
	if host == "" {
		return errors.New("no host")
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is %s, not a loopback address; the load tool only targets loopback", host, ip)
		}
	}
	return nil
}

// ParseSources reads "127.0.0.2-127.0.0.9" or a comma-separated list of
// addresses and ranges.
func ParseSources(s string) ([]net.IP, error) {
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(from))
		if err != nil {
			return nil, fmt.Errorf("-src: %v", err)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(strings.TrimSpace(to)); err != nil {
				return nil, fmt.Errorf("-src: %v", err)
			}
		}
		if b.Less(a) {
			return nil, fmt.Errorf("-src: %s comes after %s", a, b)
		}
		for ip := a; ; ip = ip.Next() {
			if !ip.IsLoopback() {
				return nil, fmt.Errorf("-src: %s is not a loopback address", ip)
			}
			if len(out) >= 256 {
				return nil, errors.New("-src: at most 256 addresses")
			}
			out = append(out, net.IP(ip.AsSlice()))
			if ip == b {
				break
			}
		}
	}
	return out, nil
}

// source is the address the i-th connection dials from (nil: any).
func (o *Options) source(i int) net.IP {
	if len(o.Sources) == 0 {
		return nil
	}
	return o.Sources[i%len(o.Sources)]
}

func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
	}
}

// progressEvery prints line() every interval until the returned func runs.
func (o *Options) progressEvery(every time.Duration, line func() string) func() {
	if o.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				o.progress("%s", line())
			case <-stop:
				return
			}
		}
	}()
	return func() { close(stop) }
}

// apiError is an error reply.
type apiError struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// sendBody is an im/send body, built without reflection: the load tool
// shares the machine with the server, so its own per-message work is kept
// small.
func sendBody(to, text, cid string) []byte {
	b := make([]byte, 0, 32+len(to)+len(text)+len(cid))
	b = append(b, `{"to":`...)
	b, _ = jsontext.AppendQuote(b, to)
	b = append(b, `,"text":`...)
	b, _ = jsontext.AppendQuote(b, text)
	if cid != "" {
		b = append(b, `,"cid":`...)
		b, _ = jsontext.AppendQuote(b, cid)
	}
	return append(b, '}')
}

// replyID reads the "id" number of an im/send reply ({"id":N,...}).
func replyID(body []byte) (int64, bool) {
	const key = `"id":`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(key):]
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return 0, false
	}
	id, err := strconv.ParseInt(string(bytes.TrimSpace(rest[:end])), 10, 64)
	return id, err == nil
}

func replyError(body []byte) *apiError {
	if !strings.Contains(string(body[:min(len(body), 16)]), `"error"`) {
		return nil
	}
	var r struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	return r.Error
}

// Histogram counts durations in log-linear buckets (about 3 % wide), so
// millions of samples cost a few kilobytes and no sorting.
type Histogram struct {
	counts [64 * 32]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

// bucketOf maps microseconds to a bucket: exact below 64, then 32
// buckets per power of two.
func bucketOf(us uint64) int {
	if us < 64 {
		return int(us)
	}
	exp := bits.Len64(us) - 6
	return 64 + (exp-1)*32 + int(us>>uint(exp)) - 32
}

// bucketValue is the middle of bucket b, in microseconds.
func bucketValue(b int) uint64 {
	if b < 64 {
		return uint64(b)
	}
	exp := (b-64)/32 + 1
	mant := uint64((b-64)%32 + 32)
	return mant<<uint(exp) + (uint64(1)<<uint(exp))/2
}

// Add records one duration.
func (h *Histogram) Add(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	b := bucketOf(us)
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile is the duration below which the fraction q of samples fall.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= want {
			return min(time.Duration(bucketValue(b))*time.Microsecond, time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Summary reads the histogram's percentiles.
func (h *Histogram) Summary() Latency {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
	return Latency{P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)),
		Max: ms(time.Duration(h.max.Load()))}
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms", l.P50, l.P90, l.P99, l.Max)
}

// sessions remembers bench users' sids between runs (server URL and
// nickname -> sid), so that repeated runs resume instead of hashing. Each
// line names the node the session was used on: a run over several nodes
// spreads its users the same way each time, so each finds its own.
type sessions struct {
	mu    sync.Mutex
	file  string
	urls  map[string]bool
	sids  map[sessionKey]string
	dirty bool
}

type sessionKey struct{ url, nick string }

func loadSessions(file string, serverURLs []string) *sessions {
	s := &sessions{file: file, urls: map[string]bool{}, sids: map[sessionKey]string{}}
	for _, u := range serverURLs {
		s.urls[u] = true
	}
	if file == "" {
		return s
	}
	f, err := os.Open(file)
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && s.urls[fields[0]] {
			s.sids[sessionKey{fields[0], fields[1]}] = fields[2]
		}
	}
	return s
}

func (s *sessions) get(serverURL, nick string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sids[sessionKey{serverURL, nick}]
}

func (s *sessions) put(serverURL, nick, sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sessionKey{serverURL, nick}
	if s.sids[k] != sid {
		s.sids[k], s.dirty = sid, true
	}
}

// save writes the file back (mode 0600: sids are credentials), keeping
// other servers' lines.
func (s *sessions) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == "" || !s.dirty {
		return nil
	}
	var keep []string
	if old, err := os.ReadFile(s.file); err == nil {
		for _, line := range strings.Split(string(old), "\n") {
			if f := strings.Fields(line); len(f) == 3 && !s.urls[f[0]] {
				keep = append(keep, line)
			}
		}
	}
	for k, sid := range s.sids {
		keep = append(keep, k.url+" "+k.nick+" "+sid)
	}
	if err := os.MkdirAll(filepath.Dir(s.file), 0o700); err != nil {
		return err
	}
	tmp := s.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	s.dirty = false
	return os.Rename(tmp, s.file)
}

// user is a bench user's identity on the server.
type user struct {
	nick string
	id   int64
	sid  string
}

// withDeadline bounds ctx by the run's timeout.
func (o *Options) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.Timeout)
}

// clockTicks is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTicks = 100

// ProcessFigures reads a server's CPU time and memory from /proc, for a
// server with no control socket to ask (the bare stack's probe,
// FanoutConfig.Plain) or one that runs as several processes (the nodes of
// a cluster, its redis-server and its postgres): the figures are summed
// over every process given and every process below it (a postgres
// server's backends), and Processes says how many that was. A process's
// CPU time counts the children it has reaped, so a backend that ends
// between two readings takes none of its time with it. RSS sums each
// process's resident pages, so memory two processes share (PostgreSQL's
// shared buffers) counts once for each. Connections, goroutines and
// commits stay zero.
func ProcessFigures(pids ...int) func() (ServerFigures, error) {
	return func() (ServerFigures, error) {
		roots := map[int]procStat{}
		for _, pid := range pids {
			st, err := readProcStat(pid)
			if err != nil {
				return ServerFigures{}, err
			}
			roots[pid] = st
		}
		all := map[int]procStat{}
		children := map[int][]int{}
		if entries, err := os.ReadDir("/proc"); err == nil {
			for _, e := range entries {
				pid, err := strconv.Atoi(e.Name())
				if err != nil {
					continue
				}
				if st, err := readProcStat(pid); err == nil { // it may have ended since
					all[pid] = st
					children[st.ppid] = append(children[st.ppid], pid)
				}
			}
		}
		for pid, st := range roots {
			all[pid] = st
		}
		var f ServerFigures
		counted := map[int]bool{}
		var walk func(pid int)
		walk = func(pid int) {
			if counted[pid] {
				return
			}
			counted[pid] = true
			st := all[pid]
			f.CPUSeconds += float64(st.cpuTicks) / clockTicks
			f.RSSBytes += st.rssPages * uint64(os.Getpagesize())
			f.Processes++
			for _, c := range children[pid] {
				walk(c)
			}
		}
		for _, pid := range pids {
			walk(pid)
		}
		return f, nil
	}
}

// procStat is what ProcessFigures reads of one process.
type procStat struct {
	ppid     int
	cpuTicks uint64 // user and system, its own and its reaped children's
	rssPages uint64
}

func readProcStat(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing parenthesis (the state is field 3).
	end := bytes.LastIndexByte(raw, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(raw[end+1:]))
	if len(fields) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var v [5]uint64
	var errs []error
	for i, field := range []int{11, 12, 13, 14, 21} { // utime, stime, cutime, cstime, rss
		var err error
		v[i], err = strconv.ParseUint(fields[field], 10, 64)
		errs = append(errs, err)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err := errors.Join(append(errs, err)...); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procStat{ppid: ppid, cpuTicks: v[0] + v[1] + v[2] + v[3], rssPages: v[4]}, nil
}

// ParsePIDs reads -pid: a comma-separated list of process ids, each
// positive and named once.
func ParsePIDs(list string) ([]int, error) {
	var pids []int
	seen := map[int]bool{}
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pid, err := strconv.Atoi(part)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-pid: %q is not a process id", part)
		}
		if seen[pid] {
			return nil, fmt.Errorf("-pid: %d is named twice", pid)
		}
		seen[pid] = true
		pids = append(pids, pid)
	}
	return pids, nil
}
