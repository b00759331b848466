// Package controller holds the chat's controllers, as in Dce: ImService
// (the chat's nodes), ImUi (the pages) and Admin. A controller binds and
// validates a request's body, calls the service, and returns the result;
// the chat's logic lives in the service.
package controller

import (
	"context"

	"dce/app/node"
	"dce/common/model"
	"dce/project/im/service"
)

// ImService serves the im/* nodes.
type ImService struct {
	Chat *service.Service
}

// Ping answers with the server's time.
func (c *ImService) Ping(ctx *node.Context) (any, error) {
	return struct {
		TS int64 `json:"ts"`
	}{ctx.Now.UnixMilli()}, nil
}

// Login logs in, registering an unknown nickname.
func (c *ImService) Login(ctx *node.Context) (any, error) {
	var req struct {
		Nickname *string `json:"nickname"`
		Password *string `json:"password"`
		Brief    string  `json:"brief"`
		Avatar   string  `json:"avatar"`
		Presence *bool   `json:"presence"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	watchPresence(ctx.Peer, req.Presence)
	if req.Nickname == nil || req.Password == nil {
		return nil, node.Errorf(node.CodeBadRequest, "nickname and password are required")
	}
	if req.Avatar != "" {
		return nil, node.Errorf(node.CodeBadRequest, "avatar: set it with im/profile after uploading an image")
	}
	r, err := c.Chat.Login(ctx.Ctx, ctx.Peer, *req.Nickname, *req.Password, req.Brief)
	if err != nil {
		return nil, err
	}
	r.Verify = verifyToken(ctx.Peer)
	return r, nil
}

// Resume attaches the connection to an existing session.
func (c *ImService) Resume(ctx *node.Context) (any, error) {
	var req struct {
		SID      string `json:"sid"`
		Presence *bool  `json:"presence"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	watchPresence(ctx.Peer, req.Presence)
	if req.SID == "" {
		return nil, node.Errorf(node.CodeBadRequest, "sid is required")
	}
	u, err := c.Chat.ResumeRequested(ctx.Ctx, ctx.Peer, req.SID)
	if err != nil {
		return nil, err
	}
	return resumeResult{User: u, Verify: verifyToken(ctx.Peer)}, nil
}

type userResult struct {
	User model.User `json:"user"`
}

type resumeResult struct {
	User   model.User `json:"user"`
	Verify string     `json:"verify,omitempty"`
}

// addressProver is a connection whose source address must prove that it
// receives before a session attaches to it: a UDP peer (PROTOCOL.md
// section 1).
type addressProver interface {
	// VerifyToken is what a login's or resume's reply carries as
	// "verify", or "" when there is nothing to prove.
	VerifyToken() string
	// Verify takes the token back: the address has proved it receives.
	Verify(ctx context.Context, token string) error
}

// verifyToken is the "verify" of a login's or resume's reply over peer.
func verifyToken(peer node.Peer) string {
	if p, ok := peer.(addressProver); ok {
		return p.VerifyToken()
	}
	return ""
}

// Verify is im/verify: a UDP address sends back the token the reply to its
// im/login or im/resume carried, and the session attaches to it.
func (c *ImService) Verify(ctx *node.Context) (any, error) {
	var req struct {
		Token string `json:"token"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	if req.Token == "" {
		return nil, node.Errorf(node.CodeBadRequest, "token is required: the verify of the im/login or im/resume reply")
	}
	p, ok := ctx.Peer.(addressProver)
	if !ok {
		return nil, node.Errorf(node.CodeNotFound, "no such node: im/verify (UDP only)")
	}
	return nil, p.Verify(ctx.Ctx, req.Token)
}

// Signer tells who this connection is logged in as.
func (c *ImService) Signer(ctx *node.Context) (any, error) {
	u, err := c.Chat.Signer(ctx.Ctx, ctx.Peer)
	if err != nil {
		return nil, err
	}
	return struct {
		User *model.User `json:"user"`
	}{u}, nil
}

// Logout ends the session on every connection holding it.
func (c *ImService) Logout(ctx *node.Context) (any, error) {
	return nil, c.Chat.Logout(ctx.Ctx, ctx.Peer)
}

// Users lists who is online.
func (c *ImService) Users(ctx *node.Context) (any, error) {
	users, err := c.Chat.Users(ctx.Ctx)
	if err != nil {
		return nil, err
	}
	return struct {
		Users []model.Online `json:"users"`
	}{users}, nil
}

// Send sends a message; the reply comes after it is durably stored.
func (c *ImService) Send(ctx *node.Context) (any, error) {
	var req service.SendRequest
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	wait, err := c.Chat.SendLater(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req)
	if err != nil {
		return nil, err
	}
	return node.Later(func() (any, error) { return wait() }), nil
}

// connID is the number of a live connection, or 0 for HTTP requests.
func connID(p node.Peer) uint64 {
	if c, ok := p.(interface{ ID() uint64 }); ok {
		return c.ID()
	}
	return 0
}

// Load pages through a conversation's history.
func (c *ImService) Load(ctx *node.Context) (any, error) {
	var req struct {
		With   string `json:"with"`
		Before int64  `json:"before"`
		After  int64  `json:"after"`
		Around *int64 `json:"around"`
		Limit  int    `json:"limit"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	if req.Around != nil {
		if req.Before != 0 || req.After != 0 {
			return nil, node.Errorf(node.CodeBadRequest, "give around alone, without before or after")
		}
		return c.Chat.LoadAround(ctx.Ctx, ctx.UserID(), req.With, *req.Around, req.Limit)
	}
	return c.Chat.Load(ctx.Ctx, ctx.UserID(), req.With, req.Before, req.After, req.Limit)
}

// Sync returns every change after a sequence number.
func (c *ImService) Sync(ctx *node.Context) (any, error) {
	var req struct {
		Since *int64 `json:"since"`
		Limit int    `json:"limit"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	if req.Since == nil {
		return nil, node.Errorf(node.CodeBadRequest, "since is required (0 for everything)")
	}
	return c.Chat.Sync(ctx.Ctx, ctx.UserID(), *req.Since, req.Limit)
}

// Conversations lists the caller's conversations.
func (c *ImService) Conversations(ctx *node.Context) (any, error) {
	convs, err := c.Chat.Conversations(ctx.Ctx, ctx.UserID())
	if err != nil {
		return nil, err
	}
	return struct {
		Conversations []model.Conversation `json:"conversations"`
	}{convs}, nil
}

// Read marks a conversation read.
func (c *ImService) Read(ctx *node.Context) (any, error) {
	var req struct {
		With string `json:"with"`
		ID   int64  `json:"id"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	return nil, c.Chat.Read(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.With, req.ID)
}

// Typing tells the others that the caller is typing.
func (c *ImService) Typing(ctx *node.Context) (any, error) {
	var req struct {
		To string `json:"to"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	return nil, c.Chat.Typing(ctx.Ctx, ctx.UserID(), req.To)
}

// Profile changes the caller's brief.
func (c *ImService) Profile(ctx *node.Context) (any, error) {
	var req struct {
		Brief  *string `json:"brief"`
		Avatar *string `json:"avatar"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	u, err := c.Chat.Profile(ctx.Ctx, ctx.UserID(), req.Brief, req.Avatar)
	if err != nil {
		return nil, err
	}
	return userResult{u}, nil
}

// watchPresence applies a login's or resume's "presence" field: false means
// this connection does not want im/presence events (a bot, a load client).
func watchPresence(peer node.Peer, presence *bool) {
	if w, ok := peer.(interface{ WatchPresence(bool) }); ok && presence != nil {
		w.WatchPresence(*presence)
	}
}
