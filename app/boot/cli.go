package boot

import (
	"context"
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
	"time"

	"dce/app/control"
	"dce/app/node"
	"dce/app/transport"
	"dce/common/config"
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
		node.Node{Path: "websocket/stop", Name: "Stop the running server gracefully (clients get 1001): [-config FILE]", Do: k.Stop},
		node.Node{Path: "websocket/reload", Name: "Re-read the settings that can change while running; name those that need a restart: [-config FILE]", Do: k.Reload},
		node.Node{Path: "websocket/status", Name: "The running server's figures, as JSON: [-config FILE]", Do: k.Status},
		node.Node{Path: "help", Name: "This table", Do: k.Help},
	), k.benchNodes()...)
}

// parseStartFlags reads websocket/start's flags: the configuration's own
// (-config, -host, the ports) and -daemon.
func parseStartFlags(args []string, out io.Writer) (flags *config.Flags, daemon bool, err error) {
	flags = &config.Flags{}
	fs := flag.NewFlagSet("dce websocket start", flag.ContinueOnError)
	fs.SetOutput(out)
	flags.Register(fs)
	fs.BoolVar(&daemon, "daemon", false, "run in the background; logs go to runtime/logs/dce.log")
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	if fs.NArg() > 0 {
		return nil, false, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return flags, daemon, nil
}

// loader loads the configuration from the file, the environment and the
// flags, at start and at each reload.
func loader(flags *config.Flags) func() (config.Config, error) {
	return func() (config.Config, error) { return flags.Load(os.Environ()) }
}

// Start runs the server until SIGINT, SIGTERM or `dce websocket stop`.
func (k *Kernel) Start(ctx *node.Context) (any, error) {
	flags, daemon, err := parseStartFlags(ctx.Args, ctx.Out)
	if err != nil {
		return nil, cliError(err)
	}
	load := loader(flags)
	cfg, err := load()
	if err != nil {
		return nil, cliError(err)
	}
	if daemon {
		return nil, daemonize(cfg, ctx.Args, ctx.Out)
	}
	srv, err := Open(ctx.Ctx, cfg, Options{Control: true, Reload: load})
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
				if cfg, err := load(); err == nil {
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

// nodeFlags reads the configuration's flags (-config FILE and the others
// start takes) from a command-line node's arguments, wherever they stand
// among the node's own, and returns the configuration and those others.
func nodeFlags(name string, args []string, usage io.Writer) (config.Config, []string, error) {
	var flags config.Flags
	fs := flag.NewFlagSet("dce "+name, flag.ContinueOnError)
	fs.SetOutput(usage)
	flags.Register(fs)
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return config.Config{}, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg, err := flags.Load(os.Environ())
	return cfg, rest, err
}

func (k *Kernel) call(ctx *node.Context, command string) (any, error) {
	cfg, rest, err := nodeFlags("websocket "+command, ctx.Args, ctx.Out)
	if err != nil {
		return nil, cliError(err)
	}
	if len(rest) > 0 {
		return nil, cliError(fmt.Errorf("unexpected arguments: %s", strings.Join(rest, " ")))
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
	transport.PrintTable(ctx.Out, NodeTable(nil, nil))
	return nil, nil
}

// cliError marks an error as the user's, printed without a stack.
func cliError(err error) error { return &node.Error{Code: node.CodeBadRequest, Message: err.Error()} }

// RunCLI runs the command line and returns the exit status. The kernel's
// nodes run as they are; a project node gets the chat on the store of the
// configuration its flags name, without listeners.
func RunCLI(args []string, stdout, stderr io.Writer) int {
	cli := &transport.CLI{Table: NodeTable(nil, nil), Bind: bindOffline, Stdout: stdout, Stderr: stderr}
	return cli.Run(context.Background(), args)
}

// bindOffline opens what a project node needs, for transport.CLI.Bind.
func bindOffline(path string, args []string) ([]node.Node, []string, func(), error) {
	if isKernelPath(path) {
		return NodeTable(nil, nil), args, nil, nil
	}
	cfg, rest, err := nodeFlags(strings.ReplaceAll(path, "/", " "), args, os.Stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	chat, release, err := openOffline(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return NodeTable(chat, nil), rest, release, nil
}

func isKernelPath(path string) bool {
	for _, n := range (&Kernel{}).Nodes() {
		if n.Path == path {
			return true
		}
	}
	return false
}

// openOffline opens the store of cfg and the chat service on it, without
// any listener, for project command-line nodes such as `dce user admin`.
// The store must exist: a command line never makes an empty one.
func openOffline(cfg config.Config) (*service.Service, func(), error) {
	st, err := openStore(context.Background(), cfg, true, nil)
	if err != nil {
		return nil, nil, err
	}
	chat := service.New(service.Deps{Store: st}, cfg)
	return chat, func() { chat.Close(); _ = st.Close() }, nil
}

// browsable is an address a browser on this machine can open: a server
// listening on every interface is reached at 127.0.0.1.
func browsable(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}
