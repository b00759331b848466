package hub

import "sync/atomic"

// caps are the hub's connection caps. They start as Options says and
// SetCaps changes them while the hub runs (`dce websocket reload`); they
// are read under h.mu with the counts they bound, so a change applies to
// the next admission.
type caps struct {
	conns     atomic.Int64 // connections on this node
	perUser   atomic.Int64 // connections of one user
	anonPerIP atomic.Int64 // connections without a login from one address
}

// SetCaps changes the caps on connections; 0 is no limit. Connections
// already over a lowered cap stay open: only new ones are refused.
func (h *Hub) SetCaps(maxConns, perUser, anonPerIP int) {
	h.caps.conns.Store(int64(maxConns))
	h.caps.perUser.Store(int64(perUser))
	h.caps.anonPerIP.Store(int64(anonPerIP))
}

// over reports whether a count of n has reached cap, so that one more is
// refused (0 is no limit).
func over(cap *atomic.Int64, n int) bool {
	c := cap.Load()
	return c > 0 && int64(n) >= c
}
