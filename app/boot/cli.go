package boot

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"dce/app/control"
	"dce/app/node"
	"dce/common/config"
	"dce/common/model"
	"dce/common/store/sqlite"
	"dce/project/im/service"
)

// Kernel is the controller of the command-line nodes the kernel itself
// serves: running the server and talking to a running one.
type Kernel struct {
	server *Server
}

// Nodes are the kernel's rows of the node table.
func (k *Kernel) Nodes() []node.Node {
	return append(node.Group(node.Node{Methods: node.CLI, Auth: node.Public},
		node.Node{Path: "websocket/start", Name: "Run the server: [-host H] [-port P] [-tcp_port P] [-udp_port P] [-config FILE] [-daemon]", Do: k.Start},
		node.Node{Path: "websocket/stop", Name: "Stop the running server gracefully (clients get 1001)", Do: k.Stop},
		node.Node{Path: "websocket/reload", Name: "Re-read the settings that can change while running", Do: k.Reload},
		node.Node{Path: "websocket/status", Name: "The running server's figures, as JSON", Do: k.Status},
		node.Node{Path: "help", Name: "This table", Do: k.Help},
	), k.benchNodes()...)
}

// startFlags are websocket/start's flags, which override the configuration.
type startFlags struct {
	config, host           string
	port, tcpPort, udpPort int
	daemon                 bool
	set                    map[string]bool
}

func parseStartFlags(args []string, out io.Writer) (startFlags, error) {
	var f startFlags
	fs := flag.NewFlagSet("dce websocket start", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.config, "config", "", "configuration file (default "+config.DefaultFile+")")
	fs.StringVar(&f.host, "host", "", "address to listen on (default 0.0.0.0)")
	fs.IntVar(&f.port, "port", 0, "HTTP and WebSocket port (default 20461)")
	fs.IntVar(&f.tcpPort, "tcp_port", 0, "TCP port (default 20462)")
	fs.IntVar(&f.udpPort, "udp_port", 0, "UDP port (default 20463)")
	fs.BoolVar(&f.daemon, "daemon", false, "run in the background; logs go to runtime/logs/dce.log")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, nil
}

// loadConfig is the configuration after file, environment and flags.
func (f startFlags) loadConfig() (config.Config, error) {
	cfg, err := config.Load(f.config, os.Environ())
	if err != nil {
		return cfg, err
	}
	if f.set["host"] {
		cfg.Server.Host = f.host
	}
	if f.set["port"] {
		cfg.Server.Port = f.port
	}
	if f.set["tcp_port"] {
		cfg.Server.TCPPort = f.tcpPort
	}
	if f.set["udp_port"] {
		cfg.Server.UDPPort = f.udpPort
	}
	return cfg, cfg.Validate()
}

// Start runs the server until SIGINT, SIGTERM or `dce websocket stop`.
func (k *Kernel) Start(ctx *node.Context) (any, error) {
	flags, err := parseStartFlags(ctx.Args, ctx.Out)
	if err != nil {
		return nil, cliError(err)
	}
	cfg, err := flags.loadConfig()
	if err != nil {
		return nil, cliError(err)
	}
	if flags.daemon {
		return nil, daemonize(cfg, ctx.Args, ctx.Out)
	}
	srv, err := Open(ctx.Ctx, cfg, Options{Control: true, Reload: flags.loadConfig})
	if err != nil {
		return nil, cliError(err)
	}
	fmt.Fprintf(ctx.Out, "dce %s: open http://%s  (tcp %s, udp %s, pid %d)\n", Version, browsable(srv.httpLn.Addr()),
		srv.tcpLn.Addr(), srv.udpConn.LocalAddr(), os.Getpid())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				if cfg, err := flags.loadConfig(); err == nil {
					srv.Reload(cfg)
				} else {
					srv.Log.Error("reload", "err", err)
				}
				continue
			}
			srv.Log.Info("stopping", "signal", sig.String())
		case <-srv.Stopping():
			srv.Log.Info("stopping", "by", "control socket")
		}
		return nil, srv.Close(context.Background())
	}
}

// daemonize starts the server again in the background, detached, and waits
// until its control socket answers.
func daemonize(cfg config.Config, args []string, out io.Writer) error {
	logDir := filepath.Join(cfg.Server.RuntimeDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(logDir, "dce.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "-daemon" || a == "--daemon" })
	cmd := exec.Command(exe, append([]string{"websocket", "start"}, child...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("the server exited at start (%v); see %s", err, logFile.Name())
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := control.Call(SocketPath(cfg), "ping", time.Second); err == nil {
			fmt.Fprintf(out, "dce started in the background, pid %d; logs in %s\n", cmd.Process.Pid, logFile.Name())
			return nil
		}
	}
	return fmt.Errorf("the server did not answer within 15 s; see %s", logFile.Name())
}

// controlConfig is the configuration a control command uses to find the
// socket: the defaults, the file and the environment (-config FILE may be
// given).
func controlConfig(args []string) (config.Config, error) {
	fs := flag.NewFlagSet("dce websocket", flag.ContinueOnError)
	file := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	return config.Load(*file, os.Environ())
}

func (k *Kernel) call(ctx *node.Context, command string) (any, error) {
	cfg, err := controlConfig(ctx.Args)
	if err != nil {
		return nil, cliError(err)
	}
	timeout := 5 * time.Second
	if command == "stop" {
		timeout = 15 * time.Second
	}
	result, err := control.Call(SocketPath(cfg), command, timeout)
	if err != nil {
		return nil, cliError(err)
	}
	if command == "stop" { // wait until the server has let go of its socket
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if _, err := control.Call(SocketPath(cfg), "ping", time.Second); errors.Is(err, control.ErrNotRunning) {
				break
			}
		}
	}
	return node.RawJSON(result), nil
}

// Stop stops the running server.
func (k *Kernel) Stop(ctx *node.Context) (any, error) { return k.call(ctx, "stop") }

// Reload makes the running server re-read its configuration.
func (k *Kernel) Reload(ctx *node.Context) (any, error) { return k.call(ctx, "reload") }

// Status prints the running server's figures.
func (k *Kernel) Status(ctx *node.Context) (any, error) { return k.call(ctx, "status") }

// Help prints the node table.
func (k *Kernel) Help(ctx *node.Context) (any, error) {
	PrintTable(ctx.Out, NodeTable(nil, nil))
	return nil, nil
}

// PrintTable writes the node table: every node, the transports it serves,
// who may call it, and its name.
func PrintTable(w io.Writer, rows []node.Node) {
	shown := func(n node.Node) string {
		if n.Methods == node.CLI {
			return "dce " + strings.ReplaceAll(n.Path, "/", " ")
		}
		return n.Path
	}
	slices.SortFunc(rows, func(a, b node.Node) int { return strings.Compare(shown(a), shown(b)) })
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tMETHODS\tAUTH\tNAME")
	for _, n := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", shown(n), n.Methods, n.Auth, n.Name)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nFrames: PATH[:ID][;JSON] over WebSocket (ws://HOST:20461/ws), TCP lines (20462), UDP datagrams (20463);")
	fmt.Fprintln(w, "HTTP: POST /PATH with a JSON body. HTTP routes: GET / (the UI), /static/..., /healthz.")
}

// cliError marks an error as the user's, printed without a stack.
func cliError(err error) error { return &node.Error{Code: node.CodeBadRequest, Message: err.Error()} }

// RunCLI runs the command line: the longest path in the node table that the
// arguments spell, with the rest as the node's arguments. It returns the
// exit status.
func RunCLI(args []string, stdout, stderr io.Writer) int {
	table := NodeTable(nil, nil)
	path, rest := matchCLI(table, args)
	if path == "" {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "dce: unknown command %q\n\n", strings.Join(args, " "))
		}
		PrintTable(stderr, table)
		return 2
	}
	var chat *service.Service
	if !isKernelPath(path) { // a project node: it needs the chat, without listeners
		offline, closeOffline, err := openOffline(rest)
		if err != nil {
			fmt.Fprintln(stderr, "dce:", err)
			return 1
		}
		defer closeOffline()
		chat = offline
		table = NodeTable(chat, nil)
	}
	router := node.NewRouter(table, node.RouterOptions{IsAdmin: func(context.Context, int64) (bool, error) { return false, nil }})
	n := router.Lookup(path, node.CLI)
	result, err := router.Call(&node.Context{Ctx: context.Background(), Node: n, Peer: cliPeer{}, Args: rest, Out: stdout})
	if err != nil {
		e, _ := node.AsError(err)
		fmt.Fprintln(stderr, "dce:", e.Message)
		return 1
	}
	if raw, ok := result.(node.RawJSON); ok && len(raw) > 0 && string(raw) != "null" {
		var pretty any
		if json.Unmarshal(raw, &pretty) == nil {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(pretty)
		}
	}
	return 0
}

func matchCLI(table []node.Node, args []string) (string, []string) {
	for n := len(args); n > 0; n-- {
		path := strings.Join(args[:n], "/")
		for _, row := range table {
			if row.Path == path && row.Methods&node.CLI != 0 {
				return path, args[n:]
			}
		}
	}
	return "", nil
}

func isKernelPath(path string) bool {
	for _, n := range (&Kernel{}).Nodes() {
		if n.Path == path {
			return true
		}
	}
	return false
}

// openOffline opens the store and the chat service without any listener,
// for project command-line nodes such as `dce user admin`.
func openOffline(args []string) (*service.Service, func(), error) {
	cfg, err := config.Load(os.Getenv("DCE_CONFIG_FILE"), os.Environ())
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: cfg.StorePath(), Synchronous: cfg.Store.Synchronous})
	if err != nil {
		return nil, nil, err
	}
	chat := service.New(service.Deps{Store: st}, cfg)
	return chat, func() { chat.Close(); _ = st.Close() }, nil
}

// cliPeer is the command line as a node.Peer: local, never logged in.
type cliPeer struct{}

func (cliPeer) Transport() node.Method          { return node.CLI }
func (cliPeer) RemoteIP() string                { return "local" }
func (cliPeer) Session() *model.Session         { return nil }
func (cliPeer) SetSession(*model.Session) error { return nil }

// browsable is an address a browser on this machine can open: a server
// listening on every interface is reached at 127.0.0.1.
func browsable(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}
