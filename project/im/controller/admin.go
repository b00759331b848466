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
