// The dce program: the chat server and its command line. `dce help` lists
// every node; `dce websocket start` runs the server.
package main

import (
	"os"
	"runtime/debug"

	"dce/app/boot"
)

// gcPercent is the garbage collector's target unless GOGC says otherwise.
// A chat server's heap is mostly many small long-lived connections; at the
// runtime's default of 100 a heap may hold as much garbage as live data,
// which on 19,000 idle connections is about 1.4 KiB each. At 50 the
// fan-out benchmark costs no measurable CPU more (README, Performance).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(boot.RunCLI(os.Args[1:], os.Stdout, os.Stderr))
}
