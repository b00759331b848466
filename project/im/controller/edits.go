package controller

import (
	"dce/app/node"
)

// Edit replaces the text of one of the caller's messages; the reply comes
// after the edit is durably stored.
func (c *ImService) Edit(ctx *node.Context) (any, error) {
	var req struct {
		ID   int64   `json:"id"`
		Text *string `json:"text"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	if req.Text == nil {
		return nil, node.Errorf(node.CodeBadRequest, "id and text are required")
	}
	wait, err := c.Chat.EditLater(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID, *req.Text)
	if err != nil {
		return nil, err
	}
	return node.Later(func() (any, error) { return wait() }), nil
}

// Delete deletes one of the caller's messages, or any as an admin; the
// reply comes after the deletion is durably stored.
func (c *ImService) Delete(ctx *node.Context) (any, error) {
	var req struct {
		ID int64 `json:"id"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	wait, err := c.Chat.DeleteLater(ctx.Ctx, connID(ctx.Peer), ctx.UserID(), req.ID)
	if err != nil {
		return nil, err
	}
	return node.Later(func() (any, error) { return nil, wait() }), nil
}

// Search finds messages the caller may read by a substring of their text.
func (c *ImService) Search(ctx *node.Context) (any, error) {
	var req struct {
		Q      *string `json:"q"`
		With   string  `json:"with"`
		Before int64   `json:"before"`
		Limit  int     `json:"limit"`
	}
	if err := ctx.Bind(&req); err != nil {
		return nil, err
	}
	if req.Q == nil {
		return nil, node.Errorf(node.CodeBadRequest, "q is required")
	}
	return c.Chat.Search(ctx.Ctx, ctx.UserID(), *req.Q, req.With, req.Before, req.Limit)
}
