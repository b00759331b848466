package bench

import (
	"bufio"
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
// on the reader goroutine. It is lean on purpose (a raw gobwas/ws frame
// loop, no per-connection maps of headers) so that one process can hold
// tens of thousands of them.
type client struct {
	nc     net.Conn
	br     *bufio.Reader
	onPush func(path, body []byte, size int)

	wmu  sync.Mutex // guards writes and wbuf
	wbuf bytes.Buffer

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
// address src, and starts its reader.
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
	if br == nil {
		br = bufio.NewReaderSize(nc, 8192)
	}
	c := &client{nc: nc, br: br, onPush: onPush, waiting: map[uint64]chan reply{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

// read runs until the connection ends, answering pings and routing frames.
// It reuses one buffer for every frame: onPush must not keep the body.
func (c *client) read() {
	var msg, buf []byte
	err := func() error {
		for {
			h, err := ws.ReadHeader(c.br)
			if err != nil {
				return err
			}
			if h.Length > 1<<20 {
				return fmt.Errorf("frame of %d bytes", h.Length)
			}
			if int64(cap(buf)) < h.Length {
				buf = make([]byte, h.Length)
			}
			payload := buf[:h.Length]
			if _, err := io.ReadFull(c.br, payload); err != nil {
				return err
			}
			if h.Masked {
				ws.Cipher(payload, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				_ = c.writeFrame(ws.OpPong, append([]byte(nil), payload...))
				continue
			case ws.OpPong:
				continue
			case ws.OpClose:
				code, _ := ws.ParseCloseFrameData(payload)
				c.closeCode = int(code)
				_ = c.writeFrame(ws.OpClose, payload)
				return fmt.Errorf("closed by the server with %d", code)
			}
			if !h.Fin {
				msg = append(msg, payload...)
				continue
			}
			if msg != nil {
				payload = append(msg, payload...)
				msg = msg[:0:0]
			}
			c.handle(payload)
		}
	}()
	c.mu.Lock()
	c.err = err
	waiting := c.waiting
	c.waiting = map[uint64]chan reply{}
	c.mu.Unlock()
	for _, ch := range waiting {
		ch <- reply{err: errClosed}
	}
	close(c.done)
	_ = c.nc.Close()
}

// handle routes one frame. A push (no id) goes to onPush as it is, without
// the JSON check a reply gets: the tool must cost the machine less than the
// server it measures.
func (c *client) handle(raw []byte) {
	if head := bytes.IndexByte(raw, ';'); head > 0 && bytes.IndexByte(raw[:head], ':') < 0 {
		if c.onPush != nil {
			c.onPush(raw[:head], raw[head+1:], len(raw))
		}
		return
	}
	f, err := wire.Parse(raw, 0)
	if err != nil {
		return
	}
	if f.ID != "" {
		if id, err := strconv.ParseUint(f.ID, 10, 64); err == nil {
			c.mu.Lock()
			ch, ok := c.waiting[id]
			delete(c.waiting, id)
			c.mu.Unlock()
			if ok {
				ch <- reply{body: append([]byte(nil), f.Body...)}
				return
			}
		}
	}
	if c.onPush != nil {
		c.onPush([]byte(f.Path), f.Body, len(raw))
	}
}

// writeFrame writes one masked WebSocket frame with one syscall.
func (c *client) writeFrame(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf.Reset()
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), payload...)))
	if err := ws.WriteFrame(&c.wbuf, f); err != nil {
		return err
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(c.wbuf.Bytes())
	return err
}

// start sends a request and returns the channel its reply will arrive on.
func (c *client) start(path string, body []byte) (<-chan reply, error) {
	id := c.nextID.Add(1)
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.waiting[id] = ch
	c.mu.Unlock()
	frame := wire.AppendFrame(nil, path, strconv.FormatUint(id, 10), body)
	if err := c.writeFrame(ws.OpText, frame); err != nil {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		return nil, err
	}
	return ch, nil
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
		_ = c.nc.Close()
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
