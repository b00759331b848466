package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/wire"

	"github.com/gobwas/ws"
)

// reply is a reply frame's body, or why none came.
type reply struct {
	body []byte
	err  error
}

// client is one WebSocket connection of the load tool: requests with
// numeric ids matched to their replies, every other frame handed to onPush
// on its poller's goroutine. It is lean on purpose (frames parsed straight
// from the poller's read buffer, no goroutine of its own, no per-connection
// maps of headers) so that one process can hold tens of thousands of them.
type client struct {
	s      *sock
	onPush func(path, body []byte, size int)

	// The reading side, used only on the poller's goroutine.
	partial []byte       // the start of a frame whose rest has not arrived
	msg     []byte       // the fragments of a message so far
	hr      bytes.Reader // over the bytes being parsed
	hbuf    [ws.MaxHeaderSize - 2]byte

	wmu      sync.Mutex // guards the four fields below
	pending  []byte     // frames waiting for the call that is writing
	spare    []byte     // the last write's buffer, reused
	flushing bool       // a writeFrame call is writing; others append to pending
	werr     error      // the first write error: every later write returns it

	nextID  atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan reply
	err     error // why reading stopped; set once
	done    chan struct{}

	closeCode int // the server's close code, 0 if none
}

// errClosed is a request's error when the connection closed first.
var errClosed = errors.New("connection closed")

// dial opens a WebSocket to target (ws://host:port/ws?query) from source
// address src, and hands it to a poller.
func dial(ctx context.Context, target string, src net.IP, onPush func([]byte, []byte, int)) (*client, error) {
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{}
			if src != nil {
				nd.LocalAddr = &net.TCPAddr{IP: src}
			}
			return nd.DialContext(ctx, network, addr)
		},
	}
	nc, br, _, err := d.Dial(ctx, target)
	if err != nil {
		return nil, err
	}
	var early []byte // frames that came with the handshake's response
	if br != nil {
		early, _ = br.Peek(br.Buffered())
		early = append([]byte(nil), early...)
		ws.PutReader(br)
	}
	c := &client{onPush: onPush, waiting: map[uint64]chan reply{}, done: make(chan struct{})}
	if c.s, err = newSock(nc, c.consume, c.ended); err != nil {
		return nil, err
	}
	if err := c.s.start(early); err != nil {
		return nil, err
	}
	return c, nil
}

// maxMessage is the largest frame, and message, the tool accepts.
const maxMessage = 1 << 20

// consume parses the frames in data, the next bytes read, keeping an
// incomplete last frame for the next call. It reuses the poller's buffer
// for every frame: onPush must not keep the body.
func (c *client) consume(data []byte) error {
	if len(c.partial) > 0 {
		c.partial = append(c.partial, data...)
		data = c.partial
	}
	for len(data) > 0 {
		c.hr.Reset(data)
		h, err := ws.ReadHeaderBuffer(&c.hr, c.hbuf[:])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break // the header's rest is still to come
		}
		if err != nil {
			return err
		}
		if h.Length > maxMessage {
			return fmt.Errorf("frame of %d bytes", h.Length)
		}
		start := len(data) - c.hr.Len()
		if int64(len(data)-start) < h.Length {
			break
		}
		payload := data[start : start+int(h.Length)]
		data = data[start+int(h.Length):]
		if err := c.frame(h, payload); err != nil {
			return err
		}
	}
	switch {
	case len(data) > 0:
		c.partial = append(c.partial[:0], data...) // may overlap: append copies as memmove does
	case cap(c.partial) > 64<<10:
		c.partial = nil
	default:
		c.partial = c.partial[:0]
	}
	return nil
}

// frame handles one frame: answers pings, ends on a close, joins
// fragments, and passes each whole message to handle.
func (c *client) frame(h ws.Header, payload []byte) error {
	if h.Masked {
		ws.Cipher(payload, h.Mask, 0)
	}
	switch h.OpCode {
	case ws.OpPing:
		_ = c.writeFramesLater(ws.OpPong, payload)
		return nil
	case ws.OpPong:
		return nil
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(payload)
		c.closeCode = int(code)
		_ = c.writeFramesLater(ws.OpClose, payload)
		return fmt.Errorf("closed by the server with %d", code)
	}
	if len(c.msg)+len(payload) > maxMessage {
		return fmt.Errorf("a message of over %d bytes", maxMessage)
	}
	if !h.Fin {
		c.msg = append(c.msg, payload...)
		return nil
	}
	if c.msg != nil {
		payload = append(c.msg, payload...)
		c.msg = nil
	}
	c.handle(payload)
	return nil
}

// ended runs when the socket is closed: every request still waiting fails.
func (c *client) ended(err error) {
	c.mu.Lock()
	c.err = err
	waiting := c.waiting
	c.waiting = map[uint64]chan reply{}
	c.mu.Unlock()
	for _, ch := range waiting {
		ch <- reply{err: errClosed}
	}
	close(c.done)
}

// handle routes one frame: a reply (path:id;body) to the request waiting
// for it, anything else to onPush as it is. Neither gets the JSON check the
// server's frames get: the tool must cost the machine less than the server
// it measures, and a reply's body is parsed by whoever waits for it.
func (c *client) handle(raw []byte) {
	head := bytes.IndexByte(raw, ';')
	body := []byte(nil)
	if head < 0 {
		head = len(raw)
	} else {
		body = raw[head+1:]
	}
	path := raw[:head]
	if colon := bytes.IndexByte(path, ':'); colon >= 0 {
		path = raw[:colon]
		if id, err := strconv.ParseUint(string(raw[colon+1:head]), 10, 64); err == nil {
			c.mu.Lock()
			ch, ok := c.waiting[id]
			delete(c.waiting, id)
			c.mu.Unlock()
			if ok {
				ch <- reply{body: append([]byte(nil), body...)}
				return
			}
		}
	}
	if c.onPush != nil {
		c.onPush(path, body, len(raw))
	}
}

// writeFrame writes one masked WebSocket frame; see writeFrames.
func (c *client) writeFrame(op ws.OpCode, payload []byte) error {
	return c.writeFrames(op, payload)
}

// writeFrames writes masked WebSocket frames, one per payload, with one
// syscall. Frames written while another call is in its syscall are
// appended to pending, and that call sends them with its next write: like
// any pipelining client, the tool sends what it has at once and never
// waits to gather more. The error of a write that fails after this call
// returned reaches its callers as the connection's close.
func (c *client) writeFrames(op ws.OpCode, payloads ...[]byte) error {
	return c.queueFrames(true, op, payloads...)
}

// writeFramesLater is writeFrames for the poller's goroutine, which must
// never wait for a socket to drain (every connection it reads would wait
// too): it makes one write that does not wait, and leaves what the socket
// did not take to a goroutine that may.
func (c *client) writeFramesLater(op ws.OpCode, payloads ...[]byte) error {
	return c.queueFrames(false, op, payloads...)
}

func (c *client) queueFrames(wait bool, op ws.OpCode, payloads ...[]byte) error {
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	w := bytes.NewBuffer(c.pending)
	for _, payload := range payloads {
		f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), payload...)))
		if err := ws.WriteFrame(w, f); err != nil {
			c.wmu.Unlock()
			return err
		}
	}
	c.pending = w.Bytes()
	if c.flushing {
		c.wmu.Unlock()
		return nil
	}
	c.flushing = true
	c.wmu.Unlock()
	return c.flush(wait)
}

// flush writes pending until it is empty or a write fails; only the call
// that set flushing runs it. Without wait, a write the socket does not
// take whole leaves the rest to a goroutine.
func (c *client) flush(wait bool) error {
	c.wmu.Lock()
	for len(c.pending) > 0 && c.werr == nil {
		out := c.pending
		c.pending, c.spare = c.spare[:0], nil
		c.wmu.Unlock()
		n, err := len(out), error(nil)
		if wait {
			err = c.s.write(out, 10*time.Second)
		} else {
			n, err = c.s.tryWrite(out)
		}
		c.wmu.Lock()
		if err != nil {
			c.werr = err
			break
		}
		if n < len(out) {
			c.pending = append(append([]byte(nil), out[n:]...), c.pending...)
			c.wmu.Unlock()
			go c.flush(true)
			return nil
		}
		c.spare = out
	}
	c.flushing = false
	err := c.werr
	c.wmu.Unlock()
	return err
}

// start sends a request and returns the channel its reply will arrive on.
func (c *client) start(path string, body []byte) (<-chan reply, error) {
	chs, err := c.startMany(path, [][]byte{body})
	if err != nil {
		return nil, err
	}
	return chs[0], nil
}

// startMany sends one request per body with one write, and returns the
// channels their replies will arrive on, in the same order.
func (c *client) startMany(path string, bodies [][]byte) ([]<-chan reply, error) {
	chs := make([]<-chan reply, len(bodies))
	ids := make([]uint64, len(bodies))
	frames := make([][]byte, len(bodies))
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	for i, body := range bodies {
		ids[i] = c.nextID.Add(1)
		ch := make(chan reply, 1)
		c.waiting[ids[i]] = ch
		chs[i] = ch
		frames[i] = wire.AppendFrame(nil, path, strconv.FormatUint(ids[i], 10), body)
	}
	c.mu.Unlock()
	if err := c.writeFrames(ws.OpText, frames...); err != nil {
		c.mu.Lock()
		for _, id := range ids {
			delete(c.waiting, id)
		}
		c.mu.Unlock()
		return nil, err
	}
	return chs, nil
}

// call sends a request and waits for its reply for at most timeout. A
// reply that carries an error becomes an *apiError.
func (c *client) call(path string, body []byte, timeout time.Duration) ([]byte, error) {
	ch, err := c.start(path, body)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if e := replyError(r.body); e != nil {
			return nil, e
		}
		return r.body, nil
	case <-t.C:
		return nil, fmt.Errorf("%s: no reply in %s", path, timeout)
	}
}

// close closes the connection politely and waits for the reader to end.
func (c *client) close() {
	_ = c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
		c.s.shutdown()
		<-c.done
	}
}

// alive reports whether the connection is still open.
func (c *client) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}
