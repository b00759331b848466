package servertest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/wire"

	"github.com/fasthttp/websocket"
)

// DefaultTimeout bounds every wait of a client.
var DefaultTimeout = 10 * time.Second

// Frame is a frame a client received.
type Frame struct {
	Path string
	ID   string
	Body json.RawMessage
	At   time.Time
}

// ErrorCode is the error code a reply or error frame carries, or "".
func (f Frame) ErrorCode() string {
	var e struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(f.Body, &e) == nil && e.Error != nil {
		return e.Error.Code
	}
	return ""
}

// Decode unmarshals the body into v.
func (f Frame) Decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(f.Body, v); err != nil {
		tb.Fatalf("decode %s: %v (body %s)", f.Path, err, f.Body)
	}
}

// String is the frame as text.
func (f Frame) String() string {
	head := f.Path
	if f.ID != "" {
		head += ":" + f.ID
	}
	return head + ";" + string(f.Body)
}

// Client is a frame client over any transport: requests with ids matched to
// their replies, and every other frame kept in arrival order.
type Client struct {
	tb        testing.TB
	transport string
	write     func([]byte) error
	closeConn func() error
	onPush    func(Frame) // when set, takes every frame that is not a waited-for reply
	leave     func() error
	// autoVerify: a UDP client that answers a login's or resume's "verify"
	// with im/verify by itself.
	autoVerify bool
	// outgoing, when set, prepares each request's frame (Raw's are sent
	// as they are): a UDP client pads its logins.
	outgoing func([]byte) []byte

	nextID  atomic.Uint64
	mu      sync.Mutex
	cond    *sync.Cond
	waiters map[string]chan Frame
	pushes  []Frame
	done    bool
	err     error // why reading stopped
	// CloseCode is the WebSocket close code the server sent (0 if none).
	CloseCode   int
	CloseReason string
}

func newClient(tb testing.TB, transport string, write func([]byte) error, closeConn func() error) *Client {
	c := &Client{tb: tb, transport: transport, write: write, closeConn: closeConn, waiters: map[string]chan Frame{}}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// receive handles one frame from the server: a reply goes to its waiter;
// anything else to onPush when set, else it is kept for WaitPush.
func (c *Client) receive(raw []byte) {
	f, err := wire.Parse(raw, 0)
	frame := Frame{Path: f.Path, ID: f.ID, Body: append(json.RawMessage(nil), f.Body...), At: time.Now()}
	if err != nil {
		frame = Frame{Path: "unparsed", Body: json.RawMessage(strconv.Quote(string(raw))), At: time.Now()}
	}
	c.mu.Lock()
	if frame.ID != "" {
		if w, ok := c.waiters[frame.Path+":"+frame.ID]; ok {
			delete(c.waiters, frame.Path+":"+frame.ID)
			c.mu.Unlock()
			w <- frame
			return
		}
	}
	if c.onPush != nil {
		c.mu.Unlock()
		c.onPush(frame)
		return
	}
	c.pushes = append(c.pushes, frame)
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *Client) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.done {
		c.done, c.err = true, err
	}
	c.cond.Broadcast()
}

// Raw sends text as one frame, as is.
func (c *Client) Raw(text string) error { return c.write([]byte(text)) }

// Request sends PATH:ID;BODY (body marshalled unless it is a string or
// []byte) and waits for its reply.
func (c *Client) Request(path string, body any) Frame {
	c.tb.Helper()
	f, err := c.TryRequest(path, body, DefaultTimeout)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", c.transport, path, err)
	}
	return f
}

// TryRequest is Request that returns its error instead of failing the test.
func (c *Client) TryRequest(path string, body any, timeout time.Duration) (Frame, error) {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan Frame, 1)
	c.mu.Lock()
	c.waiters[path+":"+id] = ch
	c.mu.Unlock()
	if err := c.write(c.prepare(wire.AppendFrame(nil, path, id, encodeBody(body)))); err != nil {
		return Frame{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-ch:
		if c.autoVerify && (path == "im/login" || path == "im/resume") && f.ErrorCode() == "" {
			if err := c.verifyAddress(f, timeout); err != nil {
				return f, err
			}
		}
		return f, nil
	case <-t.C:
		c.mu.Lock()
		delete(c.waiters, path+":"+id)
		done, err := c.done, c.err
		c.mu.Unlock()
		if done {
			return Frame{}, fmt.Errorf("connection closed (%v, code %d) with no reply", err, c.CloseCode)
		}
		return Frame{}, errors.New("no reply in time")
	}
}

// OK sends a request and fails the test unless the reply is a success; it
// decodes the result into out when out is not nil.
func (c *Client) OK(path string, body any, out any) Frame {
	c.tb.Helper()
	f := c.Request(path, body)
	if code := f.ErrorCode(); code != "" {
		c.tb.Fatalf("%s %s: error %s", c.transport, path, f.Body)
	}
	if out != nil {
		f.Decode(c.tb, out)
	}
	return f
}

// Fire sends PATH;BODY with no id.
func (c *Client) Fire(path string, body any) error {
	return c.write(c.prepare(wire.AppendFrame(nil, path, "", encodeBody(body))))
}

// prepare is what a request's frame becomes on the wire.
func (c *Client) prepare(frame []byte) []byte {
	if c.outgoing == nil {
		return frame
	}
	return c.outgoing(frame)
}

func encodeBody(body any) []byte {
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return []byte(b)
	case []byte:
		return b
	}
	out, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return out
}

// WaitPush waits for the next frame with path that has not been taken yet,
// and takes it (and every frame before it with other paths stays).
func (c *Client) WaitPush(path string, timeout time.Duration) (Frame, bool) {
	return c.WaitMatch(timeout, func(f Frame) bool { return f.Path == path })
}

// MustPush is WaitPush that fails the test on a timeout.
func (c *Client) MustPush(path string) Frame {
	c.tb.Helper()
	f, ok := c.WaitPush(path, DefaultTimeout)
	if !ok {
		c.tb.Fatalf("%s: no %s push in %v; have %v", c.transport, path, DefaultTimeout, c.Pushes())
	}
	return f
}

// WaitMatch waits for the first untaken frame that match accepts and takes it.
func (c *Client) WaitMatch(timeout time.Duration, match func(Frame) bool) (Frame, bool) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, f := range c.pushes {
			if match(f) {
				c.pushes = append(c.pushes[:i:i], c.pushes[i+1:]...)
				return f, true
			}
		}
		if c.done || time.Now().After(deadline) {
			return Frame{}, false
		}
		c.cond.Wait()
	}
}

// Pushes returns the frames received and not taken yet.
func (c *Client) Pushes() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.pushes...)
}

// Drain forgets every frame received so far.
func (c *Client) Drain() {
	c.mu.Lock()
	c.pushes = nil
	c.mu.Unlock()
}

// WaitClosed waits until the server has closed the connection.
func (c *Client) WaitClosed(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.done {
		if time.Now().After(deadline) {
			return false
		}
		c.cond.Wait()
	}
	return true
}

// Closed reports whether reading has stopped.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// Close closes the client's side.
func (c *Client) Close() { _ = c.closeConn() }

// Leave ends the client's side the polite way, and at once: a WebSocket
// close frame, or a TCP half-close. It goes on reading, so the server's
// replies to what it already sent cannot meet a reset (which would make the
// kernel throw away what the server had not read yet).
func (c *Client) Leave() error {
	if c.leave == nil {
		return c.closeConn()
	}
	return c.leave()
}

// Login logs the client in (registering the nickname if new) and returns
// the sid.
func (c *Client) Login(nickname, password string) string {
	c.tb.Helper()
	var r struct {
		SID string `json:"sid"`
	}
	c.OK("im/login", map[string]string{"nickname": nickname, "password": password}, &r)
	return r.SID
}

// DialWS opens a WebSocket to s. query is appended to the URL ("sid=..."),
// header is sent with the upgrade.
func (s *Server) DialWS(tb testing.TB, query string, header http.Header) *Client {
	tb.Helper()
	c, resp, err := s.TryDialWS(tb, query, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial websocket: %v (status %d)", err, status)
	}
	return c
}

// TryDialWS is DialWS that returns the error and the HTTP response.
func (s *Server) TryDialWS(tb testing.TB, query string, header http.Header) (*Client, *http.Response, error) {
	return s.DialWSWith(tb, WSDial{Query: query, Header: header})
}

// wsClient makes a Client of an open WebSocket and starts its reader.
func wsClient(tb testing.TB, conn *websocket.Conn, onPush func(Frame)) *Client {
	var writeMu sync.Mutex
	c := newClient(tb, "websocket", func(b []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
		return conn.WriteMessage(websocket.TextMessage, b)
	}, conn.Close)
	c.onPush = onPush
	c.leave = func() error {
		writeMu.Lock()
		defer writeMu.Unlock()
		return conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(DefaultTimeout))
	}
	go func() {
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					c.mu.Lock()
					c.CloseCode, c.CloseReason = ce.Code, ce.Text
					c.mu.Unlock()
				}
				c.stop(err)
				return
			}
			c.receive(msg)
		}
	}()
	tb.Cleanup(c.Close)
	return c
}

// tcpClient makes a Client of an open TCP connection and starts its reader.
func tcpClient(tb testing.TB, conn net.Conn, onPush func(Frame)) *Client {
	var writeMu sync.Mutex
	c := newClient(tb, "tcp", func(b []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
		_, err := conn.Write(append(b, '\n'))
		return err
	}, conn.Close)
	c.onPush = onPush
	c.leave = func() error {
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return conn.Close()
	}
	go func() {
		r := bufio.NewReaderSize(conn, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				c.receive(line[:len(line)-1])
			}
			if err != nil {
				c.stop(err)
				return
			}
		}
	}()
	tb.Cleanup(c.Close)
	return c
}

// WSCloseCode is the close code the server sent, once closed.
func (c *Client) WSCloseCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.CloseCode
}

// DialTCP opens a TCP connection to s.
func (s *Server) DialTCP(tb testing.TB) *Client {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", s.TCPAddr, DefaultTimeout)
	if err != nil {
		tb.Fatalf("dial tcp: %v", err)
	}
	return tcpClient(tb, conn, nil)
}

// DialUDP opens a UDP "connection" to s from a fresh local port. It proves
// its address as a real client does: when the reply to im/login or
// im/resume carries "verify", it sends im/verify with that token before
// the request returns.
func (s *Server) DialUDP(tb testing.TB) *Client {
	tb.Helper()
	return s.DialUDPWith(tb, UDPDial{})
}

// UDPDial says how DialUDPWith opens its socket.
type UDPDial struct {
	LocalIP  string // the source address; the kernel's choice when empty
	NoVerify bool   // never send im/verify by itself: the test does, or never does
}

// udpPadTo is the size a UDP client pads its im/login and im/resume to:
// until its address is proved the server sends it at most 3 times what it
// received, and the reply must fit in that (1,200 bytes, as QUIC pads its
// first datagram).
const udpPadTo = 1200

// DialUDPWith opens a UDP "connection" to s as d says.
func (s *Server) DialUDPWith(tb testing.TB, d UDPDial) *Client {
	tb.Helper()
	var local *net.UDPAddr
	if d.LocalIP != "" {
		local = &net.UDPAddr{IP: net.ParseIP(d.LocalIP)}
	}
	server, err := net.ResolveUDPAddr("udp", s.UDPAddr)
	if err != nil {
		tb.Fatalf("resolve udp: %v", err)
	}
	conn, err := net.DialUDP("udp", local, server)
	if err != nil {
		tb.Fatalf("dial udp: %v", err)
	}
	c := newClient(tb, "udp", func(b []byte) error {
		_, err := conn.Write(b)
		return err
	}, conn.Close)
	c.autoVerify = !d.NoVerify
	c.outgoing = PadUDPLogin
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					c.stop(err)
					return
				}
				continue // ICMP unreachable and the like
			}
			c.receive(append([]byte(nil), buf[:n]...))
		}
	}()
	tb.Cleanup(c.Close)
	return c
}

// PadUDPLogin pads an im/login or im/resume frame with spaces (JSON
// whitespace) to udpPadTo bytes, so that the reply fits in what the server
// may send an address that has not proved itself; other frames are
// returned as they are.
func PadUDPLogin(frame []byte) []byte {
	f, err := wire.Parse(frame, 0)
	if err != nil || (f.Path != "im/login" && f.Path != "im/resume") || len(frame) >= udpPadTo {
		return frame
	}
	if !strings.Contains(string(frame), ";") {
		frame = append(frame, ';')
	}
	return append(frame, strings.Repeat(" ", udpPadTo-len(frame))...)
}

// verifyAddress sends im/verify with the token a login or resume reply
// carries, if it carries one: what a UDP client does to prove its address.
func (c *Client) verifyAddress(reply Frame, timeout time.Duration) error {
	var r struct {
		Verify string `json:"verify"`
	}
	if json.Unmarshal(reply.Body, &r) != nil || r.Verify == "" {
		return nil
	}
	f, err := c.TryRequest("im/verify", map[string]string{"token": r.Verify}, timeout)
	if err != nil {
		return fmt.Errorf("im/verify: %w", err)
	}
	if code := f.ErrorCode(); code != "" {
		return fmt.Errorf("im/verify: %s", f.Body)
	}
	return nil
}

// Post sends POST /path with a JSON body and headers (key, value pairs) and
// returns the response and its body.
func (s *Server) Post(tb testing.TB, path string, body any, headers ...string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, s.HTTPURL+"/"+strings.TrimPrefix(path, "/"),
		strings.NewReader(string(encodeBody(body))))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return s.Do(tb, req)
}

// Do sends req and reads the whole response.
func (s *Server) Do(tb testing.TB, req *http.Request) (*http.Response, []byte) {
	tb.Helper()
	client := &http.Client{Timeout: DefaultTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&buf)
	return resp, []byte(buf.String())
}
