// Package control is the control socket under runtime/ through which
// `dce websocket stop|reload|status` reach a running server, whether it was
// started in the foreground, in the background or in a container. The
// socket is created with mode 0600: only the server's own user may use it.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SocketName is the control socket's file name in the runtime folder.
const SocketName = "dce.sock"

// Handler answers one command ("status", "stop", "reload") with a JSON value.
type Handler func(ctx context.Context, command string) (any, error)

// Server listens on the control socket.
type Server struct {
	ln      net.Listener
	path    string
	handler Handler
	log     *slog.Logger
	wg      sync.WaitGroup
}

// Listen creates the socket at path (replacing a stale one left by a crash,
// but never one a live server answers on) with mode 0600.
func Listen(path string, handler Handler, log *slog.Logger) (*Server, error) {
	if _, err := Call(path, "ping", time.Second); err == nil {
		return nil, fmt.Errorf("another server is running (its control socket %s answers)", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o177) // the socket is born 0600, with no window where it is wider
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{ln: ln, path: path, handler: handler, log: log}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.answer(conn)
		}()
	}
}

type response struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

func (s *Server) answer(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	cmd := strings.TrimSpace(line)
	var resp response
	if cmd == "ping" {
		resp.OK = true
	} else if result, err := s.handler(context.Background(), cmd); err != nil {
		resp.Error = err.Error()
	} else {
		resp.OK, resp.Result = true, result
	}
	_ = json.NewEncoder(conn).Encode(resp)
}

// Close stops listening and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}

// ErrNotRunning is returned by Call when no server answers.
var ErrNotRunning = errors.New("no server is running (no control socket answers)")

// Call sends command to the server at path and returns its JSON result.
func Call(path, command string, timeout time.Duration) (json.RawMessage, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("control socket %s: permission denied", path)
		}
		return nil, ErrNotRunning
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "%s\n", command); err != nil {
		return nil, err
	}
	var resp struct {
		OK     bool            `json:"ok"`
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if !resp.OK {
		return nil, errors.New(resp.Error)
	}
	return resp.Result, nil
}
