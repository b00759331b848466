// Package bus fans pre-encoded push frames out to users' connections. Local,
// the default, hands them straight to this node's hub; a multi-node engine
// (Redis pub/sub) carries them to every node's hub as well.
package bus

import "dce/app/hub"

// Local is the in-process bus: one node, no network.
type Local struct {
	Hub *hub.Hub
}

// Deliver sends frame to every connection of users, except exceptConn.
func (b Local) Deliver(users []int64, frame []byte, exceptConn uint64) {
	b.Hub.Deliver(users, frame, exceptConn)
}

// BroadcastPresence sends a presence frame to every logged-in connection
// that watches presence.
func (b Local) BroadcastPresence(frame []byte) { b.Hub.BroadcastPresence(frame) }

// Broadcast sends frame to every logged-in connection, except exceptConn
// and exceptUser's connections.
func (b Local) Broadcast(frame []byte, exceptConn uint64, exceptUser int64) {
	b.Hub.Broadcast(frame, exceptConn, exceptUser)
}

// Holds reports whether user holds a connection on this node, so that a
// caller can skip encoding a push no one here would get.
func (b Local) Holds(user int64) bool {
	n, _ := b.Hub.Places(user)
	return n > 0
}
