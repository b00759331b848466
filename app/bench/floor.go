package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
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
}

// FloorResult is what `dce bench floor` measured.
type FloorResult struct {
	Workload  string  `json:"workload"`
	Readers   int     `json:"readers"`
	Rate      float64 `json:"rate"`
	Expected  int64   `json:"expected"`
	Delivered int64   `json:"delivered"`
	Latency   Latency `json:"latency"`
}

// Floor measures what this machine can do at best for a paced fan-out,
// with no server in the way: in this process, a TCP listener on loopback
// and cfg.Readers connections to it; for each message, one goroutine per
// connection writes Size bytes carrying the send time (as the hub starts a
// writer per delivery), and a goroutine per connection reads them (as the
// load tool's readers do). Its latency is the floor under `fanout -rate`
// on the same machine: compare the two as a ratio.
func Floor(ctx context.Context, o Options, cfg FloorConfig) (FloorResult, error) {
	res := FloorResult{Workload: "floor", Readers: cfg.Readers, Rate: cfg.Rate}
	if err := o.Check(); err != nil {
		return res, err
	}
	if cfg.Readers <= 0 || cfg.Msgs <= 0 || cfg.Rate <= 0 {
		return res, fmt.Errorf("-n, -msgs and -rate must be positive")
	}
	cfg.Size = max(cfg.Size, 8)
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err == nil && uint64(2*cfg.Readers+64) > limit.Cur {
		return res, fmt.Errorf("-n %d needs %d open files (both ends of each connection are in this process); the limit is %d",
			cfg.Readers, 2*cfg.Readers+64, limit.Cur)
	}
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer ln.Close()
	var (
		lat       Histogram
		delivered atomic.Int64
		readers   sync.WaitGroup
		mu        sync.Mutex
		open      []net.Conn // both ends, closed at the end
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	}()
	writers := make([]net.Conn, 0, cfg.Readers)
	for i := range cfg.Readers {
		d := net.Dialer{}
		if src := o.source(i); src != nil {
			d.LocalAddr = &net.TCPAddr{IP: src}
		}
		client, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return res, fmt.Errorf("connection %d: %w", i, err)
		}
		server, err := ln.Accept()
		if err != nil {
			client.Close()
			return res, err
		}
		mu.Lock()
		open = append(open, client, server)
		mu.Unlock()
		writers = append(writers, server)
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, cfg.Size)
			for range cfg.Msgs {
				if _, err := io.ReadFull(client, buf); err != nil {
					return
				}
				lat.Add(time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(buf))))
				delivered.Add(1)
			}
		}()
	}
	o.progress("%d loopback connections open; writing %d messages at %.0f a second", cfg.Readers, cfg.Msgs, cfg.Rate)

	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
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
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	res.Expected = int64(cfg.Readers) * int64(cfg.Msgs)
	res.Delivered = delivered.Load()
	res.Latency = lat.Summary()
	if res.Delivered != res.Expected {
		return res, fmt.Errorf("%d of %d deliveries arrived before the time bound", res.Delivered, res.Expected)
	}
	return res, nil
}
