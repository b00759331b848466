package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/wire"
)

const (
	// maxDatagram is the largest datagram the server sends (PROTOCOL.md).
	maxDatagram = 8 << 10
	// amplification: until a peer logs in, the server sends it at most this
	// many times the bytes it received.
	amplification = 3
	// udpInbox is how many datagrams of one peer may wait to be handled.
	udpInbox = 64
)

// UDP serves frames over UDP, one per datagram. Each source address is a
// peer with a hub.Conn, live until it has been silent for UDPPeerTimeout.
type UDP struct {
	*Options
	pc *net.UDPConn

	mu      sync.Mutex // guards peers and blocked
	peers   map[netip.AddrPort]*udpPeer
	blocked map[netip.AddrPort]time.Time
	done    chan struct{}
	wg      sync.WaitGroup
}

type udpPeer struct {
	udp  *UDP
	addr netip.AddrPort
	conn *hub.Conn
	bad  badFrames

	mu       sync.Mutex // guards the fields below
	lastSeen time.Time
	received int
	sent     int
	inbox    [][]byte
	working  bool
	gone     bool
}

// NewUDP serves pc.
func NewUDP(o *Options, pc *net.UDPConn) *UDP {
	return &UDP{Options: o, pc: pc, peers: map[netip.AddrPort]*udpPeer{}, blocked: map[netip.AddrPort]time.Time{},
		done: make(chan struct{})}
}

// Serve reads datagrams until the socket closes.
func (u *UDP) Serve() {
	u.wg.Add(1)
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
	err := u.pc.Close()
	close(u.done)
	u.wg.Wait()
	return err
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
	p := &udpPeer{udp: u, addr: addr, lastSeen: now}
	c, err := u.Hub.Register(&udpSink{peer: p}, node.UDP, addr.Addr().Unmap().String(), 0)
	if err != nil {
		return nil
	}
	p.conn = c
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
	p.received += len(frame)
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
		p.mu.Unlock()
		if !p.udp.dispatch(ctx, p.conn, &p.bad, frame, false) {
			p.udp.mu.Lock()
			p.udp.blocked[p.addr] = time.Now().Add(time.Minute)
			p.udp.mu.Unlock()
			p.udp.end(p)
			return
		}
	}
}

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

// end removes a peer and finishes its connection.
func (u *UDP) end(p *udpPeer) {
	u.mu.Lock()
	if u.peers[p.addr] == p {
		delete(u.peers, p.addr)
	}
	u.mu.Unlock()
	p.mu.Lock()
	already := p.gone
	p.gone = true
	p.mu.Unlock()
	if !already {
		u.finish(p.conn)
	}
}

// udpSink sends a peer's frames as datagrams.
type udpSink struct{ peer *udpPeer }

func (s *udpSink) WriteFrames(frames [][]byte) error {
	p := s.peer
	for _, f := range frames {
		if len(f) > maxDatagram {
			f = tooLargeFor(f)
		}
		p.mu.Lock()
		loggedIn := p.conn.Session() != nil
		allowed := loggedIn || p.sent+len(f) <= amplification*p.received
		if allowed && !loggedIn {
			// Only what goes out without a login counts against the cap: a
			// peer that logs out keeps getting its (unauthorized) replies.
			p.sent += len(f)
		}
		p.mu.Unlock()
		if !allowed {
			continue
		}
		if _, err := p.udp.pc.WriteToUDPAddrPort(f, p.addr); err != nil && errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// tooLargeFor turns a frame that does not fit a datagram into the
// too_large error for its path and id.
func tooLargeFor(frame []byte) []byte {
	head := frame[:min(len(frame), wire.MaxPath+wire.MaxID+2)]
	f, _ := wire.Parse(head, 0)
	path := f.Path
	if path == "" {
		path = "error"
	}
	return wire.AppendError(nil, path, f.ID, node.CodeTooLarge, "the frame does not fit a datagram; use another transport", 0)
}

func (s *udpSink) Ping() error { return nil }

// Close is the hub closing the peer (a kick, a shutdown): the peer is
// ended from another goroutine, since Finish waits for this writer.
func (s *udpSink) Close(code node.CloseCode, reason string) {
	u := s.peer.udp
	u.active.Add(1)
	go func() {
		defer u.active.Add(-1)
		u.end(s.peer)
	}()
}

func (s *udpSink) Abort() {}
