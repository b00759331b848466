package boot

import (
	"dce/app/bench"
	"dce/app/node"
)

// benchNodes are `dce bench ...`: the load tool's command lines
// (app/bench/flags.go), against a running server.
func (k *Kernel) benchNodes() []node.Node {
	var rows []node.Node
	for _, c := range bench.Commands() {
		run := c.Run
		rows = append(rows, node.Node{Path: c.Name, Name: c.Usage, Do: func(ctx *node.Context) (any, error) {
			if err := run(ctx.Ctx, ctx.Args, ctx.Out); err != nil {
				return nil, &node.Error{Code: node.CodeInternal, Message: err.Error()}
			}
			return nil, nil
		}})
	}
	return node.Group(node.Node{Path: "bench", Methods: node.CLI, Auth: node.Public}, rows...)
}
