// Package hub holds the live connections: each Conn with its byte-bounded
// send queue and its single writer, the user -> connections index, presence
// (how many places each user holds), delivery of pre-encoded frames, kicks
// and shutdown.
//
// # Who owns what
//
//   - A transport owns the socket's read side: its reader goroutine reads
//     frames, dispatches them and, when reading ends, calls Conn.Finish,
//     which returns only after the writer has exited. The reader never
//     writes: the peer's pings and close go to Conn.Pong and Conn.CloseNow,
//     and the writer answers them.
//   - The writer role (writer.go) is the only code that writes to the
//     socket, through the transport's Sink; one goroutine holds it at a
//     time, claimed under Conn.mu. It is either the connection's writer
//     goroutine, which runs only while there is something to write (a
//     queued frame, a ping or pong, a close), so an idle connection costs
//     no goroutine of its own, or a delivering goroutine that found the
//     connection idle and writes one frame inline without blocking, then
//     hands the role to a writer goroutine or gives it back. A Sink needs
//     no lock of its own for that reason. Nothing on a shared path (a
//     broadcast, a delivery, a sender's request) ever waits on one
//     connection's socket: at worst it queues.
//   - Write batching lives in writer.go too: the writer of a hot
//     connection (one sent many frames lately) waits a write delay before
//     it takes the queue, so that under a broadcast storm one write carries
//     many frames; the delay grows with the number of hot connections. A
//     reply, a pong, a close or a half-full queue ends the wait. A
//     broadcast that comes while another is still writing inline marks a
//     storm, and deliveries are queued for the writers for a while.
//   - Requests that finish later (node.Later: a message waiting for its
//     commit) run on the connection's deferred goroutine (later.go), one
//     after another in arrival order; like the writer it exists only while
//     there is work. The reader blocks in Defer while maxLater are
//     unfinished, and Finish waits for them before the connection goes.
//   - Anyone may Enqueue, Pong or Close a Conn. None of them blocks or does
//     I/O: a queue over its bound closes the connection with 4008 (too
//     slow), counted and logged, and the frame is not silently skipped; a
//     pong not yet written is replaced by the next (RFC 6455 lets a server
//     answer only the latest ping), so a ping flood holds one pending pong.
//     A writer that cannot write for the write timeout closes its
//     connection, and nobody else's.
//
// # Locks, in the order they may be taken
//
//  1. Hub.presenceMu serialises attach and detach so that presence events for
//     one user leave in the order they happened. The presence callback runs
//     under it.
//  2. Hub.mu guards the indexes (conns, users, anonymous counts). A delivery
//     claims idle connections under it for reading, and writes to them only
//     after it is released.
//  3. Conn.mu guards one connection's queue, writer flag, pending ping and
//     pong, and close state. The writer role's own state (Conn.w) is not
//     under it: only the role's holder touches it.
//
// Conn.lmu guards the deferred queue; nothing else is taken while it is
// held, and it is never held while a deferred request runs.
//
// No I/O happens under any of them: Sink.Abort only moves a deadline.
// Options.Slots (a count of a user's connections shared by several nodes)
// is asked before the locks and told after them.
package hub
