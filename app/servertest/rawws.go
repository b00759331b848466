package servertest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// RawWS is a WebSocket client that speaks raw frames (gobwas/ws), for the
// RFC 6455 conformance cases: it writes frames exactly as they are built,
// masked or not, well formed or not, and reads the server's frames one at a
// time, control frames included. It answers nothing by itself.
type RawWS struct {
	tb        testing.TB
	Conn      net.Conn
	r         io.Reader
	Handshake ws.Handshake
}

// RawWSOptions change the opening handshake of DialRawWS.
type RawWSOptions struct {
	Path       string            // "/ws" when empty
	Header     http.Header       // extra request headers
	Extensions []httphead.Option // offered in Sec-WebSocket-Extensions
}

// DialRawWS opens a WebSocket to s with gobwas/ws's handshake and fails the
// test if the upgrade is refused.
func (s *Server) DialRawWS(tb testing.TB, opts RawWSOptions) *RawWS {
	tb.Helper()
	c, err := s.TryDialRawWS(tb, opts)
	if err != nil {
		tb.Fatalf("raw websocket dial: %v", err)
	}
	return c
}

// TryDialRawWS is DialRawWS that returns the error.
func (s *Server) TryDialRawWS(tb testing.TB, opts RawWSOptions) (*RawWS, error) {
	path := opts.Path
	if path == "" {
		path = "/ws"
	}
	d := ws.Dialer{Timeout: DefaultTimeout, Extensions: opts.Extensions}
	if opts.Header != nil {
		d.Header = ws.HandshakeHeaderHTTP(opts.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	url := "ws://" + strings.TrimPrefix(s.HTTPURL, "http://") + path
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := &RawWS{tb: tb, Conn: conn, r: conn, Handshake: hs}
	if br != nil { // the server's first bytes arrived with the handshake
		c.r = io.MultiReader(br, conn)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return c, nil
}

// WriteFrame masks f with a fresh random key, as a client must, and writes
// it. f.Header.Length is set from the payload unless it is already set.
func (c *RawWS) WriteFrame(f ws.Frame) error {
	f.Payload = append([]byte(nil), f.Payload...) // masking is in place
	if f.Header.Length == 0 {
		f.Header.Length = int64(len(f.Payload))
	}
	return c.write(ws.MaskFrameInPlace(f))
}

// WriteFrames masks each frame as WriteFrame does and writes them all with
// one write, so that they reach the server together (a server that closes
// after the first cannot make the rest fail with a broken pipe).
func (c *RawWS) WriteFrames(frames ...ws.Frame) error {
	var buf bytes.Buffer
	for _, f := range frames {
		f.Payload = append([]byte(nil), f.Payload...)
		if f.Header.Length == 0 {
			f.Header.Length = int64(len(f.Payload))
		}
		if err := ws.WriteFrame(&buf, ws.MaskFrameInPlace(f)); err != nil {
			return err
		}
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
	_, err := c.Conn.Write(buf.Bytes())
	return err
}

// WriteUnmasked writes f without a mask, which no client may do.
func (c *RawWS) WriteUnmasked(f ws.Frame) error {
	if f.Header.Length == 0 {
		f.Header.Length = int64(len(f.Payload))
	}
	f.Header.Masked = false
	return c.write(f)
}

// WriteHeader writes a masked frame header and nothing after it: a frame
// that declares a length and never delivers it.
func (c *RawWS) WriteHeader(h ws.Header) error {
	h.Masked, h.Mask = true, ws.NewMask()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
	return ws.WriteHeader(c.Conn, h)
}

func (c *RawWS) write(f ws.Frame) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
	return ws.WriteFrame(c.Conn, f)
}

// Text writes one masked, final text frame.
func (c *RawWS) Text(payload string) error {
	return c.WriteFrame(ws.NewTextFrame([]byte(payload)))
}

// ReadFrame reads the server's next frame, whatever it is.
func (c *RawWS) ReadFrame(timeout time.Duration) (ws.Frame, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	f, err := ws.ReadFrame(c.r)
	if err != nil {
		return f, err
	}
	if f.Header.Masked {
		return f, errors.New("the server sent a masked frame")
	}
	return f, nil
}

// ReadText reads frames until a text frame and returns its payload; any
// other frame first (a close, a ping) is an error.
func (c *RawWS) ReadText(timeout time.Duration) (string, error) {
	f, err := c.ReadFrame(timeout)
	if err != nil {
		return "", err
	}
	if f.Header.OpCode != ws.OpText {
		return "", fmt.Errorf("got %s instead of a text frame", describeFrame(f))
	}
	return string(f.Payload), nil
}

// RawClose is how a raw connection ended.
type RawClose struct {
	Frames []ws.Frame    // every frame before the close frame
	Code   ws.StatusCode // the close frame's code (1005 if it had none)
	Reason string
	Got    bool  // a close frame arrived
	Err    error // why reading stopped, when no close frame arrived
	EOF    bool  // the server closed the socket after the close frame
}

// String describes the ending for test messages.
func (rc RawClose) String() string {
	var b strings.Builder
	for _, f := range rc.Frames {
		b.WriteString(describeFrame(f))
		b.WriteString(", ")
	}
	if rc.Got {
		fmt.Fprintf(&b, "close %d %q", rc.Code, rc.Reason)
	} else {
		fmt.Fprintf(&b, "no close frame (%v)", rc.Err)
	}
	return b.String()
}

// ReadClose reads frames until the server's close frame (or until reading
// fails), then checks that the server closes the socket.
func (c *RawWS) ReadClose(timeout time.Duration) RawClose {
	var rc RawClose
	deadline := time.Now().Add(timeout)
	for {
		f, err := c.ReadFrame(time.Until(deadline))
		if err != nil {
			rc.Err = err
			return rc
		}
		if f.Header.OpCode != ws.OpClose {
			rc.Frames = append(rc.Frames, f)
			continue
		}
		rc.Got = true
		rc.Code, rc.Reason = ws.StatusNoStatusRcvd, ""
		if len(f.Payload) >= 2 {
			rc.Code, rc.Reason = ws.ParseCloseFrameData(f.Payload)
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(time.Until(deadline)))
		var one [1]byte
		_, err = c.r.Read(one[:])
		rc.EOF = errors.Is(err, io.EOF) || isConnReset(err)
		return rc
	}
}

func isConnReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// Close closes the socket without a closing handshake.
func (c *RawWS) Close() { _ = c.Conn.Close() }

func describeFrame(f ws.Frame) string {
	p := string(f.Payload)
	if len(p) > 80 {
		p = p[:80] + "..."
	}
	switch f.Header.OpCode {
	case ws.OpClose:
		if len(f.Payload) >= 2 {
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return fmt.Sprintf("close(%d %q)", code, reason)
		}
		return "close()"
	case ws.OpText:
		return fmt.Sprintf("text(%q)", p)
	}
	return fmt.Sprintf("op%d(fin=%v, %d bytes)", f.Header.OpCode, f.Header.Fin, len(f.Payload))
}

// RawUpgrade sends a hand-written upgrade request (GET path with exactly
// the headers given, as key, value pairs, after Host) and returns the
// server's response; its body is read and closed.
func (s *Server) RawUpgrade(tb testing.TB, path string, headers ...string) (*http.Response, string) {
	tb.Helper()
	host := strings.TrimPrefix(s.HTTPURL, "http://")
	conn, err := net.DialTimeout("tcp", host, DefaultTimeout)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(DefaultTimeout))
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", headers[i], headers[i+1])
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		tb.Fatalf("write upgrade: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("read upgrade response: %v", err)
	}
	var body string
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		body = string(b)
	}
	_ = resp.Body.Close()
	return resp, body
}
