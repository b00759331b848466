package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FloorConfig is `dce bench floor`.
type FloorConfig struct {
	Readers int     // loopback TCP connections
	Msgs    int     // messages, each written to every connection
	Rate    float64 // messages a second
	Size    int     // bytes per message (at least 8)
	// Reader, when set, runs the reading side elsewhere (another process,
	// as the load tool and the server are two): it dials Readers
	// connections to addr and reads Msgs messages of Size bytes from each.
	// Nil: the reading side runs in this process (FloorRead).
	Reader func(ctx context.Context, addr string) (FloorReadResult, error)
}

// FloorResult is what `dce bench floor` measured.
type FloorResult struct {
	Workload  string  `json:"workload"`
	Readers   int     `json:"readers"`
	Rate      float64 `json:"rate"`
	Processes int     `json:"processes"`
	Expected  int64   `json:"expected"`
	Delivered int64   `json:"delivered"`
	Latency   Latency `json:"latency"`
	// CPU time of the writing side, from the first write to the last,
	// and of the reading side (its own process with -procs 2; with
	// -procs 1 both are the one process's).
	WriterCPUS float64 `json:"writer_cpu_s"`
	ReaderCPUS float64 `json:"reader_cpu_s"`
}

// FloorReadResult is what the reading side of `dce bench floor` saw.
type FloorReadResult struct {
	Workload  string  `json:"workload"`
	Delivered int64   `json:"delivered"`
	Latency   Latency `json:"latency"`
	CPUS      float64 `json:"cpu_s"` // this process's, while reading
}

// Floor measures what this machine can do at best for a paced fan-out,
// with no server in the way: a TCP listener on loopback with cfg.Readers
// connections to it; for each message, one goroutine per connection
// writes Size bytes carrying the send time (as the hub starts a writer per
// delivery), and the load tool's pollers read them (as they read the
// tool's WebSocket connections), in another process when cfg.Reader says
// so. Its latency is the floor under `fanout -rate` on the same machine:
// compare the two as a ratio.
func Floor(ctx context.Context, o Options, cfg FloorConfig) (FloorResult, error) {
	res := FloorResult{Workload: "floor", Readers: cfg.Readers, Rate: cfg.Rate, Processes: 1}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.Readers <= 0 || cfg.Msgs <= 0 || cfg.Rate <= 0 {
		return res, fmt.Errorf("-n, -msgs and -rate must be positive")
	}
	cfg.Size = max(cfg.Size, 8)
	files := cfg.Readers + 64
	if cfg.Reader == nil {
		files += cfg.Readers // both ends in this process
	} else {
		res.Processes = 2
	}
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err == nil && uint64(files) > limit.Cur {
		return res, fmt.Errorf("-n %d needs %d open files in this process; the limit is %d", cfg.Readers, files, limit.Cur)
	}
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer ln.Close()
	reader := cfg.Reader
	if reader == nil {
		reader = func(ctx context.Context, addr string) (FloorReadResult, error) { return FloorRead(ctx, o, addr, cfg) }
	}
	type outcome struct {
		read FloorReadResult
		err  error
	}
	readDone := make(chan outcome, 1)
	go func() {
		r, err := reader(ctx, ln.Addr().String())
		readDone <- outcome{r, err}
	}()
	var writers []net.Conn
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	go func() { <-ctx.Done(); ln.Close() }() // ends a wait for a reader that failed to connect
	for range cfg.Readers {
		w, err := ln.Accept()
		if err != nil {
			select {
			case r := <-readDone:
				if r.err != nil {
					return res, r.err
				}
			default:
			}
			return res, fmt.Errorf("accepting the readers: %w", err)
		}
		writers = append(writers, w)
	}
	o.progress("%d loopback connections open; writing %d messages at %.0f a second", cfg.Readers, cfg.Msgs, cfg.Rate)

	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start, cpuStart := time.Now(), toolCPU()
	var writes sync.WaitGroup
	for m := 0; m < cfg.Msgs && ctx.Err() == nil; m++ {
		if d := time.Until(start.Add(time.Duration(m) * interval)); d > 0 {
			time.Sleep(d)
		}
		msg := make([]byte, cfg.Size)
		binary.LittleEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
		for _, w := range writers {
			writes.Go(func() { _, _ = w.Write(msg) })
		}
	}
	writes.Wait()
	res.WriterCPUS = toolCPU() - cpuStart
	var r outcome
	select {
	case r = <-readDone:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.Expected = int64(cfg.Readers) * int64(cfg.Msgs)
	res.Delivered, res.Latency, res.ReaderCPUS = r.read.Delivered, r.read.Latency, r.read.CPUS
	if r.err != nil {
		return res, r.err
	}
	if res.Delivered != res.Expected {
		return res, fmt.Errorf("%d of %d deliveries arrived", res.Delivered, res.Expected)
	}
	return res, nil
}

// FloorRead is the reading side of Floor: it dials cfg.Readers connections
// to addr (a loopback address) and reads cfg.Msgs messages of cfg.Size
// bytes from each, timing each from the send time it carries.
func FloorRead(ctx context.Context, o Options, addr string, cfg FloorConfig) (FloorReadResult, error) {
	res := FloorReadResult{Workload: "floor-read"}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return res, fmt.Errorf("-addr: %v", err)
	}
	if err := loopbackHost(host); err != nil {
		return res, fmt.Errorf("-addr: %v", err)
	}
	cfg.Size = max(cfg.Size, 8)
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	var (
		lat       Histogram
		delivered atomic.Int64
		finished  sync.WaitGroup // per connection: it has read every message, or ended before
		closed    sync.WaitGroup // per connection: its socket is closed
		socks     []*sock
	)
	defer func() {
		for _, s := range socks {
			s.shutdown()
		}
		closed.Wait()
	}()
	for i := range cfg.Readers {
		d := net.Dialer{}
		if src := o.source(i); src != nil {
			d.LocalAddr = &net.TCPAddr{IP: src}
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return res, fmt.Errorf("connection %d: %w", i, err)
		}
		// Read by the tool's pollers, as the load tool's connections are.
		// A connection that has read everything stays open until the end:
		// closing thousands of sockets during the last message's sweep
		// would delay that message's other readers.
		var (
			msg  = make([]byte, cfg.Size)
			have int // bytes of msg so far
			left = cfg.Msgs
			over bool // finished.Done called; on the poller's goroutine only
		)
		finish := func() {
			if !over {
				over = true
				finished.Done()
			}
		}
		finished.Add(1)
		closed.Add(1)
		s, err := newSock(c, func(data []byte) error {
			for len(data) > 0 && left > 0 {
				n := copy(msg[have:], data)
				have, data = have+n, data[n:]
				if have == len(msg) {
					lat.Add(time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(msg))))
					delivered.Add(1)
					have, left = 0, left-1
				}
			}
			if left == 0 {
				finish()
			}
			return nil
		}, func(error) { finish(); closed.Done() })
		if err == nil {
			err = s.start(nil)
		}
		if err != nil {
			finish()
			closed.Done()
			return res, fmt.Errorf("connection %d: %w", i, err)
		}
		socks = append(socks, s)
	}
	cpuStart := toolCPU()
	done := make(chan struct{})
	go func() { finished.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, s := range socks {
			s.shutdown()
		}
		<-done
	}
	res.Delivered, res.Latency, res.CPUS = delivered.Load(), lat.Summary(), toolCPU()-cpuStart
	if want := int64(cfg.Readers) * int64(cfg.Msgs); res.Delivered != want {
		return res, errors.New("the reading side stopped before every message arrived")
	}
	return res, nil
}
