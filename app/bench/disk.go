package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DiskConfig is `dce bench disk`.
type DiskConfig struct {
	Dir  string  // where the probe file goes: the store's folder
	N    int     // appends
	Rate float64 // appends a second
	Size int     // bytes per append
}

// DiskResult is what `dce bench disk` measured.
type DiskResult struct {
	Workload string  `json:"workload"`
	Dir      string  `json:"dir"`
	N        int     `json:"n"`
	Rate     float64 `json:"rate"`
	Size     int     `json:"size"`
	Latency  Latency `json:"latency"` // of one fdatasync
}

// Disk measures the floor that synchronous=FULL puts under a durable
// write: N appends of Size bytes to a new file in Dir, each made durable
// with fdatasync(2) before the next, at Rate a second, as the store's
// commits are in a paced fan-out. A message's push waits for its commit,
// so in a paced run with FULL, this is the least its latency can be.
func Disk(ctx context.Context, o Options, cfg DiskConfig) (DiskResult, error) {
	res := DiskResult{Workload: "disk", Dir: cfg.Dir, N: cfg.N, Rate: cfg.Rate, Size: cfg.Size}
	if cfg.N <= 0 || cfg.Rate <= 0 || cfg.Size <= 0 {
		return res, fmt.Errorf("-n, -rate and -size must be positive")
	}
	ctx, cancel := o.withDeadline(ctx)
	defer cancel()
	f, err := os.CreateTemp(cfg.Dir, "bench-disk-*")
	if err != nil {
		return res, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, cfg.Size)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	var lat Histogram
	start := time.Now()
	for i := range cfg.N {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if _, err := f.Write(block); err != nil {
			return res, err
		}
		at := time.Now()
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return res, fmt.Errorf("fdatasync: %w", err)
		}
		lat.Add(time.Since(at))
	}
	res.Latency = lat.Summary()
	return res, nil
}
