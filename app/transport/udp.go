package transport

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/session"
	"dce/app/wire"
	"dce/common/model"
)

const (
	// maxDatagram is the largest datagram the server sends (PROTOCOL.md).
	maxDatagram = 8 << 10
	// amplification: until an address has proved it receives, the server
	// sends it at most this many times the bytes it received from it.
	amplification = 3
	// udpInbox is how many datagrams of one peer may wait to be handled.
	udpInbox = 64
)

// UDP serves frames over UDP, one per datagram. Each source address is a
// peer, live until it has been silent for UDPPeerTimeout.
//
// A source address can be forged, so a peer starts unproven: it is no
// hub connection (it counts against no per-address or server cap, gets no
// pushes and holds no place), and everything sent to it, replies and
// errors alike, stays within amplification times the bytes received from
// it. It may call the public nodes (ping, im/login, im/resume, im/signer,
// im/verify); a login or resume from it makes a session pending, and the
// reply carries "verify" with a token of 128 random bits, bound to the
// address and to that session. Nodes that need a login answer unauthorized,
// naming im/verify, while the session is pending. When the address sends
// the token back (im/verify), it has proved it receives: the peer becomes
// a hub connection attached to the session (a place of the user, counted
// against the caps like any connection; pushes start), and the byte cap
// no longer applies. A reply too large for what the unproven address may
// still be sent is answered with a short too_large that says to pad the
// request, when that fits, and dropped otherwise. The peer table's cap
// (udp_peers) counts proven and unproven peers alike; a proven peer that
// is closed (a kick, a ban, a full queue) or goes quiet ends, and its
// address starts unproven again.
type UDP struct {
	*Options
	pc *net.UDPConn

	mu      sync.Mutex // guards peers, blocked and closed
	peers   map[netip.AddrPort]*udpPeer
	blocked map[netip.AddrPort]time.Time
	closed  bool // Close has begun: Serve starts nothing more
	done    chan struct{}
	wg      sync.WaitGroup
}

type udpPeer struct {
	udp  *UDP
	addr netip.AddrPort
	ip   string
	bad  badFrames // the worker's

	mu sync.Mutex // guards the fields below
	// proven is the peer's hub connection once the address has proved it
	// receives; nil before.
	proven *provenPeer
	// pending is the session logged in or resumed from the address while
	// it is unproven, and token what im/verify must bring back for it.
	pending   *model.Session
	token     string
	unwatched bool
	lastSeen  time.Time
	received  int // bytes received, while unproven
	sent      int // bytes sent, while unproven
	inbox     [][]byte
	working   bool
	gone      bool
}

// provenPeer is a proven peer's hub connection, as the nodes see it: a
// repeated im/verify (its first reply lost) is answered again.
type provenPeer struct {
	*hub.Conn
	token string
}

var (
	_ node.Peer = (*udpPeer)(nil)
	_ node.Peer = (*provenPeer)(nil)
)

// NewUDP serves pc.
func NewUDP(o *Options, pc *net.UDPConn) *UDP {
	return &UDP{Options: o, pc: pc, peers: map[netip.AddrPort]*udpPeer{}, blocked: map[netip.AddrPort]time.Time{},
		done: make(chan struct{})}
}

// Serve reads datagrams until the socket closes.
func (u *UDP) Serve() {
	// The janitor joins wg only before Close has begun, so Close's Wait
	// never runs beside the Add, whichever of the two comes first.
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.wg.Add(1)
	u.mu.Unlock()
	go u.janitor()
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := u.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n == 0 {
			continue
		}
		p := u.peer(addr)
		if p == nil {
			continue
		}
		p.receive(append([]byte(nil), buf[:n]...))
	}
}

// Close stops reading and ends every peer.
func (u *UDP) Close() error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	err := u.pc.Close()
	close(u.done)
	u.wg.Wait()
	return err
}

// Peers is how many peers the table holds now, proven or not.
func (u *UDP) Peers() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.peers)
}

// peer finds or makes the peer for addr; nil when it is blocked or the
// table is full (the datagram is dropped: answering strangers at will is how
// amplification attacks work).
func (u *UDP) peer(addr netip.AddrPort) *udpPeer {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if until, ok := u.blocked[addr]; ok {
		if now.Before(until) {
			return nil
		}
		delete(u.blocked, addr)
	}
	if p := u.peers[addr]; p != nil {
		return p
	}
	if u.UDPPeers > 0 && len(u.peers) >= u.UDPPeers {
		return nil
	}
	p := &udpPeer{udp: u, addr: addr, ip: addr.Addr().Unmap().String(), lastSeen: now}
	u.peers[addr] = p
	return p
}

// receive queues a datagram for the peer's worker, which handles one at a
// time in order; a peer that floods past its inbox loses the excess, as UDP
// may.
func (p *udpPeer) receive(frame []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone || len(p.inbox) >= udpInbox {
		return
	}
	p.lastSeen = time.Now()
	if p.proven == nil {
		p.received += len(frame)
	}
	p.inbox = append(p.inbox, frame)
	if !p.working {
		p.working = true
		p.udp.wg.Add(1)
		go p.work()
	}
}

func (p *udpPeer) work() {
	defer p.udp.wg.Done()
	ctx := context.Background()
	for {
		p.mu.Lock()
		if len(p.inbox) == 0 || p.gone {
			p.working = false
			p.mu.Unlock()
			return
		}
		frame := p.inbox[0]
		p.inbox = p.inbox[1:]
		proven := p.proven
		p.mu.Unlock()
		var ok bool
		if proven != nil {
			ok = p.dispatchProven(ctx, proven, frame)
		} else {
			ok = p.dispatchUnproven(ctx, frame)
		}
		if !ok {
			p.udp.mu.Lock()
			p.udp.blocked[p.addr] = time.Now().Add(time.Minute)
			p.udp.mu.Unlock()
			p.udp.end(p)
			return
		}
	}
}

// dispatchProven runs a frame of a proven peer through its hub connection;
// false when the peer has sent too many bad frames.
func (p *udpPeer) dispatchProven(ctx context.Context, proven *provenPeer, frame []byte) bool {
	reply, isBad := p.udp.Router.Dispatch(ctx, proven, frame)
	if reply != nil {
		proven.Reply(reply)
	}
	if isBad && p.bad.add(time.Now(), p.udp.Live.Load().BadFramesPerMinute) {
		proven.Close(node.ClosePolicy, "too many bad frames")
		return false
	}
	return true
}

// errVerifyFirst answers a node that needs a login while the session is
// pending on the address's proof.
const errVerifyFirst = "this address has not proved it receives yet: send im/verify with the token from the reply to im/login or im/resume"

// dispatchUnproven runs a frame of an unproven peer, which is its own
// node.Peer, and sends the reply within the amplification cap; false when
// the peer has sent too many bad frames.
func (p *udpPeer) dispatchUnproven(ctx context.Context, frame []byte) bool {
	var reply []byte
	isBad := false
	if f, err := wire.Parse(frame, p.udp.Router.MaxFrame()); err == nil && p.hasPending() {
		if n := p.udp.Router.Lookup(f.Path, node.UDP); n != nil && n.Auth != node.Public {
			reply = wire.AppendError(nil, f.Path, f.ID, node.CodeUnauthorized, errVerifyFirst, 0)
		}
	}
	if reply == nil {
		reply, isBad = p.udp.Router.Dispatch(ctx, p, frame)
	}
	if reply != nil {
		p.sendCapped(reply)
	}
	return !(isBad && p.bad.add(time.Now(), p.udp.Live.Load().BadFramesPerMinute))
}

// sendCapped sends a reply to an unproven address if it fits in what the
// address may still be sent; else a short too_large in its place, if that
// fits; else nothing. Only the peer's worker calls it.
func (p *udpPeer) sendCapped(frame []byte) {
	if len(frame) > maxDatagram {
		frame = tooLargeFor(frame)
	}
	p.mu.Lock()
	allowance := amplification*p.received - p.sent
	if len(frame) > allowance {
		frame = overAllowance(frame)
	}
	if len(frame) > allowance {
		p.mu.Unlock()
		return
	}
	p.sent += len(frame)
	p.mu.Unlock()
	_, _ = p.udp.pc.WriteToUDPAddrPort(frame, p.addr)
}

func (p *udpPeer) hasPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending != nil
}

// Transport implements node.Peer.
func (p *udpPeer) Transport() node.Method { return node.UDP }

// RemoteIP implements node.Peer.
func (p *udpPeer) RemoteIP() string { return p.ip }

// Session implements node.Peer: an unproven address is logged in nowhere;
// its session is pending until im/verify.
func (p *udpPeer) Session() *model.Session { return nil }

// SetSession implements node.Peer: a login or resume from an unproven
// address makes the session pending, with a fresh token for im/verify.
func (p *udpPeer) SetSession(s *model.Session) error {
	token := ""
	if s != nil {
		token = rand.Text() // 128 random bits, base32
	}
	p.mu.Lock()
	p.pending, p.token = s, token
	p.mu.Unlock()
	return nil
}

// WatchPresence keeps a login's "presence" field for the connection the
// peer becomes.
func (p *udpPeer) WatchPresence(watch bool) {
	p.mu.Lock()
	p.unwatched = !watch
	p.mu.Unlock()
}

// VerifyToken is the token the reply to a login or resume from this
// address carries: what im/verify must send back.
func (p *udpPeer) VerifyToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.token
}

// Errors of im/verify (PROTOCOL.md section 4).
var (
	errNothingToVerify = &node.Error{Code: node.CodeUnauthorized,
		Message: "nothing to verify: log in or resume over UDP from this address first"}
	errWrongToken = &node.Error{Code: node.CodeUnauthorized,
		Message: "wrong token: send the verify token of the last im/login or im/resume reply to this address"}
	errSessionEnded = &node.Error{Code: node.CodeUnauthorized, Message: "the session has ended; log in again"}
)

// Verify is im/verify from an unproven address: with the right token the
// address has proved it receives, and the pending session attaches to it
// as a hub connection.
func (p *udpPeer) Verify(ctx context.Context, token string) error {
	p.mu.Lock()
	pending, want, unwatched := p.pending, p.token, p.unwatched
	p.mu.Unlock()
	if pending == nil || want == "" {
		return errNothingToVerify
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		return errWrongToken
	}
	sess, err := p.udp.Sessions.Get(ctx, pending.SID) // it may have ended meanwhile (a logout, a ban)
	if errors.Is(err, session.ErrNoSession) {
		return errSessionEnded
	}
	if err != nil {
		return err
	}
	// A proven address is a new connection of its address (its user was
	// counted by the login or resume).
	if e := p.udp.allowConnect(ctx, p.ip, ""); e != nil {
		return e
	}
	sink := &udpSink{peer: p}
	c, err := p.udp.Hub.RegisterWithCredential(sink, node.UDP, p.ip, 0)
	if err != nil {
		return node.RateLimited(time.Second, err.Error())
	}
	if unwatched {
		c.WatchPresence(false)
	}
	if err := c.SetSession(sess); err != nil {
		sink.discarded.Store(true)
		c.Finish()
		if errors.Is(err, hub.ErrTooManyForUser) {
			return node.Errorf(node.CodeForbidden, "%v", err)
		}
		return err
	}
	p.mu.Lock()
	gone := p.gone
	if !gone {
		p.proven = &provenPeer{Conn: c, token: want}
		p.pending, p.token = nil, ""
	}
	p.mu.Unlock()
	if gone { // ended while it verified
		p.udp.finish(c)
		return errSessionEnded
	}
	return nil
}

// Verify is a repeated im/verify from a proven address: the same token is
// answered again, since the first reply may have been lost.
func (pp *provenPeer) Verify(_ context.Context, token string) error {
	if subtle.ConstantTimeCompare([]byte(token), []byte(pp.token)) != 1 {
		return errWrongToken
	}
	return nil
}

// VerifyToken: a proven address has nothing left to prove; a login from
// it attaches at once.
func (pp *provenPeer) VerifyToken() string { return "" }

// janitor ends peers that have gone quiet.
func (u *UDP) janitor() {
	defer u.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-u.done:
			u.mu.Lock()
			peers := make([]*udpPeer, 0, len(u.peers))
			for _, p := range u.peers {
				peers = append(peers, p)
			}
			u.mu.Unlock()
			for _, p := range peers {
				u.end(p)
			}
			return
		case now := <-t.C:
			var quiet []*udpPeer
			u.mu.Lock()
			for _, p := range u.peers {
				p.mu.Lock()
				if now.Sub(p.lastSeen) > u.UDPPeerTimeout {
					quiet = append(quiet, p)
				}
				p.mu.Unlock()
			}
			for addr, until := range u.blocked {
				if now.After(until) {
					delete(u.blocked, addr)
				}
			}
			u.mu.Unlock()
			for _, p := range quiet {
				u.end(p)
			}
		}
	}
}

// end removes a peer and finishes its connection, if it has one.
func (u *UDP) end(p *udpPeer) {
	u.mu.Lock()
	if u.peers[p.addr] == p {
		delete(u.peers, p.addr)
	}
	u.mu.Unlock()
	p.mu.Lock()
	already := p.gone
	p.gone = true
	proven := p.proven
	p.mu.Unlock()
	if !already && proven != nil {
		u.finish(proven.Conn)
	}
}

// udpSink sends a proven peer's frames as datagrams.
type udpSink struct {
	peer *udpPeer
	// discarded: the connection was given up before the peer took it (its
	// session could not attach); its close ends nothing.
	discarded atomic.Bool
}

func (s *udpSink) WriteFrames(frames [][]byte) error {
	p := s.peer
	for _, f := range frames {
		if len(f) > maxDatagram {
			f = tooLargeFor(f)
		}
		if _, err := p.udp.pc.WriteToUDPAddrPort(f, p.addr); err != nil && errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// overAllowance is the short too_large that replaces a reply larger than
// what an unproven address may still be sent.
func overAllowance(frame []byte) []byte {
	f := headOf(frame)
	return wire.AppendError(nil, f.Path, f.ID, node.CodeTooLarge,
		"unproven address: the reply is over 3x the bytes received; pad the request", 0)
}

// headOf is the path (or "error") and id of an outgoing frame.
func headOf(frame []byte) wire.Frame {
	head := frame[:min(len(frame), wire.MaxPath+wire.MaxID+2)]
	f, _ := wire.Parse(head, 0)
	if f.Path == "" {
		f.Path = "error"
	}
	return f
}

// tooLargeFor turns a frame that does not fit a datagram into the
// too_large error for its path and id.
func tooLargeFor(frame []byte) []byte {
	f := headOf(frame)
	return wire.AppendError(nil, f.Path, f.ID, node.CodeTooLarge, "the frame does not fit a datagram; use another transport", 0)
}

func (s *udpSink) Ping() error { return nil }

// Close is the hub closing the peer (a kick, a shutdown): the peer is
// ended from another goroutine, since Finish waits for this writer.
func (s *udpSink) Close(code node.CloseCode, reason string) {
	if s.discarded.Load() {
		return
	}
	u := s.peer.udp
	u.active.Add(1)
	go func() {
		defer u.active.Add(-1)
		u.end(s.peer)
	}()
}

func (s *udpSink) Abort() {}
