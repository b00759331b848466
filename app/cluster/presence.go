package cluster

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/hub"

	"github.com/redis/go-redis/v9"
)

// versionField is the field of a node's places hash that holds the
// version of the change that wrote it last.
const versionField = "_v"

// presence is presence over the nodes. Each node mirrors its own places
// (what its hub tells LocalPresence) into its hash in Redis, every change
// with the next version of the node's mirror, and publishes the change on
// the presence channel in the same transaction. Every node keeps a view
// of every live node's places, applies each change whose version follows
// the view's, and reads the whole hash again (a resync) after a gap: a
// change it missed (an outage, a fresh subscription), a node it did not
// know, or a heartbeat that names a version it has not reached. A node
// whose heartbeat lapses is dropped; its users stay online for the grace
// (they may be reconnecting to another node) and then go offline unless
// another node holds them.
type presence struct {
	c       *Cluster
	version atomic.Int64 // of this node's mirror

	mu     sync.Mutex           // guards the fields below; Events.Presence runs under it
	nodes  map[string]*nodeView // this node's (local) and the live others'
	local  *nodeView
	totals map[int64]*total

	pmu     sync.Mutex
	pending map[int64]int // this node's changes not yet mirrored: places, or -1 (gone)
	dirty   bool          // the mirror must be written whole
	wake    chan struct{}

	rmu         sync.Mutex
	resyncNodes map[string]bool
	resyncEvery bool
	resyncWake  chan struct{}
}

// nodeView is what a node holds: its users' places (a user is online
// there, 0 places being its grace) as of version.
type nodeView struct {
	version int64
	beat    int64 // the version its last heartbeat named
	users   map[int64]int
}

// total is a user's places summed over the live nodes.
type total struct {
	places, nodes int
	held          *time.Timer // the grace of a user whose node died
	holdGen       uint64
	told          bool // online was reported, with toldPlaces
	toldPlaces    int
}

func newPresence(c *Cluster) *presence {
	local := &nodeView{users: map[int64]int{}}
	return &presence{c: c, nodes: map[string]*nodeView{c.opts.Node: local}, local: local, totals: map[int64]*total{},
		pending: map[int64]int{}, wake: make(chan struct{}, 1), resyncNodes: map[string]bool{}, resyncWake: make(chan struct{}, 1)}
}

// LocalPresence is this node's hub's raw presence callback
// (hub.Options.RawPresence): every change of a user's places here.
func (c *Cluster) LocalPresence(user int64, online bool, places int) {
	p := c.pres
	p.mu.Lock()
	p.applyLocked(p.local, user, places, online)
	p.mu.Unlock()
	p.pmu.Lock()
	if online {
		p.pending[user] = places
	} else {
		p.pending[user] = -1
	}
	p.pmu.Unlock()
	signal(p.wake)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (p *presence) markDirty() {
	p.pmu.Lock()
	p.dirty = true
	p.pmu.Unlock()
	signal(p.wake)
}

// applyLocked sets user's places on node v (present false: not there).
func (p *presence) applyLocked(v *nodeView, user int64, places int, present bool) {
	old, had := v.users[user]
	if present {
		v.users[user] = places
	} else {
		delete(v.users, user)
	}
	t := p.totals[user]
	if t == nil {
		if !present {
			return
		}
		t = &total{}
		p.totals[user] = t
	}
	if had {
		t.places -= old
		t.nodes--
	}
	if present {
		t.places += places
		t.nodes++
	}
	p.settleLocked(user, t)
}

// settleLocked reports a user's new total as the hub reports one node's
// changes: nothing during a grace, nothing for a return to the places last
// reported, offline once no live node holds them and no grace runs.
func (p *presence) settleLocked(user int64, t *total) {
	if t.nodes > 0 && t.held != nil {
		t.held.Stop()
		t.held = nil
		t.holdGen++
	}
	if t.nodes == 0 && t.held == nil {
		delete(p.totals, user)
		if t.told {
			p.tellLocked(user, false, 0)
		}
		return
	}
	if t.places == 0 || (t.told && t.toldPlaces == t.places) {
		return
	}
	t.told, t.toldPlaces = true, t.places
	p.tellLocked(user, true, t.places)
}

func (p *presence) tellLocked(user int64, online bool, places int) {
	if f := p.c.events.Presence; f != nil {
		f(user, online, places)
	}
}

// dropLocked forgets a node whose heartbeat lapsed.
func (p *presence) dropLocked(name string) {
	v := p.nodes[name]
	if v == nil || v == p.local {
		return
	}
	delete(p.nodes, name)
	p.c.log.Warn("cluster: a node's heartbeat lapsed; its users go offline unless they are elsewhere", "lost", name, "users", len(v.users))
	for user, places := range v.users {
		t := p.totals[user]
		if t == nil {
			continue
		}
		t.places -= places
		t.nodes--
		if t.nodes == 0 && t.told && t.held == nil && p.c.opts.PresenceGrace > 0 {
			t.holdGen++
			gen := t.holdGen
			t.held = time.AfterFunc(p.c.opts.PresenceGrace, func() { p.graceOver(user, t, gen) })
		}
		p.settleLocked(user, t)
	}
}

func (p *presence) graceOver(user int64, t *total, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.totals[user] != t || t.holdGen != gen || t.held == nil {
		return
	}
	t.held = nil
	p.settleLocked(user, t)
}

// replaceLocked puts a node's whole state (a resync) in its view, unless
// the view is as new already.
func (p *presence) replaceLocked(name string, version int64, users map[int64]int) {
	v := p.nodes[name]
	if v == nil {
		v = &nodeView{users: map[int64]int{}}
		p.nodes[name] = v
	} else if version <= v.version {
		return
	}
	for user := range v.users {
		if _, ok := users[user]; !ok {
			p.applyLocked(v, user, 0, false)
		}
	}
	for user, places := range users {
		if old, ok := v.users[user]; !ok || old != places {
			p.applyLocked(v, user, places, true)
		}
	}
	v.version = version
}

// received applies another node's published change:
// "P|node|version|user:places,..." (places -1: gone) or "F|node|version"
// (the node wrote its mirror whole).
func (p *presence) received(payload string) {
	parts := strings.SplitN(payload, "|", 4)
	if len(parts) < 3 || parts[1] == p.c.opts.Node {
		return
	}
	name := parts[1]
	version, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	v := p.nodes[name]
	if v == nil || parts[0] != "P" || len(parts) != 4 || version != v.version+1 {
		stale := v != nil && version <= v.version
		p.mu.Unlock()
		if !stale {
			p.wantResync(name)
		}
		return
	}
	for _, e := range strings.Split(parts[3], ",") {
		us, ps, ok := strings.Cut(e, ":")
		user, err1 := strconv.ParseInt(us, 10, 64)
		places, err2 := strconv.Atoi(ps)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		p.applyLocked(v, user, max(places, 0), places >= 0)
	}
	v.version = version
	p.mu.Unlock()
}

func (p *presence) wantResync(name string) {
	p.rmu.Lock()
	p.resyncNodes[name] = true
	p.rmu.Unlock()
	signal(p.resyncWake)
}

// resyncAll reads every node's state again (a fresh subscription).
func (p *presence) resyncAll() {
	p.rmu.Lock()
	p.resyncEvery = true
	p.rmu.Unlock()
	signal(p.resyncWake)
}

// mirrorLoop writes this node's changes to its hash and publishes them,
// one transaction at a time, in order; after a failure it writes the
// whole mirror instead.
func (p *presence) mirrorLoop() {
	c := p.c
	for {
		select {
		case <-c.stop:
			return
		case <-p.wake:
		}
		p.pmu.Lock()
		pend, whole := p.pending, p.dirty
		p.pending, p.dirty = map[int64]int{}, false
		p.pmu.Unlock()
		if !whole && len(pend) == 0 {
			continue
		}
		var fields map[int64]int
		if whole {
			p.mu.Lock()
			fields = make(map[int64]int, len(p.local.users))
			for u, n := range p.local.users {
				fields[u] = n
			}
			p.mu.Unlock()
		} else {
			fields = pend
		}
		if err := p.write(fields, whole); err != nil {
			c.failed("presence", err)
			p.markDirtyQuiet()
			continue
		}
		c.ok()
	}
}

func (p *presence) markDirtyQuiet() {
	p.pmu.Lock()
	p.dirty = true
	p.pmu.Unlock()
}

func (p *presence) write(fields map[int64]int, whole bool) error {
	c := p.c
	ver := p.version.Add(1)
	key := c.keys.places(c.opts.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pipe := c.rdb.TxPipeline()
	if whole {
		pipe.Del(ctx, key)
	}
	set := []any{versionField, ver}
	var del []string
	var msg strings.Builder
	if whole {
		msg.WriteString("F|" + c.opts.Node + "|" + itoa(ver))
	} else {
		msg.WriteString("P|" + c.opts.Node + "|" + itoa(ver) + "|")
	}
	first := true
	for u, n := range fields {
		if n < 0 {
			del = append(del, itoa(u))
		} else {
			set = append(set, itoa(u), n)
		}
		if !whole {
			if !first {
				msg.WriteByte(',')
			}
			first = false
			msg.WriteString(itoa(u) + ":" + strconv.Itoa(n))
		}
	}
	pipe.HSet(ctx, key, set...)
	if len(del) > 0 {
		pipe.HDel(ctx, key, del...)
	}
	pipe.Publish(ctx, c.keys.presence, msg.String())
	_, err := pipe.Exec(ctx)
	return err
}

// beatLoop refreshes this node's heartbeat and checks the others'.
func (p *presence) beatLoop() {
	c := p.c
	t := time.NewTicker(c.opts.Beat)
	defer t.Stop()
	for {
		p.beat()
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

func (p *presence) beat() {
	c := p.c
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Beat)
	defer cancel()
	pipe := c.rdb.Pipeline()
	pipe.Set(ctx, c.keys.alive(c.opts.Node), p.version.Load(), c.opts.NodeTTL)
	pipe.SAdd(ctx, c.keys.nodes, c.opts.Node)
	mine := pipe.HGet(ctx, c.keys.places(c.opts.Node), versionField)
	members := pipe.SMembers(ctx, c.keys.nodes)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		c.failed("heartbeat", err)
		return
	}
	c.ok()
	if errors.Is(mine.Err(), redis.Nil) {
		p.markDirty() // Redis lost the mirror (a restart without persistence)
	} else {
		p.pmu.Lock()
		dirty := p.dirty
		p.pmu.Unlock()
		if dirty {
			signal(p.wake)
		}
	}
	var others []string
	for _, m := range members.Val() {
		if m != c.opts.Node {
			others = append(others, m)
		}
	}
	alive := map[string]int64{}
	if len(others) > 0 {
		ks := make([]string, len(others))
		for i, m := range others {
			ks[i] = c.keys.alive(m)
		}
		vals, err := c.rdb.MGet(ctx, ks...).Result()
		if err != nil {
			c.failed("heartbeat", err)
			return
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				n, _ := strconv.ParseInt(s, 10, 64)
				alive[others[i]] = n
			}
		}
	}
	var gone []string
	p.mu.Lock()
	for name, v := range p.nodes {
		if v == p.local {
			continue
		}
		if _, ok := alive[name]; !ok {
			p.dropLocked(name)
			gone = append(gone, name)
		}
	}
	var stale []string
	for name, beat := range alive {
		v := p.nodes[name]
		if v == nil || v.version < v.beat {
			stale = append(stale, name)
		}
		if v != nil {
			v.beat = beat
		}
	}
	p.mu.Unlock()
	for _, name := range others {
		if _, ok := alive[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		c.rdb.SRem(ctx, c.keys.nodes, anys(gone)...)
	}
	for _, name := range stale {
		p.wantResync(name)
	}
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// resyncLoop reads the nodes whose views fell behind.
func (p *presence) resyncLoop() {
	c := p.c
	for {
		select {
		case <-c.stop:
			return
		case <-p.resyncWake:
		}
		p.rmu.Lock()
		names, every := p.resyncNodes, p.resyncEvery
		p.resyncNodes, p.resyncEvery = map[string]bool{}, false
		p.rmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if every {
			members, err := c.rdb.SMembers(ctx, c.keys.nodes).Result()
			if err != nil {
				c.failed("resync", err)
			}
			for _, m := range members {
				names[m] = true
			}
		}
		for name := range names {
			if name != c.opts.Node {
				p.resync(ctx, name)
			}
		}
		cancel()
	}
}

func (p *presence) resync(ctx context.Context, name string) {
	c := p.c
	pipe := c.rdb.Pipeline()
	all := pipe.HGetAll(ctx, c.keys.places(name))
	alive := pipe.Exists(ctx, c.keys.alive(name))
	if _, err := pipe.Exec(ctx); err != nil {
		c.failed("resync", err)
		return
	}
	if alive.Val() == 0 {
		return // a node that died leaves its mirror behind: it is not read back
	}
	h := all.Val()
	version, err := strconv.ParseInt(h[versionField], 10, 64)
	if err != nil {
		return // no mirror (yet): the node writes it whole and says so
	}
	users := make(map[int64]int, len(h))
	for k, v := range h {
		u, err1 := strconv.ParseInt(k, 10, 64)
		n, err2 := strconv.Atoi(v)
		if err1 == nil && err2 == nil && n >= 0 {
			users[u] = n
		}
	}
	p.mu.Lock()
	p.replaceLocked(name, version, users)
	p.mu.Unlock()
}

// others lists the live nodes this node knows, itself excluded.
func (p *presence) others() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.nodes))
	for name, v := range p.nodes {
		if v != p.local {
			out = append(out, name)
		}
	}
	return out
}

// online lists the users online on any live node, with their places.
func (p *presence) online() []hub.Online {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]hub.Online, 0, len(p.totals))
	for id, t := range p.totals {
		out = append(out, hub.Online{UserID: id, Places: t.places})
	}
	return out
}

func (p *presence) placesOf(user int64) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.totals[user]
	if t == nil {
		return 0, false
	}
	return t.places, true
}
