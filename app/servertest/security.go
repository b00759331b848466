package servertest

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// Helpers for the security and robustness tests: clients that choose the
// upgrade route and their own source address on the loopback network
// (127.0.0.0/8 is all loopback on Linux, so 127.0.0.2 is "another address"
// that still never leaves the machine).

// WSDial says how DialWSWith opens a WebSocket.
type WSDial struct {
	Path    string      // the upgrade route; "/ws" when empty
	Query   string      // appended after "?" when not empty
	Header  http.Header // sent with the upgrade (Origin, Cookie, Host...)
	LocalIP string      // the source address; the kernel's choice when empty
}

// DialWSWith opens a WebSocket as d says. On refusal it returns the error
// and the HTTP response (its body already read into nothing; the status
// and headers are what tests look at).
func (s *Server) DialWSWith(tb testing.TB, d WSDial) (*Client, *http.Response, error) {
	path := d.Path
	if path == "" {
		path = "/ws"
	}
	url := "ws://" + strings.TrimPrefix(s.HTTPURL, "http://") + path
	if d.Query != "" {
		url += "?" + d.Query
	}
	dialer := websocket.Dialer{HandshakeTimeout: DefaultTimeout, NetDial: localDialer(d.LocalIP).Dial}
	conn, resp, err := dialer.Dial(url, d.Header)
	if err != nil {
		return nil, resp, err
	}
	return wsClient(tb, conn, nil), resp, nil
}

// ServerCloseReason is the reason the server gave in its close frame, once
// closed.
func (c *Client) ServerCloseReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.CloseReason
}

// DialTCPFrom opens a TCP connection to s from localIP (e.g. "127.0.0.2").
func (s *Server) DialTCPFrom(tb testing.TB, localIP string) *Client {
	tb.Helper()
	conn, err := localDialer(localIP).Dial("tcp", s.TCPAddr)
	if err != nil {
		tb.Fatalf("dial tcp from %s: %v", localIP, err)
	}
	return tcpClient(tb, conn, nil)
}

// HTTPClientFrom is an HTTP client whose connections come from localIP
// (the kernel's choice when empty). It does not follow redirects, and it
// keeps up to conns idle connections so a concurrent test reuses them.
func HTTPClientFrom(localIP string, conns int) *http.Client {
	tr := &http.Transport{DialContext: localDialer(localIP).DialContext, MaxIdleConns: conns,
		MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second, DisableCompression: true}
	return &http.Client{Transport: tr, Timeout: DefaultTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func localDialer(localIP string) *net.Dialer {
	d := &net.Dialer{Timeout: DefaultTimeout}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	return d
}
