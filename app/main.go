// The dce program: the chat server and its command line. `dce help` lists
// every node; `dce websocket start` runs the server.
package main

import (
	"os"

	"dce/app/boot"
)

func main() {
	os.Exit(boot.RunCLI(os.Args[1:], os.Stdout, os.Stderr))
}
