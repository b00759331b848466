package hub

import "slices"

// A big delivery (a group's message to thousands of members) would look up
// every member in Hub.users for every message: a map access and a walk of
// each user's connections, most of the delivery's cost. The hub keeps the
// last few lists of users it resolved to connections instead, and reuses
// one while no connection has been attached or detached since
// (Hub.attachGen) and the list of users is equal, element by element, to
// the one it was made for: comparing ids costs a small part of looking
// them up, and equality, not the slice's address, decides, so a caller
// may pass any slice.

// resolvedSlots is how many resolved lists the hub keeps.
const resolvedSlots = 4

// resolvedList is users resolved to their connections at attachGen gen.
// It is never changed once made: a delivery may walk conns after another
// has replaced it.
type resolvedList struct {
	gen   uint64
	users []int64 // a copy of the caller's
	conns []*Conn
}

// resolveLocked returns the connections of users, in their order. The
// caller holds h.mu for reading (or writing), and walks the list under it.
func (h *Hub) resolveLocked(users []int64) []*Conn {
	h.resolveMu.Lock()
	defer h.resolveMu.Unlock()
	victim := resolvedSlots - 1 // the least recently found, as found lists move to the front
	for i, r := range h.resolved {
		if r == nil {
			victim = i
			break
		}
		if r.gen == h.attachGen && slices.Equal(r.users, users) {
			copy(h.resolved[1:i+1], h.resolved[:i])
			h.resolved[0] = r
			return r.conns
		}
	}
	r := &resolvedList{gen: h.attachGen, users: slices.Clone(users), conns: make([]*Conn, 0, len(users))}
	for _, id := range users {
		if u := h.users[id]; u != nil {
			r.conns = append(r.conns, u.conns...)
		}
	}
	h.resolved[victim] = r
	return r.conns
}
