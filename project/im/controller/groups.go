package controller

import (
	"dce/app/node"
	"dce/common/model"
)

// The im/group/* nodes: bind the body, call the service.

type groupResult struct {
	Group model.Group `json:"group"`
}

// groupRequest is the body of the nodes that name a group, and a user or
// a name with it.
type groupRequest struct {
	ID   int64   `json:"id"`
	User int64   `json:"user"`
	Name *string `json:"name"`
}

func bindGroup(ctx *node.Context) (groupRequest, error) {
	var req groupRequest
	err := ctx.Bind(&req)
	return req, err
}

// GroupCreate creates a group owned by the caller.
func (c *ImService) GroupCreate(ctx *node.Context) (any, error) {
	var req struct {
		Name    *string `json:"name"`
		Private bool    `json:"private"`
		Members []int64 `json:"members"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	g, err := c.Chat.CreateGroup(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.Name, req.Private, req.Members)
	if err != nil {
		return nil, err
	}
	return groupResult{g}, nil
}

// GroupJoin joins an open group.
func (c *ImService) GroupJoin(ctx *node.Context) (any, error) {
	req, err := bindGroup(ctx)
	if err != nil {
		return nil, err
	}
	g, err := c.Chat.JoinGroup(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID)
	if err != nil {
		return nil, err
	}
	return groupResult{g}, nil
}

// GroupInvite makes another user a member.
func (c *ImService) GroupInvite(ctx *node.Context) (any, error) {
	req, err := bindGroup(ctx)
	if err != nil {
		return nil, err
	}
	return nil, c.Chat.InviteToGroup(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID, req.User)
}

// GroupLeave leaves a group.
func (c *ImService) GroupLeave(ctx *node.Context) (any, error) {
	req, err := bindGroup(ctx)
	if err != nil {
		return nil, err
	}
	return nil, c.Chat.LeaveGroup(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID)
}

// GroupRemove takes a member out of the caller's group.
func (c *ImService) GroupRemove(ctx *node.Context) (any, error) {
	req, err := bindGroup(ctx)
	if err != nil {
		return nil, err
	}
	return nil, c.Chat.RemoveFromGroup(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID, req.User)
}

// GroupRename renames the caller's group.
func (c *ImService) GroupRename(ctx *node.Context) (any, error) {
	req, err := bindGroup(ctx)
	if err != nil {
		return nil, err
	}
	g, err := c.Chat.RenameGroup(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID, req.Name)
	if err != nil {
		return nil, err
	}
	return groupResult{g}, nil
}

// GroupList lists the caller's groups and the open ones.
func (c *ImService) GroupList(ctx *node.Context) (any, error) {
	var req struct{}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	groups, err := c.Chat.ListGroups(ctx.UserID())
	if err != nil {
		return nil, err
	}
	return struct {
		Groups []model.ListedGroup `json:"groups"`
	}{groups}, nil
}

// GroupMembers lists a group's members with their places.
func (c *ImService) GroupMembers(ctx *node.Context) (any, error) {
	req, err := bindGroup(ctx)
	if err != nil {
		return nil, err
	}
	users, err := c.Chat.GroupMembers(ctx.Ctx, ctx.UserID(), req.ID)
	if err != nil {
		return nil, err
	}
	return struct {
		Users []model.Online `json:"users"`
	}{users}, nil
}
