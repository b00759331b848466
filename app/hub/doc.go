// Package hub holds the live connections: each Conn with its byte-bounded
// send queue and its single writer, the user -> connections index, presence
// (how many places each user holds), delivery of pre-encoded frames, kicks
// and shutdown.
//
// # Who owns what
//
//   - A transport owns the socket's read side: its reader goroutine reads
//     frames, dispatches them and, when reading ends, calls Conn.Finish,
//     which returns only after the writer has exited.
//   - The writer goroutine is the only code that writes to the socket, through
//     the transport's Sink. It runs only while there is something to write (a
//     queued frame, a ping, a close), so an idle connection costs no
//     goroutine of its own.
//   - The writer of a hot connection (one sent many frames lately), once
//     woken, waits a write delay before it takes the queue, so that under a
//     broadcast storm one write carries many frames; the delay grows with
//     the number of hot connections (hub.go, writeDelay). A reply, a close
//     or a half-full queue ends the wait.
//   - Requests that finish later (node.Later: a message waiting for its
//     commit) run on the connection's deferred goroutine (later.go), one
//     after another in arrival order; like the writer it exists only while
//     there is work. The reader blocks in Defer while maxLater are
//     unfinished, and Finish waits for them before the connection goes.
//   - Anyone may Enqueue or Close a Conn. Enqueue never blocks and never does
//     I/O: a queue over its bound closes the connection with 4008 (too slow),
//     counted and logged, and the frame is not silently skipped.
//
// # Locks, in the order they may be taken
//
//  1. Hub.presenceMu serialises attach and detach so that presence events for
//     one user leave in the order they happened. The presence callback runs
//     under it.
//  2. Hub.mu guards the indexes (conns, users, anonymous counts).
//  3. Conn.mu guards one connection's queue, writer flag and close state.
//
// Conn.lmu guards the deferred queue; nothing else is taken while it is
// held, and it is never held while a deferred request runs.
//
// No I/O happens under any of them: Sink.Abort only moves a deadline.
package hub
