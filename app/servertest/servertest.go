// Package servertest runs a real server on loopback ports for tests and the
// load tool, and gives it real clients: WebSocket, TCP, UDP and HTTP, all
// speaking frames. Nothing here is a stand-in: the server is boot.Open with
// a fresh runtime folder, the real SQLite file and the real transports.
package servertest

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest/syncbuf"
	"dce/common/config"
)

// Config is the configuration tests start from: loopback, ports chosen by
// the kernel, a fresh runtime folder, and cheaper password hashing than
// production (the server logs a warning about it; tests of hashing itself
// set the production parameters back).
func Config(tb testing.TB) config.Config {
	cfg := config.Default()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.Port, cfg.Server.TCPPort, cfg.Server.UDPPort = 0, 0, 0
	cfg.Server.RuntimeDir = tb.TempDir()
	cfg.Server.LogLevel = "warn"
	cfg.Auth.ArgonMemoryKiB, cfg.Auth.ArgonTime = 1024, 1
	cfg.Auth.HashWait = config.Duration{Duration: 5 * time.Second}
	cfg.Session.PresenceGrace = config.Duration{Duration: 100 * time.Millisecond}
	cfg.Limits.RegistrationsPerHour = 100000
	// Tests open connections from one loopback address by the thousand and
	// resume one user many times; the tests of these limits set them back.
	cfg.Limits.ConnectsPerSecond, cfg.Limits.ConnectBurst = 100000, 100000
	cfg.Limits.ConnectsPerAddressSecond, cfg.Limits.ConnectBurstPerAddress = 100000, 100000
	if Engine() == EnginePostgres {
		Cluster(tb, &cfg)
	}
	return cfg
}

// Server is a running test server.
type Server struct {
	*boot.Server
	Config  config.Config
	HTTPURL string // http://127.0.0.1:PORT
	WSURL   string // ws://127.0.0.1:PORT/ws
	TCPAddr string
	UDPAddr string
	Logs    *LogBuffer
	tb      testing.TB
}

// Start runs a server with Config(tb) changed by each edit. It is closed
// when the test ends.
func Start(tb testing.TB, edits ...func(*config.Config)) *Server {
	tb.Helper()
	cfg := Config(tb)
	for _, edit := range edits {
		edit(&cfg)
	}
	return StartConfig(tb, cfg, boot.Options{})
}

// StartConfig runs a server with exactly cfg and opts.
func StartConfig(tb testing.TB, cfg config.Config, opts boot.Options) *Server {
	tb.Helper()
	logs := &LogBuffer{}
	if opts.LogOutput == nil {
		opts.LogOutput = io.MultiWriter(logs, testLogWriter())
	}
	srv, err := boot.Open(context.Background(), cfg, opts)
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	httpAddr, tcpAddr, udpAddr := srv.Addrs()
	s := &Server{Server: srv, Config: cfg, HTTPURL: "http://" + httpAddr, WSURL: "ws://" + httpAddr + "/ws",
		TCPAddr: tcpAddr, UDPAddr: udpAddr, Logs: logs, tb: tb}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Close stops the server (again is fine).
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Server.Close(ctx); err != nil {
		s.tb.Logf("server close: %v", err)
	}
}

// testLogWriter shows server logs when DCE_TEST_LOGS is set.
func testLogWriter() io.Writer {
	if os.Getenv("DCE_TEST_LOGS") != "" {
		return os.Stderr
	}
	return io.Discard
}

// LogBuffer keeps everything the server logged, for assertions: the tests'
// one locked buffer, which the kernel's package tests use as syncbuf.Buffer.
type LogBuffer = syncbuf.Buffer

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
