package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"dce/app/control"
	"dce/common/config"
)

// Command is one `dce bench` command line: its name under bench, the line
// `dce help` shows, and what runs it with its arguments.
type Command struct {
	Name, Usage string
	Run         func(ctx context.Context, args []string, out io.Writer) error
}

// Commands are the load tool's command lines. Each runs against a running
// server (found through -url, its figures through the control socket of
// -config's runtime folder) until it ends or is interrupted, and prints its
// result as JSON.
func Commands() []Command {
	return []Command{
		{"conns", "Load: open and hold N logged-in WebSocket connections: -n N [-rate R] [-hold 30s]", runConns},
		{"fanout", "Load: N lobby readers, P senders, M messages: -n N -pubs P -msgs M [-rate R] [-size B] [-group] [-plain -pid PID]", runFanout},
		{"pairs", "Load: K pairs exchanging durable private messages: -pairs K -duration S", runPairs},
		{"login", "Load: N password logins: -n N [-c C]", runLogin},
		{"presence", "Load: N users come online while W watch: -watchers W -n N [-within S]", runPresence},
		{"floor", "Load: this machine's best paced fan-out over loopback TCP, no server: -n N -msgs M -rate R", runFloor},
		{"floor-read", "Load: the reading side of bench floor, which starts it", runFloorRead},
		{"disk", "Load: this disk's fdatasync latency, the floor under synchronous=FULL: [-n N] [-rate R] [-dir DIR]", runDisk},
		{"fill", "Store: write a store file of N messages of mixed text (no server): -db FILE [-n 1000000] [-users 1000]", runFill},
		{"search", "Load: im/search latency by kind of query, one at a time: [-n 2000] [-nick bench-fill-1]", runSearch},
		{"report", "Medians of `dce bench -json -label L` lines by label, as a Markdown table: [-svg FILE] < RESULTS", runReport},
	}
}

// flags are the flags every workload shares.
type flags struct {
	fs       *flag.FlagSet
	url      string
	src      string
	json     bool
	timeout  time.Duration
	prefix   string
	password string
	sessions string
	logins   int
	config   string
	label    string
	profile  string
	cores    int
	pids     string

	storePath string // the server's database file, from its configuration
}

func newFlags(name string, out io.Writer) *flags {
	f := &flags{fs: flag.NewFlagSet("dce bench "+name, flag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.StringVar(&f.url, "url", defaultURL, "the server's WebSocket address (loopback only); a comma-separated list for its nodes, "+
		"which connections are spread over in turn (then give -pid)")
	f.fs.StringVar(&f.src, "src", "", "local addresses to spread connections over, e.g. 127.0.0.2-127.0.0.9")
	f.fs.BoolVar(&f.json, "json", false, "print one JSON summary line")
	f.fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "hard bound on the whole run")
	f.fs.StringVar(&f.prefix, "prefix", "bench", "bench users' nickname prefix")
	f.fs.StringVar(&f.password, "password", "bench-password", "bench users' password")
	f.fs.StringVar(&f.sessions, "sessions", "", "file that keeps bench sessions between runs (default RUNTIME/bench-sessions)")
	f.fs.IntVar(&f.logins, "logins", 8, "connections set up at once")
	f.fs.StringVar(&f.config, "config", "", "the server's configuration file, to find its control socket for its CPU and memory")
	f.fs.StringVar(&f.label, "label", "", "a name for this run in the JSON line, which `dce bench report` groups by")
	f.fs.StringVar(&f.profile, "cpuprofile", "", "write the load tool's own CPU profile to this file (its share of the machine)")
	// One core: the tool mostly waits for frames, and on one P the runtime
	// wakes no second thread to look for them, so the tool costs the
	// machine less and leaves the server the other core (README,
	// Performance).
	f.fs.IntVar(&f.cores, "cores", 1, "CPU cores (GOMAXPROCS) the load tool itself uses; 0: all")
	f.fs.StringVar(&f.pids, "pid", "", "read the server's CPU and memory from /proc/PID instead of its control socket (a server without one); "+
		"a comma-separated list is summed, with each process's children (every node, redis-server, postgres)")
	return f
}

// parse reads args and builds the options; the server's figures come from
// its control socket when this machine runs it.
func (f *flags) parse(args []string) (Options, error) {
	if err := f.fs.Parse(args); err != nil {
		return Options{}, err
	}
	if f.fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments: %s", strings.Join(f.fs.Args(), " "))
	}
	sources, err := ParseSources(f.src)
	if err != nil {
		return Options{}, err
	}
	cfg, err := config.Load(f.config, os.Environ())
	if err != nil {
		return Options{}, err
	}
	if f.sessions == "" {
		f.sessions = filepath.Join(cfg.Server.RuntimeDir, "bench-sessions")
	}
	f.storePath = cfg.StorePath()
	socket := filepath.Join(cfg.Server.RuntimeDir, control.SocketName)
	o := Options{URL: f.url, Sources: sources, Timeout: f.timeout, Password: f.password, Prefix: f.prefix,
		SessionFile: f.sessions, Logins: f.logins, Progress: os.Stderr,
		Server: func() (ServerFigures, error) {
			raw, err := control.Call(socket, "status", 5*time.Second)
			if err != nil {
				return ServerFigures{}, err
			}
			var st ServerFigures // the server's status has these figures under the same names
			err = json.Unmarshal(raw, &st)
			return st, err
		}}
	pids, err := ParsePIDs(f.pids)
	if err != nil {
		return Options{}, err
	}
	if len(pids) > 0 {
		o.Server = ProcessFigures(pids...)
	}
	if err := o.Check(); err != nil {
		return Options{}, err
	}
	if len(o.URLs) > 1 && len(pids) == 0 {
		return Options{}, fmt.Errorf("-url names %d nodes, and no one control socket speaks for them all: give their process ids "+
			"with -pid PID,PID,... (and redis-server's and postgres's, to count the whole server's CPU and memory)", len(o.URLs))
	}
	return o, nil
}

// runBench runs a workload until it ends or the user interrupts it, then
// prints its result as JSON (-json) or as indented lines.
func runBench[R any](ctx context.Context, f *flags, args []string, out io.Writer, run func(context.Context, Options) (R, error)) error {
	o, err := f.parse(args)
	if err != nil {
		return err
	}
	c, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	if f.cores > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(f.cores))
	}
	if f.profile != "" {
		file, err := os.Create(f.profile)
		if err != nil {
			return err
		}
		defer file.Close()
		if err := pprof.StartCPUProfile(file); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := run(c, o)
	var fields map[string]any
	raw, _ := json.Marshal(res)
	_ = json.Unmarshal(raw, &fields)
	if f.label != "" {
		fields["label"] = f.label
	}
	var line []byte
	if f.json {
		line, _ = json.Marshal(fields)
	} else {
		line, _ = json.MarshalIndent(fields, "", "  ")
	}
	fmt.Fprintln(out, string(line))
	return err
}

// runConns is `dce bench conns`.
func runConns(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("conns", out)
	var cfg ConnsConfig
	f.fs.IntVar(&cfg.N, "n", 1000, "connections (one user and session each)")
	f.fs.Float64Var(&cfg.Rate, "rate", 0, "new connections a second (0: as fast as -logins allows)")
	f.fs.DurationVar(&cfg.Hold, "hold", 30*time.Second, "how long to hold them")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (ConnsResult, error) { return Conns(c, o, cfg) })
}

// runFanout is `dce bench fanout`.
func runFanout(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("fanout", out)
	var cfg FanoutConfig
	f.fs.IntVar(&cfg.Readers, "n", 1000, "readers")
	f.fs.IntVar(&cfg.Pubs, "pubs", 2, "senders")
	f.fs.IntVar(&cfg.Msgs, "msgs", 20000, "messages in all")
	f.fs.Float64Var(&cfg.Rate, "rate", 0, "messages a second in all (0: full speed)")
	f.fs.IntVar(&cfg.Size, "size", 64, "text bytes per message (at least 40)")
	f.fs.StringVar(&cfg.To, "to", "room:lobby", "the conversation: room:lobby or group:ID")
	f.fs.IntVar(&cfg.Window, "window", 32, "sends in flight per sender")
	f.fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "give up on deliveries after this long without one")
	f.fs.BoolVar(&cfg.Group, "group", false, "send to an open group of every reader and sender, made for the run, instead of -to")
	f.fs.BoolVar(&cfg.Plain, "plain", false, "drive a plain broadcast server (the bare stack's probe: ?room=lobby, text relayed to the room) instead of the chat; give its -pid")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (FanoutResult, error) { return Fanout(c, o, cfg) })
}

// runPairs is `dce bench pairs`.
func runPairs(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("pairs", out)
	var cfg PairsConfig
	f.fs.IntVar(&cfg.Pairs, "pairs", 100, "pairs of users")
	f.fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long they send")
	f.fs.IntVar(&cfg.Window, "window", 8, "sends in flight per user")
	f.fs.IntVar(&cfg.Size, "size", 64, "text bytes per message (at least 40)")
	f.fs.BoolVar(&cfg.Verify, "verify", true, "afterwards, find every acked message in the store with im/load")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (PairsResult, error) { return Pairs(c, o, cfg) })
}

// runLogin is `dce bench login`.
func runLogin(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("login", out)
	var cfg LoginConfig
	f.fs.IntVar(&cfg.N, "n", 200, "logins")
	f.fs.IntVar(&cfg.Concurrency, "c", 4, "logins in flight")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (LoginResult, error) { return Login(c, o, cfg) })
}

// runPresence is `dce bench presence`.
func runPresence(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("presence", out)
	var cfg PresenceConfig
	f.fs.IntVar(&cfg.Watchers, "watchers", 1000, "connections that follow the online list")
	f.fs.IntVar(&cfg.N, "n", 2000, "users who come online")
	f.fs.DurationVar(&cfg.Within, "within", 20*time.Second, "the time they arrive in")
	f.fs.BoolVar(&cfg.WatchAll, "watch-all", false, "the arriving users follow the list too")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (PresenceResult, error) {
		return Presence(c, o, cfg)
	})
}

// runFloor is `dce bench floor`. By default its reading side runs in a
// second process (`dce bench floor-read`), as the load tool and the server
// are two processes.
func runFloor(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("floor", out)
	var cfg FloorConfig
	f.fs.IntVar(&cfg.Readers, "n", 1000, "loopback connections")
	f.fs.IntVar(&cfg.Msgs, "msgs", 30, "messages, each written to every connection")
	f.fs.Float64Var(&cfg.Rate, "rate", 2, "messages a second")
	f.fs.IntVar(&cfg.Size, "size", 300, "bytes per message (about an im/message push)")
	procs := f.fs.Int("procs", 2, "1: read in this process; 2: in a second one")
	// The writing side stands in for the server: all cores by default. The
	// reading side (floor-read) is the load tool, on its default one.
	f.fs.Lookup("cores").DefValue = "0"
	f.cores = 0
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (FloorResult, error) {
		if *procs == 2 {
			cfg.Reader = func(c context.Context, addr string) (FloorReadResult, error) {
				return floorReader(c, addr, f, cfg)
			}
		}
		return Floor(c, o, cfg)
	})
}

// floorReader runs `dce bench floor-read` for runFloor and reads its
// JSON line.
func floorReader(ctx context.Context, addr string, f *flags, cfg FloorConfig) (FloorReadResult, error) {
	var res FloorReadResult
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "floor-read", "-json", "-addr", addr, "-src", f.src,
		"-n", fmt.Sprint(cfg.Readers), "-msgs", fmt.Sprint(cfg.Msgs), "-size", fmt.Sprint(cfg.Size),
		"-timeout", f.timeout.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jsonErr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jsonErr != nil && err == nil {
		err = fmt.Errorf("floor-read printed %q: %w", out, jsonErr)
	}
	if err != nil {
		return res, fmt.Errorf("floor-read: %w", err)
	}
	return res, nil
}

// runFloorRead is `dce bench floor-read`, the reading side of `dce bench
// floor`, which starts it.
func runFloorRead(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("floor-read", out)
	var cfg FloorConfig
	addr := f.fs.String("addr", "", "the floor's loopback listener")
	f.fs.IntVar(&cfg.Readers, "n", 1000, "connections")
	f.fs.IntVar(&cfg.Msgs, "msgs", 30, "messages to read on each")
	f.fs.IntVar(&cfg.Size, "size", 300, "bytes per message")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (FloorReadResult, error) {
		return FloorRead(c, o, *addr, cfg)
	})
}

// runDisk is `dce bench disk`: fdatasync latency in the store's folder.
func runDisk(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("disk", out)
	var cfg DiskConfig
	f.fs.StringVar(&cfg.Dir, "dir", "", "the folder to probe (default: the store's, from the configuration)")
	f.fs.IntVar(&cfg.N, "n", 300, "appends, each made durable before the next")
	f.fs.Float64Var(&cfg.Rate, "rate", 20, "appends a second")
	f.fs.IntVar(&cfg.Size, "size", 8192, "bytes per append (about a commit of one message)")
	return runBench(ctx, f, args, out, func(c context.Context, o Options) (DiskResult, error) {
		if cfg.Dir == "" {
			cfg.Dir = filepath.Dir(f.storePath)
		}
		return Disk(c, o, cfg)
	})
}

// runReport is `dce bench report`: the medians of the JSON lines on
// standard input, one table row per label.
func runReport(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dce bench report", flag.ContinueOnError)
	fs.SetOutput(out)
	in := fs.String("in", "-", "the results file (- : standard input)")
	svg := fs.String("svg", "", "also draw fan-out latency against readers into this SVG file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		file, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer file.Close()
		r = file
	}
	runs, err := ReadRuns(r)
	if err != nil {
		return err
	}
	WriteTable(out, runs)
	if *svg != "" {
		return os.WriteFile(*svg, LatencyChart(runs), 0o644)
	}
	return nil
}
