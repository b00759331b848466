package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The load tool reads its connections with pollers: each poller is one
// goroutine with an epoll set of its own, which reads whatever its sockets
// have (one read per ready socket, level-triggered) and hands the bytes to
// the socket's consumer. A goroutine per connection parked in the Go
// runtime's poller costs, per message, a wake-up, a park and a second read
// that finds nothing; at 10,000 readers that is most of the tool's CPU,
// taken from the two cores the server under test has. The epoll set is
// itself registered with the Go runtime's poller, so a poller with nothing
// to read parks like any goroutine, and one wake-up covers every socket
// that became ready meanwhile.
//
// Ownership: a sock's file descriptor is closed only by its poller (end),
// under sock.mu held for writing; writers hold sock.mu for reading while
// they use it, so a closed descriptor number, which the kernel reuses, is
// never written to.

// sock is one connection's socket, read by a poller.
type sock struct {
	fd      int
	p       *poller
	consume func(data []byte) error // on the poller's goroutine; an error ends the socket
	ended   func(err error)         // on the poller's goroutine, once, after the socket is closed

	mu     sync.RWMutex // held for reading while fd is written to or shut down; for writing to close it
	closed bool
}

// poller reads the sockets of its epoll set.
type poller struct {
	epfd int
	file *os.File // epfd, registered with the Go runtime's poller
	mu   sync.Mutex
	sock []*sock // by file descriptor
	dead bool    // the epoll set failed: no socket may join
}

var (
	pollersOnce sync.Once
	pollers     []*poller
	pollersErr  error
	nextPoller  atomic.Uint64
)

// pickPoller returns one of GOMAXPROCS pollers, started on first use, in
// turn.
func pickPoller() (*poller, error) {
	pollersOnce.Do(func() {
		for range runtime.GOMAXPROCS(0) {
			p, err := newPoller()
			if err != nil {
				pollersErr = err
				return
			}
			pollers = append(pollers, p)
		}
	})
	if pollersErr != nil {
		return nil, pollersErr
	}
	return pollers[nextPoller.Add(1)%uint64(len(pollers))], nil
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	p := &poller{epfd: epfd, file: os.NewFile(uintptr(epfd), "bench-epoll")}
	raw, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return nil, err
	}
	go p.run(raw)
	return p, nil
}

// run reads ready sockets until the epoll set fails, which ends them all.
func (p *poller) run(raw syscall.RawConn) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	var failed error
	err := raw.Read(func(uintptr) bool {
		for {
			n, err := rawEpollWait(p.epfd, events)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				failed = fmt.Errorf("epoll_wait: %w", err)
				return true
			}
			if n == 0 {
				return false // park until the set has a ready socket
			}
			for _, ev := range events[:n] {
				if s := p.lookup(ev.Fd); s != nil {
					p.serve(s, buf)
				}
			}
		}
	})
	if failed == nil {
		failed = fmt.Errorf("epoll: %w", err)
	}
	p.mu.Lock()
	p.dead = true
	var socks []*sock
	for _, s := range p.sock {
		if s != nil {
			socks = append(socks, s)
		}
	}
	p.mu.Unlock()
	for _, s := range socks {
		p.end(s, failed)
	}
	p.file.Close()
}

// lookup returns the sock of file descriptor fd, nil if none.
func (p *poller) lookup(fd int32) *sock {
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(fd) < len(p.sock) {
		return p.sock[fd]
	}
	return nil
}

// set makes s the sock of file descriptor fd (nil: none). A poller whose
// epoll set has failed takes no sock.
func (p *poller) set(fd int, s *sock) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s != nil && p.dead {
		return errors.New("the tool's poller has failed")
	}
	if fd >= len(p.sock) {
		p.sock = append(p.sock, make([]*sock, fd+1-len(p.sock))...)
	}
	p.sock[fd] = s
	return nil
}

// serve reads once from a ready socket.
func (p *poller) serve(s *sock, buf []byte) {
	n, err := rawRead(s.fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
	case err != nil:
		p.end(s, err)
	case n == 0:
		p.end(s, errEOF)
	default:
		if err := s.consume(buf[:n]); err != nil {
			p.end(s, err)
		}
	}
}

// errEOF is a socket's end when the peer closed it.
var errEOF = errors.New("connection closed by the peer")

// end takes s out of the poller, closes it and tells its owner.
func (p *poller) end(s *sock, err error) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	p.set(s.fd, nil)
	_ = unix.Shutdown(s.fd, unix.SHUT_RDWR) // a writer waiting for room gives up
	s.mu.Lock()
	s.closed = true
	_ = unix.Close(s.fd)
	s.mu.Unlock()
	s.ended(err)
}

// newSock takes nc's socket out of the Go runtime's poller: nc is closed,
// and the socket lives on in the sock, which start hands to a poller.
func newSock(nc net.Conn, consume func([]byte) error, ended func(error)) (*sock, error) {
	defer nc.Close() // the socket lives on in the duplicate
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(f uintptr) { fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	// The duplicate shares the original's O_NONBLOCK.
	return &sock{fd: fd, consume: consume, ended: ended}, nil
}

// start gives consume pending (bytes already read from the connection),
// then hands the socket to a poller, which gives it whatever arrives. If
// start fails, the socket is closed and ended is not called.
func (s *sock) start(pending []byte) error {
	fail := func(err error) error {
		unix.Close(s.fd)
		s.closed = true
		return err
	}
	p, err := pickPoller()
	if err != nil {
		return fail(err)
	}
	s.p = p
	if len(pending) > 0 {
		if err := s.consume(pending); err != nil {
			return fail(err)
		}
	}
	if err := p.set(s.fd, s); err != nil {
		return fail(err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(s.fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		p.set(s.fd, nil)
		return fail(fmt.Errorf("epoll_ctl: %w", err))
	}
	return nil
}

// write writes all of b, waiting for room for at most timeout.
func (s *sock) write(b []byte, timeout time.Duration) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return net.ErrClosed
	}
	deadline := time.Now().Add(timeout)
	for len(b) > 0 {
		n, err := rawWrite(s.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch err {
		case nil, unix.EINTR:
		case unix.EAGAIN:
			wait := time.Until(deadline)
			if wait <= 0 {
				return os.ErrDeadlineExceeded
			}
			fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(fds, int(wait/time.Millisecond)+1); err != nil && err != unix.EINTR {
				return fmt.Errorf("poll: %w", err)
			}
		default:
			return err
		}
	}
	return nil
}

// tryWrite makes one write of b that does not wait: n is what the socket
// took, 0 when it is full.
func (s *sock) tryWrite(b []byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	n, err := rawWrite(s.fd, b)
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// shutdown makes the poller end the socket (it reads end of file).
func (s *sock) shutdown() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.closed {
		_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
	}
}

// rawRead, rawWrite and rawEpollWait are read(2) and write(2) on a
// non-blocking socket and epoll_wait(2) with no timeout, none of which can
// block, made without telling the Go scheduler: a system call made the
// usual way wakes the runtime's monitor thread when it sleeps, and with the
// tool's sockets read a few at a time that wake-up cost more than the
// reads.
func rawRead(fd int, b []byte) (int, error) { return rawIO(unix.SYS_READ, fd, b) }

func rawWrite(fd int, b []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, b) }

func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawEpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
