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
// No I/O happens under any of them: Sink.Abort only moves a deadline.
package hub
