// Package testenv says what the machine running the tests lacks, for the
// tests of packages the server itself is built from (which cannot import
// servertest, as servertest starts the whole server).
package testenv

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under continuous integration: CI is
// set to anything but "" or "false" (.ci/run sets CI=true, as CI services
// do).
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing ends a test that needs something this machine lacks (a real
// browser, a tool, a server): a skip on a developer's machine, a failure
// under CI, where a skipped test would report ok for what never ran.
func Missing(tb testing.TB, why string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s; under CI (CI=%s) a missing dependency fails the test instead of skipping it", why, os.Getenv("CI"))
	}
	tb.Skip(why)
}
