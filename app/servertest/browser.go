package servertest

import (
	"context"
	"dce/app/servertest/testenv"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// BrowserTimeout bounds each browser action and each wait for a page
// condition.
var BrowserTimeout = 15 * time.Second

// browserStartTimeout bounds starting Chromium and opening its first tab.
const browserStartTimeout = 60 * time.Second

// browserPollEvery is how often a wait re-evaluates its page condition.
const browserPollEvery = 25 * time.Millisecond

// cspProbe runs in every document before the page's own scripts (DevTools
// injects it, so the page's CSP does not apply to it) and counts the
// securitypolicyviolation events the page raises.
const cspProbe = `Object.defineProperty(window, '__dceCSP', {value: [], enumerable: false});
document.addEventListener('securitypolicyviolation', (e) => {
  window.__dceCSP.push(e.effectiveDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
}, true);`

// Browser is one headless Chromium with a profile of its own (its own
// cookies, storage and cache) and one tab. Two Browsers are two separate
// users. It records what a test must see none of: JavaScript dialogs,
// uncaught exceptions and Content Security Policy violations.
type Browser struct {
	tb  testing.TB
	ctx context.Context // the tab; its cancellation closes the browser

	mu         sync.Mutex
	dialogs    []string
	exceptions []string
	csp        []string
	console    []string // every console and log line, shown when the test fails
}

// StartBrowser starts headless Chromium with a fresh profile in a
// temporary folder and opens a blank tab, its languages English (en-US)
// whatever the machine's. When chromium is not installed the test is
// skipped, or fails under CI (see Missing). The browser is closed when the
// test ends.
func StartBrowser(tb testing.TB) *Browser {
	tb.Helper()
	return StartBrowserLang(tb, "en-US,en")
}

// StartBrowserLang is StartBrowser with the browser's languages set to
// languages, an Accept-Language list such as "zh-CN,zh": what the page
// finds in navigator.languages, as in a browser set up in that language.
func StartBrowserLang(tb testing.TB, languages string) *Browser {
	tb.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		Missing(tb, "chromium is not installed (apt-get install chromium): browser tests need it")
	}
	profile := tb.TempDir() // before the cleanup below: removed after the browser has exited
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.Flag("lang", strings.Split(languages, ",")[0]),
		chromedp.Flag("accept-lang", languages),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &Browser{tb: tb, ctx: ctx}
	tb.Cleanup(func() {
		if tb.Failed() {
			b.dumpConsole()
		}
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
	})

	// The first action starts the browser and binds its life to ctx, so it
	// runs on ctx itself; a timer bounds it instead of a deadline.
	stuck := time.AfterFunc(browserStartTimeout, cancelTab)
	err = chromedp.Do(ctx)
	stuck.Stop()
	if err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, b.onEvent); err != nil {
		tb.Fatalf("listen to the tab: %v", err)
	}
	b.OnNewDocument(cspProbe)
	return b
}

// InCI reports whether the tests run under continuous integration
// (testenv.InCI).
func InCI() bool { return testenv.InCI() }

// Missing ends a test that needs something this machine lacks: a skip on
// a developer's machine, a failure under CI (testenv.Missing).
func Missing(tb testing.TB, why string) {
	tb.Helper()
	testenv.Missing(tb, why)
}

// onEvent runs in the tab's event loop: it only records, and answers a
// dialog from another goroutine (a dialog blocks the page until answered).
func (b *Browser) onEvent(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *page.EventJavascriptDialogOpening:
		b.dialogs = append(b.dialogs, string(e.Type)+": "+e.Message)
		go func() {
			_, _ = chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}()
	case *runtime.EventExceptionThrown:
		text := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil && e.ExceptionDetails.Exception.Description != "" {
			text += " " + e.ExceptionDetails.Exception.Description
		}
		text += fmt.Sprintf(" (%s:%d)", e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber+1)
		b.exceptions = append(b.exceptions, text)
		b.console = append(b.console, "exception: "+text)
	case *cdplog.EventEntryAdded:
		line := fmt.Sprintf("log %s/%s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL)
		b.console = append(b.console, line)
		if strings.Contains(e.Entry.Text, "Content Security Policy") {
			b.csp = append(b.csp, e.Entry.Text)
		}
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range e.Args {
			if a.Value != nil {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		text := strings.Join(parts, " ")
		b.console = append(b.console, "console."+string(e.Type)+": "+text)
		if strings.Contains(text, "Content Security Policy") {
			b.csp = append(b.csp, text)
		}
	}
}

func (b *Browser) dumpConsole() {
	b.mu.Lock()
	lines := append([]string(nil), b.console...)
	b.mu.Unlock()
	for _, l := range lines {
		b.tb.Logf("browser %s", l)
	}
}

// Context is the tab's context, for chromedp calls of a test's own; bound
// each call with context.WithTimeout.
func (b *Browser) Context() context.Context { return b.ctx }

// Dialogs are the JavaScript dialogs (alert, confirm, prompt) the page
// opened; each was dismissed at once.
func (b *Browser) Dialogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}

// Exceptions are the uncaught exceptions the page threw.
func (b *Browser) Exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.exceptions...)
}

// CSPViolations are the Content Security Policy violations of every
// document the tab loaded, as the console reported them, followed by the
// securitypolicyviolation events of the current document.
func (b *Browser) CSPViolations() []string {
	b.mu.Lock()
	out := append([]string(nil), b.csp...)
	b.mu.Unlock()
	events, err := TryEval[[]string](b, `window.__dceCSP ? [...window.__dceCSP] : []`)
	if err == nil {
		for _, e := range events {
			out = append(out, "event: "+e)
		}
	}
	return out
}

// OnNewDocument runs the script in every document the tab loads from now
// on, before the page's own scripts (the page's CSP does not apply to it).
func (b *Browser) OnNewDocument(script string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, BrowserTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: script}); err != nil {
		b.tb.Fatalf("add a script to new documents: %v", err)
	}
}

// do runs steps with the action timeout and fails the test on an error.
func (b *Browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, BrowserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.tb.Fatalf("browser %s: %v", what, err)
	}
}

// Navigate loads url and waits for its load event.
func (b *Browser) Navigate(url string) {
	b.tb.Helper()
	b.do("navigate to "+url, chromedp.Navigate(url))
}

// Reload reloads the page and waits for its load event.
func (b *Browser) Reload() {
	b.tb.Helper()
	b.do("reload", chromedp.Reload())
}

// Click clicks the first element that matches the CSS selector, once it
// is visible. A page that re-renders a list can replace the element
// between the lookup and the click: the click is then tried again.
func (b *Browser) Click(css string) {
	b.tb.Helper()
	deadline := time.Now().Add(BrowserTimeout)
	for {
		ctx, cancel := context.WithDeadline(b.ctx, deadline)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(css), chromedp.NodeVisible))
		cancel()
		if err == nil {
			return
		}
		replaced := strings.Contains(err.Error(), "node with given id") || strings.Contains(err.Error(), "box model")
		if !replaced || time.Now().After(deadline) {
			b.tb.Fatalf("browser click %s: %v", css, err)
		}
		time.Sleep(browserPollEvery)
	}
}

// SetValue sets the value of the input that matches css.
func (b *Browser) SetValue(css, value string) {
	b.tb.Helper()
	b.do("set the value of "+css, chromedp.SetValue(chromedp.CSS(css), value))
}

// Type focuses the element that matches css and types text into it as key
// events ("\r" is the Enter key).
func (b *Browser) Type(css, text string) {
	b.tb.Helper()
	b.do("type into "+css, chromedp.Focus(chromedp.CSS(css)), chromedp.SendKeys(chromedp.CSS(css), text))
}

// Viewport emulates a screen of width x height CSS pixels; mobile also
// emulates a phone (touch, mobile viewport rules).
func (b *Browser) Viewport(width, height int64, mobile bool) {
	b.tb.Helper()
	opts := []chromedp.EmulateViewportOption{}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	b.do("set the viewport", chromedp.EmulateViewport(width, height, opts...))
}

// ResetViewport ends Viewport's emulation.
func (b *Browser) ResetViewport() {
	b.tb.Helper()
	b.do("reset the viewport", func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, struct{}{})
		return chromedp.Void{}, err
	})
}

// Screenshot writes a PNG of the viewport to path.
func (b *Browser) Screenshot(path string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, BrowserTimeout)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.tb.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.tb.Fatal(err)
	}
}

// TryEval evaluates a JavaScript expression in the page and decodes its
// value into T; promises are awaited.
func TryEval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, BrowserTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// Eval is TryEval that fails the test on an error.
func Eval[T any](b *Browser, expr string) T {
	b.tb.Helper()
	v, err := TryEval[T](b, expr)
	if err != nil {
		b.tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// True reports whether the expression is truthy in the page now (false
// when it cannot be evaluated, e.g. during a navigation).
func (b *Browser) True(expr string) bool {
	ok, err := TryEval[bool](b, "!!("+expr+")")
	return err == nil && ok
}

// Wait polls the expression until it is truthy, and fails the test with
// what (and the value of show, a diagnostic expression, when not empty)
// after BrowserTimeout.
func (b *Browser) Wait(what, expr string, show ...string) time.Duration {
	b.tb.Helper()
	return b.WaitFor(BrowserTimeout, what, expr, show...)
}

// WaitFor is Wait with its own timeout. It returns how long the wait took.
func (b *Browser) WaitFor(timeout time.Duration, what, expr string, show ...string) time.Duration {
	b.tb.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !b.True(expr) {
		if time.Now().After(deadline) {
			var details []string
			for _, s := range show {
				v, err := TryEval[any](b, s)
				details = append(details, fmt.Sprintf("%s = %v (%v)", s, v, err))
			}
			b.tb.Fatalf("browser: timed out after %v waiting for %s [%s] %s", timeout, what, expr, strings.Join(details, "; "))
		}
		time.Sleep(browserPollEvery)
	}
	return time.Since(start)
}

// LoginUI opens the chat at baseURL, fills in the login form and waits
// until the page is online (the post-connect catch-up done).
func (b *Browser) LoginUI(baseURL, nickname, password string) {
	b.tb.Helper()
	b.Navigate(baseURL + "/")
	b.Wait("the login form", `!document.getElementById('login').hidden && !document.getElementById('login-submit').disabled`)
	b.SetValue("#nickname", nickname)
	b.SetValue("#password", password)
	b.Click("#login-submit")
	b.WaitOnline("after logging in as " + nickname)
}

// WaitOnline waits until the page shows the chat with status online (in
// any language: the status element's data-state is open).
func (b *Browser) WaitOnline(what string) {
	b.tb.Helper()
	b.Wait("the page online "+what,
		`!document.getElementById('chat').hidden && document.getElementById('status').dataset.state === 'open'`,
		`document.getElementById('login-error').textContent`, `document.getElementById('status').textContent`)
}
