package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/wire"
)

// ErrLineTooLong is returned by LineReader for a line over the frame limit.
var ErrLineTooLong = errors.New("line is over the frame limit")

// LineReader splits a stream into frames, one per line ("\n", or "\r\n").
// A line longer than max bytes (terminator excluded) is ErrLineTooLong.
type LineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewLineReader reads lines of at most max bytes from r.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 4096), max: max}
}

// Next returns the next line without its terminator. The slice is valid
// until the following call. An empty line is returned as such.
func (l *LineReader) Next() ([]byte, error) {
	if cap(l.buf) > 16<<10 { // do not keep a large line's buffer on an idle connection
		l.buf = nil
	}
	l.buf = l.buf[:0]
	for {
		chunk, err := l.r.ReadSlice('\n')
		l.buf = append(l.buf, chunk...)
		if len(l.buf) > l.max+2 { // room for the line and its "\r\n"
			return nil, ErrLineTooLong
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil:
			return l.line(l.buf[:len(l.buf)-1])
		case io.EOF:
			if len(l.buf) > 0 { // a last line without its newline
				return l.line(l.buf)
			}
		}
		return nil, err
	}
}

// Wait blocks until the next line's first byte has arrived.
func (l *LineReader) Wait() error {
	_, err := l.r.Peek(1)
	return err
}

func (l *LineReader) line(b []byte) ([]byte, error) {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) > l.max {
		return nil, ErrLineTooLong
	}
	return b, nil
}

// TCP serves frames over TCP, one per line.
type TCP struct {
	*Options
	ln net.Listener
	wg sync.WaitGroup
}

// NewTCP serves ln.
func NewTCP(o *Options, ln net.Listener) *TCP { return &TCP{Options: o, ln: ln} }

// Serve accepts until the listener closes.
func (t *TCP) Serve() {
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.Log.Warn("tcp accept", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		t.wg.Add(1)
		t.active.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.active.Add(-1)
			t.serveConn(nc)
		}()
	}
}

// Close stops accepting; live connections are closed through the hub.
func (t *TCP) Close() error { return t.ln.Close() }

// Wait waits for every connection's goroutine to end.
func (t *TCP) Wait() { t.wg.Wait() }

func (t *TCP) serveConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetKeepAlivePeriod(30 * time.Second)
	}
	sink := &streamSink{conn: nc, deadline: writeDeadline{conn: nc, timeout: t.WriteTimeout}}
	var hubSink hub.Sink = sink
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			hubSink = &inlineStreamSink{streamSink: sink, socket: rc}
		}
	}
	ip := hostIP(nc.RemoteAddr())
	if e := t.allowConnect(context.Background(), ip, ""); e != nil {
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(append(wire.AppendError(nil, "", "", e.Code, e.Message, e.RetryAfterMS()), '\n'))
		_ = nc.Close()
		return
	}
	c, err := t.Hub.Register(hubSink, node.TCP, ip, 0)
	if err != nil { // over a cap (PROTOCOL.md section 1): no writer exists, the socket is ours
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(append(wire.AppendError(nil, "", "", node.CodeRateLimited, err.Error(), 0), '\n'))
		_ = nc.Close()
		return
	}
	ctx := context.Background()
	lines := NewLineReader(nc, t.Router.MaxFrame())
	var bad badFrames
	for {
		// Idle connections may wait long for their next line; once a line
		// has begun, it must arrive whole within the frame timeout.
		_ = nc.SetReadDeadline(time.Now().Add(t.TCPIdleTimeout))
		if err := lines.Wait(); err != nil {
			break
		}
		if t.FrameTimeout > 0 {
			_ = nc.SetReadDeadline(time.Now().Add(t.FrameTimeout))
		}
		line, err := lines.Next()
		if errors.Is(err, ErrLineTooLong) {
			c.Enqueue(wire.AppendError(nil, "error", "", node.CodeTooLarge, "frame is over the size limit", 0))
			c.Close(node.CloseTooLarge, "frame too large")
			break
		}
		if err != nil {
			break
		}
		if len(line) == 0 {
			continue
		}
		if !t.dispatch(ctx, c, &bad, line, true) {
			break
		}
	}
	t.finish(c)
}

// streamSink writes frames to a stream socket, one per line, a batch with
// one writev.
type streamSink struct {
	conn      net.Conn
	deadline  writeDeadline
	closeOnce sync.Once
	bufs      net.Buffers
	rest      []byte // what a TryWrite could not write: it goes before anything else
}

var _ hub.InlineSink = (*inlineStreamSink)(nil)

var newline = []byte{'\n'}

func (s *streamSink) WriteFrames(frames [][]byte) error {
	s.bufs = s.bufs[:0]
	if len(s.rest) > 0 {
		s.bufs = append(s.bufs, s.rest)
	}
	for _, f := range frames {
		s.bufs = append(s.bufs, f, newline)
	}
	if err := s.deadline.extend(); err != nil {
		return err
	}
	bufs := s.bufs // WriteTo consumes its receiver
	_, err := bufs.WriteTo(s.conn)
	clear(s.bufs)
	if err == nil {
		s.rest = nil
	}
	return err
}

// inlineStreamSink is a streamSink that can also write without blocking,
// through the raw socket: the hub's InlineSink. Like the streamSink it is
// used only by the holder of the connection's writer role, so it needs no
// lock.
type inlineStreamSink struct {
	*streamSink
	socket syscall.RawConn
}

// TryWrite implements hub.InlineSink: one write(2) of the line, never a
// wait for the socket to drain.
func (s *inlineStreamSink) TryWrite(frame []byte) (taken, more bool, err error) {
	return tryWriteFrame(s.socket, &s.deadline, &s.rest, nil, frame, newline)
}

func (s *streamSink) Ping() error { return nil }

func (s *streamSink) Close(code node.CloseCode, reason string) {
	s.closeOnce.Do(func() { _ = s.conn.Close() })
}

func (s *streamSink) Abort() { s.deadline.abort() }
