package boot

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"dce/app/control"
	"dce/common/config"
	"dce/project/im/controller"
)

// Status is what `dce websocket status` prints.
type Status struct {
	PID              int     `json:"pid"`
	Node             string  `json:"node"`
	Version          string  `json:"version"`
	UptimeS          int64   `json:"uptime_s"`
	HTTP             string  `json:"http"`
	TCP              string  `json:"tcp"`
	UDP              string  `json:"udp"`
	Connections      int     `json:"connections"`
	OnlineUsers      int     `json:"online_users"`
	MessagesPerS     float64 `json:"messages_per_s"`
	MessagesSent     uint64  `json:"messages_sent"`
	SlowClosed       uint64  `json:"slow_closed"`
	SessionsCached   int64   `json:"sessions_cached"`
	SessionRefills   uint64  `json:"session_refills"`
	Goroutines       int     `json:"goroutines"`
	RSSBytes         uint64  `json:"rss_bytes"`
	HeapInUseBytes   uint64  `json:"heap_inuse_bytes"`
	CPUSeconds       float64 `json:"cpu_s"`        // user + system CPU time of the process
	StoreDriver      string  `json:"store_driver"` // sqlite or postgres
	StoreSynchronous string  `json:"store_synchronous"`
	StoreCommits     int64   `json:"store_commits"` // group commits since start
}

// Status reads the server's figures now. Messages per second is the mean
// over the time since the previous call (at least one second).
func (s *Server) Status() Status {
	hs := s.Hub.Stats()
	sent := s.Chat.Sent() // not Stats: counting the stored messages scans an index
	ss := s.Sessions.Stats()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	httpAddr, tcpAddr, udpAddr := s.Addrs()
	var commits int64
	if s.Store != nil {
		commits = s.Store.Commits()
	}
	return Status{PID: os.Getpid(), Node: s.node, StoreDriver: s.cfg.Store.Driver, Version: Version, UptimeS: int64(time.Since(s.started).Seconds()),
		HTTP: httpAddr, TCP: tcpAddr, UDP: udpAddr, Connections: hs.Connections, OnlineUsers: hs.Online,
		MessagesPerS: s.rate.perSecond(sent), MessagesSent: sent, SlowClosed: hs.SlowClosed,
		SessionsCached: ss.Entries, SessionRefills: ss.Refills, Goroutines: runtime.NumGoroutine(),
		RSSBytes: controller.RSS(), HeapInUseBytes: ms.HeapInuse, CPUSeconds: cpuSeconds(),
		StoreSynchronous: s.cfg.Store.Synchronous, StoreCommits: commits}
}

// Reload applies the settings of cfg that can change while running, those
// config tags reload:"apply" ([limits] but the frame limit, the failed-login
// window and the UDP peer cap; server.allowed_origins, server.log_level,
// session.logout_on_close). It returns the changed settings it applied and
// the changed settings that need a restart; those keep their running values,
// so the next reload names them again. Both lists are logged.
func (s *Server) Reload(cfg config.Config) (applied, restartNeeded []string) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	next := s.running
	running, wanted := config.Fields(&next), config.Fields(&cfg)
	for i, f := range running {
		key := f.Section + "." + f.Key
		if sameValue(f.Value, wanted[i].Value) {
			continue
		}
		if f.Reloadable {
			f.Value.Set(wanted[i].Value)
			applied = append(applied, key)
		} else {
			restartNeeded = append(restartNeeded, key)
		}
	}
	s.running = next
	s.Chat.Reload(next.Limits)
	s.Hub.SetCaps(maxConnections(next.Limits.MaxConnections), next.Limits.ConnectionsPerUser, next.Limits.AnonConnectionsPerIP)
	s.live.Store(liveSettings(next))
	_ = s.logLevel.UnmarshalText([]byte(next.Server.LogLevel))
	s.Log.Info("configuration reloaded", "applied", strings.Join(applied, ","))
	if len(restartNeeded) > 0 {
		s.Log.Warn("configuration changes that need a restart", "restart_needed", strings.Join(restartNeeded, ","))
	}
	return applied, restartNeeded
}

// sameValue compares two settings' values (lists by their items: an
// empty list in the file is the default's none).
func sameValue(a, b reflect.Value) bool {
	if as, ok := a.Interface().([]string); ok {
		return slices.Equal(as, b.Interface().([]string))
	}
	return a.Interface() == b.Interface()
}

// openControl listens on the control socket and writes the pid file.
func (s *Server) openControl() error {
	ctl, err := control.Listen(SocketPath(s.cfg), s.controlCommand, s.Log)
	if err != nil {
		return err
	}
	s.control = ctl
	return os.WriteFile(s.pidPath(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

func (s *Server) controlCommand(ctx context.Context, command string) (any, error) {
	switch command {
	case "status":
		return s.Status(), nil
	case "stop":
		s.RequestStop()
		return map[string]any{"stopping": true, "pid": os.Getpid()}, nil
	case "reload":
		if s.opts.Reload == nil {
			return nil, fmt.Errorf("this server was started without a configuration to reload")
		}
		cfg, err := s.opts.Reload()
		if err != nil {
			return nil, err
		}
		applied, restart := s.Reload(cfg)
		return reloadReply{Reloaded: true, Applied: orEmpty(applied), RestartNeeded: orEmpty(restart)}, nil
	}
	return nil, fmt.Errorf("unknown control command %q", command)
}

// reloadReply is what `dce websocket reload` prints: the changed settings
// applied, and those that need a restart to take effect.
type reloadReply struct {
	Reloaded      bool     `json:"reloaded"`
	Applied       []string `json:"applied"`
	RestartNeeded []string `json:"restart_needed"`
}

func orEmpty(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// rateMeter turns a growing count into a rate between two readings.
type rateMeter struct {
	mu        sync.Mutex
	lastCount uint64
	lastTime  time.Time
	rate      float64
}

func (r *rateMeter) perSecond(count uint64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.lastTime.IsZero() {
		r.lastCount, r.lastTime = count, now
		return 0
	}
	if elapsed := now.Sub(r.lastTime).Seconds(); elapsed >= 1 {
		r.rate = float64(count-r.lastCount) / elapsed
		r.lastCount, r.lastTime = count, now
	}
	return r.rate
}

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
