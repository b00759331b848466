package transport

import (
	"context"
	"time"

	"dce/app/node"
)

// Admission rate-limits new connections per address and, for one that
// carries a sid, per user (PROTOCOL.md section 5). The chat service
// implements it; the transports find it on Options.Admission.
type Admission interface {
	// AllowConnect is nil, or rate_limited with the wait.
	AllowConnect(ctx context.Context, ip, sid string) error
}

// maxRefusalDelay bounds how long a refused connection waits for its
// refusal, and maxDelayedRefusals how many wait at once: past that a
// refusal goes out at once, so that a flood of parallel attempts cannot
// hold the server's sockets and goroutines by being refused.
const (
	maxRefusalDelay    = time.Second
	maxDelayedRefusals = 256
)

// allowConnect asks the admission, if there is one, whether a
// new connection from ip (with sid, if any) may come in now. A refusal
// comes back only once the wait it names has passed (at most
// maxRefusalDelay): each attempt costs the server an accept, a read and a
// close whatever it is told, so a client that reconnects in a loop and
// ignores Retry-After is paced to the rate it is allowed, instead of
// making the server refuse it thousands of times a second. The wait holds
// a goroutine and a socket, no CPU.
func (o *Options) allowConnect(ctx context.Context, ip, sid string) *node.Error {
	if o.Admission == nil {
		return nil
	}
	err := o.Admission.AllowConnect(ctx, ip, sid)
	if err == nil {
		return nil
	}
	e, _ := node.AsError(err)
	if e.RetryAfter > 0 {
		if o.delayedRefusals.Add(1) <= maxDelayedRefusals {
			time.Sleep(min(e.RetryAfter, maxRefusalDelay))
		}
		o.delayedRefusals.Add(-1)
	}
	return e
}
