package controller

import (
	"fmt"
	"os"
	"runtime"

	"dce/app/node"
	"dce/project/im/service"
)

// Admin serves the admin/* nodes and the user administration command line.
type Admin struct {
	Chat *service.Service
}

// Stats reports the server's counters.
func (a *Admin) Stats(ctx *node.Context) (any, error) {
	st, err := a.Chat.Stats(ctx.Ctx)
	if err != nil {
		return nil, err
	}
	return struct {
		Connections int    `json:"connections"`
		Online      int    `json:"online"`
		Messages    int64  `json:"messages"`
		UptimeS     int64  `json:"uptime_s"`
		Goroutines  int    `json:"goroutines"`
		RSSBytes    uint64 `json:"rss_bytes"`
	}{st.Connections, st.Online, st.Messages, st.UptimeS, runtime.NumGoroutine(), RSS()}, nil
}

// moderation is the body of admin/kick, admin/ban and admin/mute.
type moderation struct {
	User    int64  `json:"user"`
	Minutes *int   `json:"minutes"`
	Reason  string `json:"reason"`
}

func bindModeration(ctx *node.Context) (moderation, error) {
	var req moderation
	err := ctx.Bind(&req)
	return req, err
}

// Kick closes a user's connections on every node; they may come back.
func (a *Admin) Kick(ctx *node.Context) (any, error) {
	req, err := bindModeration(ctx)
	if err != nil {
		return nil, err
	}
	return nil, a.Chat.Kick(ctx.Ctx, ctx.UserID(), req.User, req.Reason)
}

// Ban ends a user's sessions and keeps them out for minutes (absent: for
// good; 0 lifts the ban).
func (a *Admin) Ban(ctx *node.Context) (any, error) {
	req, err := bindModeration(ctx)
	if err != nil {
		return nil, err
	}
	return nil, a.Chat.Ban(ctx.Ctx, ctx.UserID(), req.User, req.Minutes, req.Reason)
}

// Mute keeps a user from sending for minutes (0 lifts the mute).
func (a *Admin) Mute(ctx *node.Context) (any, error) {
	req, err := bindModeration(ctx)
	if err != nil {
		return nil, err
	}
	if req.Minutes == nil {
		return nil, node.Errorf(node.CodeBadRequest, "minutes: required")
	}
	return nil, a.Chat.Mute(ctx.Ctx, ctx.UserID(), req.User, *req.Minutes)
}

// GrantAdmin is `dce user admin NICKNAME`.
func (a *Admin) GrantAdmin(ctx *node.Context) (any, error) {
	if len(ctx.Args) != 1 {
		return nil, node.Errorf(node.CodeBadRequest, "usage: dce user admin NICKNAME [-config FILE]")
	}
	u, err := a.Chat.GrantAdmin(ctx.Ctx, ctx.Args[0])
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(ctx.Out, "%s (id %d) is now an admin\n", u.Nickname, u.ID)
	return nil, nil
}

// RSS is the process's resident set size in bytes, from /proc (0 where
// there is none).
func RSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident uint64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * uint64(os.Getpagesize())
}
