package service

import (
	"context"
	"errors"
	"runtime"
	"time"
	"unicode/utf8"

	"dce/app/hub"
	"dce/app/node"
	"dce/app/session"
	"dce/common/model"
	"dce/common/store"
)

func numCPU() int { return runtime.NumCPU() }

// LoginResult is im/login's result.
type LoginResult struct {
	User       model.User `json:"user"`
	SID        string     `json:"sid"`
	Registered bool       `json:"registered"`
	// Verify is set by the controller over UDP: the token the address
	// sends back with im/verify (PROTOCOL.md section 1).
	Verify string `json:"verify,omitempty"`
}

// Login logs peer in as nickname, registering the nickname if nobody has it.
// Failed logins are throttled per nickname and address, per address, and per
// nickname (PROTOCOL.md section 4), counted before any hashing.
func (s *Service) Login(ctx context.Context, peer node.Peer, nickname, password, brief string) (LoginResult, error) {
	lim := s.Limits()
	nick, err := model.NormalizeNickname(nickname, lim.NicknameMax)
	if err != nil {
		return LoginResult{}, node.Errorf(node.CodeBadRequest, "nickname: %v", err)
	}
	if n := utf8.RuneCountInString(password); !utf8.ValidString(password) || n < lim.PasswordMin || n > lim.PasswordMax {
		return LoginResult{}, node.Errorf(node.CodeBadRequest, "password must be %d-%d characters", lim.PasswordMin, lim.PasswordMax)
	}
	if err := model.CheckText(brief, lim.BriefMax); err != nil {
		return LoginResult{}, node.Errorf(node.CodeBadRequest, "brief: %v", err)
	}
	now := s.Now()
	fold := model.FoldNickname(nick)
	ip := peer.RemoteIP()
	// The attempt is counted as a failure before any hashing, and taken
	// back unless the password turns out wrong: attempts that come all at
	// once get exactly the limit of tries. The overall per-nickname limit
	// binds only an address that has failed for this nickname itself:
	// others' failures never lock the owner out.
	keys := []limitKey{
		{key: "na|" + fold + "|" + ip, limit: lim.FailedLoginsPerNickAddr},
		{key: "a|" + ip, limit: lim.FailedLoginsPerAddress},
		{key: "n|" + fold, limit: lim.FailedLoginsPerNickname, ifFirstHasEvents: true},
	}
	attempt, wait, ok := s.failures.reserve(keys, now)
	if !ok {
		return LoginResult{}, node.RateLimited(wait, "too many failed logins; try again later")
	}
	defer attempt.settle(false) // unless kept below, as a wrong password

	acct, err := s.Store.UserByNickname(ctx, nick)
	registered := false
	switch {
	case errors.Is(err, store.ErrNotFound):
		acct, err = s.register(ctx, nick, password, brief, ip, now)
		if errors.Is(err, store.ErrConflict) { // someone registered it a moment ago: log in instead
			acct, err = s.Store.UserByNickname(ctx, nick)
			if err == nil {
				err = s.checkPassword(ctx, acct, password)
			}
		} else {
			registered = err == nil
		}
	case err == nil:
		err = s.checkPassword(ctx, acct, password)
	}
	if e, ok := node.AsError(err); ok && e.Code == node.CodeAuthFailed {
		attempt.settle(true)
	}
	if err != nil {
		return LoginResult{}, hashError(err)
	}
	if acct.Banned(now) {
		return LoginResult{}, node.NewDisconnect(node.CloseBanned, node.Errorf(node.CodeForbidden, "banned until %s", acct.BannedUntil.UTC().Format(time.RFC3339)))
	}
	attempt.settle(false)
	s.failures.reset(keys[0].key)
	if err := s.allowAttach(acct.ID); err != nil {
		return LoginResult{}, err
	}
	sess, err := s.Sessions.Create(ctx, acct.ID)
	if err != nil {
		return LoginResult{}, err
	}
	if err := s.attach(peer, sess); err != nil {
		return LoginResult{}, err
	}
	return LoginResult{User: acct.User, SID: sess.SID, Registered: registered}, nil
}

func (s *Service) register(ctx context.Context, nick, password, brief, ip string, now time.Time) (model.Account, error) {
	lim := s.Limits()
	key := "r|" + ip
	if wait, blocked := s.signups.blocked(key, lim.RegistrationsPerHour, now); blocked {
		return model.Account{}, node.RateLimited(wait, "too many new accounts from this address; try again later")
	}
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return model.Account{}, err
	}
	acct, err := s.Store.CreateUser(ctx, nick, hash, brief)
	if err != nil {
		return acct, err
	}
	s.signups.add(key, lim.RegistrationsPerHour, now)
	// A newcomer has not missed the lobby's past: it starts read.
	if last, _, err := s.Store.Load(ctx, model.LobbyKey, 0, 0, 1); err == nil && len(last) == 1 {
		if err := s.Store.MarkRead(ctx, acct.ID, model.LobbyKey, last[0].ID); err != nil {
			s.Log.Warn("mark the lobby read for a new user", "user", acct.ID, "err", err)
		}
	}
	return acct, nil
}

// checkPassword verifies password against acct's hash (auth_failed when
// wrong; the caller counts the failure) and upgrades a stale hash.
func (s *Service) checkPassword(ctx context.Context, acct model.Account, password string) error {
	ok, stale, err := s.hasher.Verify(ctx, acct.PasswordHash, password)
	if err != nil {
		return err
	}
	if !ok {
		return node.Errorf(node.CodeAuthFailed, "wrong password for this nickname")
	}
	if stale {
		if hash, err := s.hasher.Hash(ctx, password); err == nil {
			if err := s.Store.SetPasswordHash(ctx, acct.ID, hash); err != nil {
				s.Log.Warn("password rehash not stored", "user", acct.ID, "err", err)
			}
		}
	}
	return nil
}

// hashError turns a busy hasher into rate_limited.
func hashError(err error) error {
	if errors.Is(err, ErrBusy) {
		return node.RateLimited(500*time.Millisecond, "the server is busy logging others in; try again shortly")
	}
	return err
}

// attach puts peer on sess, mapping the per-user cap to its error.
func (s *Service) attach(peer node.Peer, sess *model.Session) error {
	err := peer.SetSession(sess)
	if errors.Is(err, hub.ErrTooManyForUser) {
		return node.NewDisconnect(node.CloseOverConnLimit, node.Errorf(node.CodeForbidden, "%v (the limit is %d)", err, s.Limits().ConnectionsPerUser))
	}
	return err
}

// Resume attaches peer to the live session sid (im/resume, ?sid=, the
// cookie, a Bearer token).
func (s *Service) Resume(ctx context.Context, peer node.Peer, sid string) (model.User, error) {
	sess, err := s.Sessions.Get(ctx, sid)
	if errors.Is(err, session.ErrNoSession) {
		return model.User{}, &node.Error{Code: node.CodeUnauthorized, Message: "no such session; log in again"}
	}
	if err != nil {
		return model.User{}, err
	}
	acct, err := s.account(ctx, sess.UserID)
	if err != nil {
		return model.User{}, err
	}
	if acct.Banned(s.Now()) {
		return model.User{}, node.NewDisconnect(node.CloseBanned, node.Errorf(node.CodeForbidden, "banned until %s", acct.BannedUntil.UTC().Format(time.RFC3339)))
	}
	if err := s.attach(peer, sess); err != nil {
		return model.User{}, err
	}
	return acct.User, nil
}

// Signer is who peer is logged in as, or nil.
func (s *Service) Signer(ctx context.Context, peer node.Peer) (*model.User, error) {
	sess := peer.Session()
	if sess == nil || !s.Now().Before(sess.Expires) {
		return nil, nil
	}
	acct, err := s.account(ctx, sess.UserID)
	if err != nil {
		return nil, err
	}
	return &acct.User, nil
}

// Logout ends peer's session on every connection that holds it.
func (s *Service) Logout(ctx context.Context, peer node.Peer) error {
	sess := peer.Session()
	if sess == nil {
		return node.ErrUnauthorized
	}
	if err := s.Sessions.Delete(ctx, sess.SID); err != nil {
		return err
	}
	s.Hub.EndSession(sess.UserID, sess.SID)
	return peer.SetSession(nil)
}

// Disconnected is told when a logged-in connection has closed; with
// logout_on_close the session ends with it, as in the original Dce sample.
func (s *Service) Disconnected(ctx context.Context, sess *model.Session, logoutOnClose bool) {
	if !logoutOnClose || sess == nil {
		return
	}
	if err := s.Sessions.Delete(ctx, sess.SID); err != nil {
		s.Log.Warn("logout on close", "user", sess.UserID, "err", err)
	}
	s.Hub.EndSession(sess.UserID, sess.SID)
}

// IsAdmin tells whether user is an admin now.
func (s *Service) IsAdmin(ctx context.Context, user int64) (bool, error) {
	acct, err := s.Store.UserByID(ctx, user)
	if err != nil {
		return false, err
	}
	return acct.Admin, nil
}

// GrantAdmin makes nickname an admin (`dce user admin NICKNAME`).
func (s *Service) GrantAdmin(ctx context.Context, nickname string) (model.User, error) {
	acct, err := s.Store.UserByNickname(ctx, nickname)
	if errors.Is(err, store.ErrNotFound) {
		return model.User{}, node.Errorf(node.CodeNotFound, "no user %q", nickname)
	}
	if err != nil {
		return model.User{}, err
	}
	if err := s.Store.SetAdmin(ctx, acct.ID, true); err != nil {
		return model.User{}, err
	}
	s.accountChanged(acct.ID)
	acct.Admin = true
	return acct.User, nil
}

// Profile changes the caller's brief (and avatar, once uploads exist) and
// tells everyone online.
func (s *Service) Profile(ctx context.Context, user int64, brief, avatar *string) (model.User, error) {
	if err := s.allowUpdate(user); err != nil {
		return model.User{}, err
	}
	acct, err := s.account(ctx, user)
	if err != nil {
		return model.User{}, err
	}
	if acct.Muted(s.Now()) { // a brief is pushed to everyone online
		return model.User{}, node.Errorf(node.CodeForbidden, "you may not change your profile now")
	}
	newBrief, newAvatar := acct.Brief, acct.Avatar
	if brief != nil {
		if err := model.CheckText(*brief, s.Limits().BriefMax); err != nil {
			return model.User{}, node.Errorf(node.CodeBadRequest, "brief: %v", err)
		}
		newBrief = *brief
	}
	if avatar != nil && *avatar != acct.Avatar {
		if err := checkAvatar(*avatar); err != nil {
			return model.User{}, err
		}
		newAvatar = *avatar
	}
	u, err := s.Store.UpdateProfile(ctx, user, newBrief, newAvatar)
	if err != nil {
		return model.User{}, err
	}
	s.accountChanged(user)
	s.Bus.Broadcast(push("im/user", struct {
		User model.User `json:"user"`
	}{u}), 0, 0)
	return u, nil
}

// checkAvatar accepts only /files/ID of an image the user uploaded; until
// uploads exist there is no such file, and anything else is malformed.
func checkAvatar(avatar string) error {
	if avatar == "" {
		return nil
	}
	if len(avatar) > len("/files/") && avatar[:len("/files/")] == "/files/" {
		return node.Errorf(node.CodeNotFound, "no such file: %s", avatar)
	}
	return node.Errorf(node.CodeBadRequest, "avatar must be /files/ID of an image you uploaded")
}
