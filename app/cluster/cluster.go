// Package cluster is what lets several nodes share one Redis and act as one
// server (PROTOCOL.md section 8): a session cache every node reads
// (SessionTier), presence summed over the live nodes (Hub, LocalPresence),
// pushes to the other nodes' connections over pub/sub (Bus), session ends
// and kicks that every live node acknowledges before they return, per-user
// rate limits (Limiter) and connection caps (Slots) shared by every node.
// Stored changes (messages, edits, deletions, group changes) never go
// through here: the store's own change feed carries them.
//
// Each piece implements a seam its user defines (session.Tier,
// service.SharedLimiter, service.Bus and service.Hub, hub.UserSlots); the
// single-node defaults live with their users and never touch this package.
//
// # Redis outages
//
// Nothing here is the source of truth for anything acknowledged. While
// Redis cannot be reached the node keeps serving its own connections:
// session reads fall back to the store, limits to this node's buckets,
// connection caps to this node's count, and pushes for other nodes are
// dropped (they are ephemeral: typing, read marks, presence). Every loop
// retries by itself; once Redis answers again the node rewrites its
// presence and connection counts, resubscribes, and the other nodes'
// pushes reach it again within a second or two.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/hub"

	"github.com/redis/go-redis/v9"
)

// Options configure a Cluster. Zero values take the defaults noted.
type Options struct {
	URL    string // redis://[user:password@]host:port/db (or rediss://)
	Prefix string // of every key and channel; "dce:"
	Node   string // this node's name, unique among the running nodes; required
	// PresenceGrace is the hub's grace (session.presence_grace): users of
	// a node that died stay online this long before they go offline, in
	// case they reconnect to another node.
	PresenceGrace time.Duration
	// Beat is how often the node refreshes its heartbeat and checks the
	// others'; 1 s. NodeTTL is how long a heartbeat lasts; 5 s.
	Beat, NodeTTL time.Duration
	// AckWait bounds how long EndSession and Kick wait for the other
	// nodes' acknowledgements; 2 s.
	AckWait time.Duration
	Log     *slog.Logger
}

// Cluster is this node's connection to the others, through Redis.
type Cluster struct {
	opts Options
	rdb  *redis.Client
	log  *slog.Logger
	keys keys

	hub    *hub.Hub
	events Events

	pres  *presence
	bus   *Bus
	slots *Slots

	down     atomic.Bool // the last Redis operation failed
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	started  atomic.Bool
}

// keys are the Redis names, all under the prefix.
type keys struct {
	prefix   string
	nodes    string // set: the names of the nodes that have beaten
	presence string // channel: changes of a node's places
	bus      string // channel: pushes and session ends
	ack      string // channel: acknowledgements of session ends and kicks
}

func newKeys(prefix string) keys {
	return keys{prefix: prefix, nodes: prefix + "nodes", presence: prefix + "presence", bus: prefix + "bus", ack: prefix + "ack"}
}

func (k keys) alive(node string) string  { return k.prefix + "node:" + node + ":alive" }
func (k keys) places(node string) string { return k.prefix + "node:" + node + ":places" }
func (k keys) conns(node string) string  { return k.prefix + "node:" + node + ":conns" }
func (k keys) session(hexKey string) string {
	return k.prefix + "sess:" + hexKey
}

// Open connects to Redis and readies this node's pieces; Start (once the
// hub exists) sets them going. It fails, naming Redis, when Redis cannot
// be reached, and for a node name that is empty or holds spaces or '|'.
func Open(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Prefix == "" {
		opts.Prefix = "dce:"
	}
	if opts.Node == "" || strings.ContainsAny(opts.Node, " \t\r\n|") {
		return nil, fmt.Errorf("cluster: the node name %q must be non-empty, without spaces or '|'", opts.Node)
	}
	if opts.Beat <= 0 {
		opts.Beat = time.Second
	}
	if opts.NodeTTL <= 0 {
		opts.NodeTTL = 5 * time.Second
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis %q: %w", opts.URL, err)
	}
	// Short timeouts: a Redis that is down must cost a node's requests a
	// moment, not the default minutes of retries.
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout, ro.PoolTimeout = time.Second, time.Second, time.Second, time.Second
	ro.MaxRetries = 1
	quietOnce.Do(func() { redis.SetLogger(debugLogger{opts.Log}) })
	rdb := redis.NewClient(ro)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s cannot be reached: %w", ro.Addr, err)
	}
	c := &Cluster{opts: opts, rdb: rdb, log: opts.Log.With("node", opts.Node), keys: newKeys(opts.Prefix), stop: make(chan struct{})}
	c.pres = newPresence(c)
	c.bus = newBus(c)
	c.slots = newSlots(c)
	// A node restarting under its old name starts from nothing: what its
	// previous run left is gone with its connections.
	v, err := rdb.HGet(ctx, c.keys.places(opts.Node), versionField).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", ro.Addr, err)
	}
	c.pres.version.Store(max(v, time.Now().UnixMicro()))
	if err := rdb.Del(ctx, c.keys.places(opts.Node), c.keys.conns(opts.Node)).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", ro.Addr, err)
	}
	return c, nil
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.opts.Node }

// HubOptions sets the hub's options that feed the cluster: presence told
// raw to LocalPresence, and the shared connection slots.
func (c *Cluster) HubOptions(o *hub.Options) {
	o.OnPresence = c.LocalPresence
	o.RawPresence = true
	o.Slots = c.slots
}

// Events are what the node is told of every node's changes.
type Events struct {
	// Presence is told every change of a user's places summed over the
	// live nodes, in order, folded as the hub folds one node's (no report
	// during a grace, none for a return to the places last reported):
	// the chat's PresenceChanged.
	Presence func(user int64, online bool, places int)
	// AccountChanged is told that another node changed user's account
	// (a ban, a mute, a profile), before that node's change returns: the
	// chat drops its cached copy.
	AccountChanged func(user int64)
}

// Start sets the node going with its hub (made with HubOptions):
// heartbeat, presence mirror, subscriptions.
func (c *Cluster) Start(h *hub.Hub, ev Events) {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	c.hub, c.events = h, ev
	c.pres.markDirty() // write the (empty) mirror and beat at once
	c.run(c.pres.mirrorLoop)
	c.run(c.pres.beatLoop)
	c.run(c.pres.resyncLoop)
	c.run(c.bus.publishLoop)
	c.run(c.slots.releaseLoop)
	c.run(c.receiveLoop)
}

func (c *Cluster) run(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Close stops the node's loops, takes it out of the live nodes (its users
// go offline on the others after the grace, unless they have places
// elsewhere) and closes the Redis client.
func (c *Cluster) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c.started.Load() {
		pipe := c.rdb.TxPipeline()
		pipe.Del(ctx, c.keys.alive(c.opts.Node), c.keys.places(c.opts.Node), c.keys.conns(c.opts.Node))
		pipe.SRem(ctx, c.keys.nodes, c.opts.Node)
		_, _ = pipe.Exec(ctx)
	}
	return c.rdb.Close()
}

// Down reports whether the last Redis operation failed (the heartbeat
// tries one every second).
func (c *Cluster) Down() bool { return c.down.Load() }

// failed records a failed Redis operation, logging the first of an outage.
func (c *Cluster) failed(what string, err error) {
	if c.down.CompareAndSwap(false, true) {
		c.log.Warn("redis: cannot be reached; serving this node's connections only until it is back", "op", what, "err", err)
	}
}

// ok records a Redis operation that succeeded, logging the end of an outage.
func (c *Cluster) ok() {
	if c.down.CompareAndSwap(true, false) {
		c.log.Info("redis: reachable again")
	}
}

// receiveLoop reads the subscriptions: other nodes' presence changes,
// pushes and session ends, and acknowledgements. go-redis reconnects and
// resubscribes by itself on the next receive after an error; a fresh
// subscription resyncs presence, whose changes may have been missed.
func (c *Cluster) receiveLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()
	ps := c.rdb.Subscribe(ctx, c.keys.presence, c.keys.bus, c.keys.ack)
	defer ps.Close()
	for {
		msg, err := ps.ReceiveTimeout(ctx, c.opts.Beat)
		select {
		case <-c.stop:
			return
		default:
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			c.failed("subscribe", err)
			select {
			case <-c.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == c.keys.presence {
				c.ok()
				c.pres.resyncAll()
			}
		case *redis.Message:
			switch m.Channel {
			case c.keys.presence:
				c.pres.received(m.Payload)
			case c.keys.bus:
				c.bus.received(m.Payload)
			case c.keys.ack:
				c.bus.acked(m.Payload)
			}
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// quietOnce sets go-redis's logger once per process: it says every failed
// dial, many a second in an outage, which failed already reports once.
var quietOnce sync.Once

type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("redis: " + fmt.Sprintf(format, v...))
}
