// Package boot is the composition root. Open opens the listeners first (so
// a busy port fails at once and tests can ask for port 0), then wires store
// -> sessions -> hub -> service -> controllers -> router -> transports; Close
// undoes it in reverse. The program, the tests and the load tool all start
// the whole server through here.
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"dce/app/bus"
	"dce/app/cluster"
	"dce/app/control"
	"dce/app/hub"
	"dce/app/node"
	"dce/app/session"
	"dce/app/transport"
	"dce/common/config"
	"dce/common/model"
	imconfig "dce/project/im/config"
	"dce/project/im/controller"
	"dce/project/im/service"
	"dce/www"
)

// Version is the build's version, shown by status and used as the UI's
// cache-buster.
var Version = "dev"

// Options are how the server runs, apart from its configuration.
type Options struct {
	// Control opens the control socket and writes the pid file under the
	// runtime folder. Tests that run several servers leave it off.
	Control bool
	// LogOutput is where logs go; stderr when nil.
	LogOutput io.Writer
	// Reload re-reads the configuration for `dce websocket reload`.
	Reload func() (config.Config, error)
	// ExtraNodes are added to the node table (tests add nodes that panic
	// or block, to prove containment).
	ExtraNodes []node.Node
}

// Server is a running server.
type Server struct {
	pprof    *http.Server // net/http/pprof on server.pprof_addr, or nil
	cfg      config.Config
	opts     Options
	Log      *slog.Logger
	logLevel *slog.LevelVar
	started  time.Time
	node     string // this node's name (server.node, or host name and port)

	Store    Store
	cluster  *cluster.Cluster // Redis, with several nodes; nil for one
	remote   *remoteGate      // another node's changes, to the chat
	Sessions *session.Cache
	Hub      *hub.Hub
	Chat     *service.Service
	Router   *node.Router

	live    atomic.Pointer[transport.Live]
	shared  *transport.Options
	http    *transport.HTTP
	tcp     *transport.TCP
	udp     *transport.UDP
	httpLn  net.Listener
	tcpLn   net.Listener
	udpConn *net.UDPConn
	control *control.Server

	rate      rateMeter
	reloadMu  sync.Mutex    // one reload at a time
	running   config.Config // the settings in force: cfg with what reloads applied
	stopping  chan struct{} // closed when a stop is asked for
	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
	served    sync.WaitGroup
}

// Open starts a server.
func Open(ctx context.Context, cfg config.Config, opts Options) (_ *Server, err error) {
	// s is not the named result: `return nil, err` must leave it for the
	// deferred abandon below.
	s := &Server{cfg: cfg, running: cfg, opts: opts, started: time.Now(), stopping: make(chan struct{}), logLevel: new(slog.LevelVar)}
	s.Log = newLogger(cfg.Server, opts.LogOutput, s.logLevel)
	raiseFileLimit()
	defer func() {
		if err != nil {
			s.abandon()
		}
	}()
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.node = nodeName(cfg.Server.Node, s.httpLn.Addr())
	if cfg.Clustered() {
		s.Log = s.Log.With("node", s.node)
	}
	if err := os.MkdirAll(cfg.Server.RuntimeDir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime folder: %w", err)
	}
	if cfg.Clustered() {
		if s.cluster, err = cluster.Open(ctx, cluster.Options{URL: cfg.Redis.URL, Prefix: cfg.Redis.Prefix, Node: s.node,
			PresenceGrace: cfg.Session.PresenceGrace.Duration, Log: s.Log}); err != nil {
			return nil, fmt.Errorf("redis.url = %s: %w", config.RedactURL(cfg.Redis.URL), err)
		}
	}
	s.remote = &remoteGate{}
	if s.Store, err = openStore(ctx, cfg, false, s.remote.handle); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.wire()
	// Another node's changes wait in the gate while the groups load:
	// those the loaded groups may miss are handed on after, in order.
	loadedFrom, err := s.Store.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.Chat.LoadGroups(ctx); err != nil {
		return nil, fmt.Errorf("store: loading groups: %w", err)
	}
	s.remote.open(s.Chat.Remote, loadedFrom)
	if opts.Control {
		if err := s.openControl(); err != nil {
			return nil, err
		}
	}
	if err := s.servePprof(); err != nil {
		return nil, err
	}
	s.serve()
	s.Log.Info("server started", "node", s.node, "http", s.httpLn.Addr().String(), "tcp", s.tcpLn.Addr().String(),
		"udp", s.udpConn.LocalAddr().String(), "store", cfg.StorePath(), "synchronous", cfg.Store.Synchronous)
	return s, nil
}

// listen opens the three listeners, failing at once on a busy port.
func (s *Server) listen() error {
	host := s.cfg.Server.Host
	var err error
	if s.httpLn, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(s.cfg.Server.Port))); err != nil {
		return portError("HTTP/WebSocket", s.cfg.Server.Port, err)
	}
	if s.tcpLn, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(s.cfg.Server.TCPPort))); err != nil {
		return portError("TCP", s.cfg.Server.TCPPort, err)
	}
	s.httpLn = transport.SendBufferListener(s.httpLn, s.cfg.Transport.SendBufferBytes)
	s.tcpLn = transport.SendBufferListener(s.tcpLn, s.cfg.Transport.SendBufferBytes)
	addr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(s.cfg.Server.UDPPort)))
	if err != nil {
		return err
	}
	if s.udpConn, err = net.ListenUDP("udp", addr); err != nil {
		return portError("UDP", s.cfg.Server.UDPPort, err)
	}
	return nil
}

func portError(what string, port int, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s port %d is already in use (is another server running? `./dce websocket status`)", what, port)
	}
	return fmt.Errorf("%s port %d: %w", what, port, err)
}

// wire builds everything between the store and the transports.
func (s *Server) wire() {
	cfg := s.cfg
	var chat *service.Service
	hopts := hub.Options{
		QueueBytes: cfg.Transport.QueueBytes, QueueFrames: cfg.Transport.QueueFrames,
		WriteTimeout: cfg.Transport.WriteTimeout.Duration, WriteDelay: cfg.Transport.WriteDelay.Duration,
		MaxConns:        maxConnections(cfg.Limits.MaxConnections),
		MaxConnsPerUser: cfg.Limits.ConnectionsPerUser, MaxAnonPerIP: cfg.Limits.AnonConnectionsPerIP,
		PresenceGrace: cfg.Session.PresenceGrace.Duration, Log: s.Log,
		OnPresence: func(user int64, online bool, places int) { chat.PresenceChanged(user, online, places) },
	}
	deps := service.Deps{Store: s.Store, Log: s.Log}
	if cl := s.cluster; cl != nil {
		cl.HubOptions(&hopts) // presence and connection slots summed over the nodes
		s.Hub = hub.New(hopts)
		s.Sessions = session.NewTiered(s.Store, cl.SessionTier(), cfg.Session.Lifetime.Duration, nil)
		deps.Bus, deps.Hub, deps.Limiter, deps.Peers = cl.Bus(), cl.Hub(), cl.Limiter(), cl.Hub()
		deps.Stored = bus.Local{Hub: s.Hub} // every node pushes the store's changes itself
	} else {
		s.Hub = hub.New(hopts)
		s.Sessions = session.New(s.Store, cfg.Session.CacheBytes, cfg.Session.Lifetime.Duration, nil)
		deps.Bus, deps.Hub = bus.Local{Hub: s.Hub}, s.Hub
	}
	deps.Sessions = s.Sessions
	chat = service.New(deps, cfg)
	s.Chat = chat
	if s.cluster != nil {
		s.cluster.Start(s.Hub, cluster.Events{Presence: chat.PresenceChanged, AccountChanged: chat.AccountChanged})
	}
	s.Router = node.NewRouter(append(NodeTable(chat, s), s.opts.ExtraNodes...), node.RouterOptions{IsAdmin: chat.IsAdmin, Log: s.Log,
		MaxFrame: cfg.Limits.MaxFrameBytes})
	s.live.Store(liveSettings(cfg))
	topts := &transport.Options{Router: s.Router, Hub: s.Hub, Sessions: sessionsAdapter{chat, s.Sessions}, Admission: chat, Live: &s.live,
		Log: s.Log, PingInterval: cfg.Transport.PingInterval.Duration, PongWait: cfg.Transport.PongWait.Duration,
		WriteTimeout: cfg.Transport.WriteTimeout.Duration, TCPIdleTimeout: cfg.Transport.TCPIdleTimeout.Duration,
		FrameTimeout:   cfg.Transport.FrameTimeout.Duration,
		UDPPeerTimeout: cfg.Transport.UDPPeerTimeout.Duration, UDPPeers: cfg.Limits.UDPPeers,
		Secure: cfg.Server.Secure, TrustedProxies: cfg.Server.TrustedProxies}
	s.shared = topts
	ui := controller.NewImUi(Version)
	s.http = transport.NewHTTP(topts, transport.HTTPOptions{ReadTimeout: cfg.Transport.HTTPReadTimeout.Duration,
		Static: www.FS, Page: ui.Render, Healthy: s.healthy})
	s.tcp = transport.NewTCP(topts, s.tcpLn)
	s.udp = transport.NewUDP(topts, s.udpConn)
}

// NodeTable is every node: the chat's table and the kernel's command line.
// chat may be nil when the table is only printed.
func NodeTable(chat *service.Service, kernel *Server) []node.Node {
	k := &Kernel{server: kernel}
	return append(imconfig.Nodes(&controller.ImService{Chat: chat}, &controller.Admin{Chat: chat}), k.Nodes()...)
}

// sessionsAdapter gives the transports the session operations they need.
type sessionsAdapter struct {
	*service.Service
	cache *session.Cache
}

func (a sessionsAdapter) Get(ctx context.Context, sid string) (*model.Session, error) {
	return a.cache.Get(ctx, sid)
}

func liveSettings(cfg config.Config) *transport.Live {
	return &transport.Live{AllowedOrigins: cfg.Server.AllowedOrigins, BadFramesPerMinute: cfg.Limits.BadFramesPerMinute,
		LogoutOnClose: cfg.Session.LogoutOnClose}
}

func (s *Server) serve() {
	s.served.Add(3)
	go func() {
		defer s.served.Done()
		if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, net.ErrClosed) {
			s.Log.Error("http server stopped", "err", err)
		}
	}()
	go func() { defer s.served.Done(); s.tcp.Serve() }()
	go func() { defer s.served.Done(); s.udp.Serve() }()
}

// healthy is GET /healthz: the store must answer; Redis being away only
// degrades a node, which goes on serving its own connections.
func (s *Server) healthy() (degraded string, err error) {
	select {
	case <-s.stopping:
		return "", errors.New("stopping")
	default:
	}
	if _, err := s.Store.LastSeq(context.Background()); err != nil {
		return "", err
	}
	if s.cluster != nil && s.cluster.Down() {
		return "redis cannot be reached; serving this node's connections only", nil
	}
	return "", nil
}

// Addrs are the addresses the server listens on (useful with port 0).
func (s *Server) Addrs() (httpAddr, tcpAddr, udpAddr string) {
	return s.httpLn.Addr().String(), s.tcpLn.Addr().String(), s.udpConn.LocalAddr().String()
}

// UDPPeers is how many source addresses the UDP transport holds now,
// proven or not.
func (s *Server) UDPPeers() int { return s.udp.Peers() }

// Stopping is closed when a stop has been asked for (control socket).
func (s *Server) Stopping() <-chan struct{} { return s.stopping }

// RequestStop asks the program to stop, as `dce websocket stop` does.
func (s *Server) RequestStop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// Close shuts down in a fixed order: stop accepting; close every live
// connection with 1001 under a deadline; stop the service; flush and close
// the store; remove the control socket and pid file.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.RequestStop()
		deadline, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = s.tcp.Close()
		httpDone := make(chan struct{})
		go func() { _ = s.http.Shutdown(4 * time.Second); close(httpDone) }()
		s.Hub.Shutdown(deadline, node.CloseGoingAway, "server shutting down")
		<-httpDone
		// A Shutdown that came before Serve began finds no listener to
		// close, and the Serve that begins after it would never return.
		_ = s.httpLn.Close()
		// Connection goroutines finish their last store calls (logout on
		// close) before the store closes.
		for s.shared.Active() > 0 && deadline.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		_ = s.udp.Close()
		s.tcp.Wait()
		s.served.Wait()
		s.Chat.Close()
		if s.cluster != nil {
			_ = s.cluster.Close()
		}
		if s.pprof != nil {
			_ = s.pprof.Close()
		}
		s.closeErr = s.Store.Close()
		if s.control != nil {
			_ = s.control.Close()
			_ = os.Remove(s.pidPath())
		}
		s.Log.Info("server stopped")
	})
	return s.closeErr
}

// abandon releases whatever a failed Open had opened.
func (s *Server) abandon() {
	for _, c := range []io.Closer{s.httpLn, s.tcpLn} {
		if c != nil {
			_ = c.Close()
		}
	}
	if s.udpConn != nil {
		_ = s.udpConn.Close()
	}
	if s.cluster != nil {
		_ = s.cluster.Close()
	}
	if s.Store != nil {
		_ = s.Store.Close()
	}
	if s.control != nil {
		_ = s.control.Close()
	}
}

func newLogger(cfg config.Server, out io.Writer, level *slog.LevelVar) *slog.Logger {
	if out == nil {
		out = os.Stderr
	}
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(out, hopts))
	}
	return slog.New(slog.NewTextHandler(out, hopts))
}

// raiseFileLimit lifts the soft open-files limit to the hard one.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// maxConnections is the configured cap, or the open-files limit less a
// reserve for the store, listeners and logs.
func maxConnections(configured int) int {
	if configured > 0 {
		return configured
	}
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil || l.Cur > 1<<30 {
		return 0
	}
	return max(16, int(l.Cur)-128)
}

// nodeName is the node's name: the configured one, or this host's name
// and the HTTP port, which no other node on the machine can share.
func nodeName(configured string, httpAddr net.Addr) string {
	if configured != "" {
		return configured
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if tcp, ok := httpAddr.(*net.TCPAddr); ok {
		return host + ":" + strconv.Itoa(tcp.Port)
	}
	return host
}

// Node is the server's name among several nodes.
func (s *Server) Node() string { return s.node }

func (s *Server) pidPath() string { return filepath.Join(s.cfg.Server.RuntimeDir, "dce.pid") }

// SocketPath is the control socket of a configuration.
func SocketPath(cfg config.Config) string {
	return filepath.Join(cfg.Server.RuntimeDir, control.SocketName)
}
