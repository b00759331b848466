package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"dce/app/node"
	"dce/common/model"
)

// CLI is the command line as a transport: the arguments spell a node's
// path (`dce user admin` is user/admin), the longest one that matches, and
// the rest are the node's own arguments. A node's error is printed as
// "dce: MESSAGE" with exit status 1; a JSON result is printed indented.
type CLI struct {
	// Table is every node, for matching and for the help printed when no
	// path matches.
	Table []node.Node
	// Bind, when set, gives the matched node what it needs to run (a
	// project node needs the store): the table to call it through, the
	// node's arguments once Bind has taken its own, and a release for
	// afterwards.
	Bind func(path string, args []string) (table []node.Node, rest []string, release func(), err error)
	// Stdout and Stderr are where results and errors go.
	Stdout, Stderr io.Writer
}

// Run runs args and returns the exit status.
func (c *CLI) Run(ctx context.Context, args []string) int {
	table := c.Table
	path, rest := matchCLI(table, args)
	if path == "" {
		if len(args) > 0 {
			fmt.Fprintf(c.Stderr, "dce: unknown command %q\n\n", strings.Join(args, " "))
		}
		PrintTable(c.Stderr, table)
		return 2
	}
	if c.Bind != nil {
		bound, nodeArgs, release, err := c.Bind(path, rest)
		if err != nil {
			fmt.Fprintln(c.Stderr, "dce:", err)
			return 1
		}
		if release != nil {
			defer release()
		}
		table, rest = bound, nodeArgs
	}
	router := node.NewRouter(table, node.RouterOptions{IsAdmin: func(context.Context, int64) (bool, error) { return false, nil }})
	n := router.Lookup(path, node.CLI)
	result, err := router.Call(&node.Context{Ctx: ctx, Node: n, Peer: cliPeer{}, Args: rest, Out: c.Stdout})
	if err != nil {
		e, _ := node.AsError(err)
		fmt.Fprintln(c.Stderr, "dce:", e.Message)
		return 1
	}
	if raw, ok := result.(node.RawJSON); ok && len(raw) > 0 && string(raw) != "null" {
		var pretty any
		if json.Unmarshal(raw, &pretty) == nil {
			enc := json.NewEncoder(c.Stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(pretty)
		}
	}
	return 0
}

func matchCLI(table []node.Node, args []string) (string, []string) {
	for n := len(args); n > 0; n-- {
		path := strings.Join(args[:n], "/")
		for _, row := range table {
			if row.Path == path && row.Methods&node.CLI != 0 {
				return path, args[n:]
			}
		}
	}
	return "", nil
}

// PrintTable writes the node table: every node, the transports it serves,
// who may call it, and its name.
func PrintTable(w io.Writer, rows []node.Node) {
	shown := func(n node.Node) string {
		if n.Methods == node.CLI {
			return "dce " + strings.ReplaceAll(n.Path, "/", " ")
		}
		return n.Path
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b node.Node) int { return strings.Compare(shown(a), shown(b)) })
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tMETHODS\tAUTH\tNAME")
	for _, n := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", shown(n), n.Methods, n.Auth, n.Name)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nFrames: PATH[:ID][;JSON] over WebSocket (ws://HOST:20461/ws), TCP lines (20462), UDP datagrams (20463);")
	fmt.Fprintln(w, "HTTP: POST /PATH with a JSON body. HTTP routes: GET / (the UI), /static/..., /healthz.")
}

// cliPeer is the command line as a node.Peer: local, never logged in.
type cliPeer struct{}

func (cliPeer) Transport() node.Method          { return node.CLI }
func (cliPeer) RemoteIP() string                { return "local" }
func (cliPeer) Session() *model.Session         { return nil }
func (cliPeer) SetSession(*model.Session) error { return nil }
