package servertest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"dce/app/servertest"
)

// In the child process (below): start a browser on a PATH without one.
func TestStartBrowserWithoutChromium(t *testing.T) {
	if os.Getenv("SERVERTEST_NO_BROWSER_CHILD") != "1" {
		t.Skip("run by TestMissingBrowserFailsUnderCI in a child process")
	}
	servertest.StartBrowser(t)
	t.Fatal("StartBrowser returned without chromium on the PATH")
}

// Without chromium, a browser test skips on a developer's machine and
// fails under CI (CI=true, as .ci/run sets), where a skip would report ok
// for tests that never ran.
func TestMissingBrowserFailsUnderCI(t *testing.T) {
	for _, c := range []struct {
		ci   string
		fail bool
	}{{"", false}, {"false", false}, {"true", true}, {"1", true}} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestStartBrowserWithoutChromium$", "-test.v", "-test.count=1")
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "CI=") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(env, "PATH="+t.TempDir(), "CI="+c.ci, "SERVERTEST_NO_BROWSER_CHILD=1")
		out, err := cmd.CombinedOutput()
		failed := strings.Contains(string(out), "--- FAIL: TestStartBrowserWithoutChromium")
		skipped := strings.Contains(string(out), "--- SKIP: TestStartBrowserWithoutChromium")
		if c.fail && (!failed || err == nil) {
			t.Errorf("CI=%q without chromium: the browser test did not fail (%v):\n%s", c.ci, err, out)
		}
		if !c.fail && (!skipped || err != nil) {
			t.Errorf("CI=%q without chromium: the browser test did not skip (%v):\n%s", c.ci, err, out)
		}
	}
}
