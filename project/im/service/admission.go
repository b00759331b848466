package service

import (
	"context"
	"time"

	"dce/app/node"
	"dce/common/config"
	"dce/common/model"
)

// admission rate-limits new connections and resumes (PROTOCOL.md section
// 5): per user, so that one client's reconnect loop cannot churn presence
// for everyone, and loosely per address, enough for an office behind one
// NAT. A rate of 0 turns a limit off.
type admission struct {
	perUser    *keyedLimiter[int64]
	perAddress *keyedLimiter[string]
}

func newAdmission(l config.Limits) *admission {
	return &admission{
		perUser:    newKeyedLimiter[int64](l.ConnectsPerSecond, max(l.ConnectBurst, 1)),
		perAddress: newKeyedLimiter[string](l.ConnectsPerAddressSecond, max(l.ConnectBurstPerAddress, 1)),
	}
}

func (a *admission) setRate(l config.Limits) {
	a.perUser.setRate(l.ConnectsPerSecond, max(l.ConnectBurst, 1))
	a.perAddress.setRate(l.ConnectsPerAddressSecond, max(l.ConnectBurstPerAddress, 1))
}

func (a *admission) sweep(now time.Time) {
	a.perUser.sweep(now)
	a.perAddress.sweep(now)
}

// AllowConnect is asked by a transport before it lets a new connection in
// (a WebSocket upgrade, a TCP accept, a UDP address that has proved
// itself): it counts the connection against its address and, when it
// carries a sid, against the sid's user. The error is rate_limited with
// the wait; the transport refuses the connection with it (HTTP 429 with
// Retry-After, or an error frame and a close).
func (s *Service) AllowConnect(ctx context.Context, ip, sid string) error {
	if sid != "" {
		if sess, err := s.Sessions.Get(ctx, sid); err == nil {
			if err := s.allowAttach(sess.UserID); err != nil {
				return err
			}
		}
	}
	lim := s.Limits()
	if lim.ConnectsPerAddressSecond <= 0 {
		return nil
	}
	if wait, ok := s.admission.perAddress.allow(ip, s.Now()); !ok {
		return node.RateLimited(wait, "too many new connections from this address; try again shortly")
	}
	return nil
}

// allowAttach counts a session attaching to a connection (a login, a
// resume) against the user's rate.
func (s *Service) allowAttach(user int64) error {
	if s.Limits().ConnectsPerSecond <= 0 {
		return nil
	}
	if wait, ok := s.admission.perUser.allow(user, s.Now()); !ok {
		return node.RateLimited(wait, "too many new connections for this user; try again shortly")
	}
	return nil
}

// ResumeRequested is im/resume: Resume, counted against the user's rate of
// new connections and resumes. (A resume at connect, by ?sid= or the
// cookie, was counted when the transport let the connection in.)
func (s *Service) ResumeRequested(ctx context.Context, peer node.Peer, sid string) (model.User, error) {
	sess, err := s.Sessions.Get(ctx, sid)
	if err == nil {
		if err := s.allowAttach(sess.UserID); err != nil {
			return model.User{}, err
		}
	}
	return s.Resume(ctx, peer, sid)
}
