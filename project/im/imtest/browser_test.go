package imtest

// Browser end-to-end tests: the real server, the real page (www/ and
// ui.html as embedded in the binary) in headless Chromium, one profile per
// user. TESTPLAN section 7 (X1, X3, X5, X6) and the chat flows.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
	"dce/common/config"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browserWait bounds waits for what the server or another user caused.
const browserWait = 10 * time.Second

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// msgIDs is a JavaScript expression: the data-id of every acknowledged
// message in #messages whose text is exactly text.
func msgIDs(text string) string {
	return `[...document.querySelectorAll('#messages .msg[data-id]')]` +
		`.filter((e) => e.querySelector('.text').textContent === ` + js(text) + `).map((e) => e.dataset.id)`
}

// msgCount is a JavaScript expression: how many messages msgIDs finds.
func msgCount(text string) string { return msgIDs(text) + `.length` }

// noDuplicateIDs is true when no message id shows twice in #messages.
const noDuplicateIDs = `(() => { const ids = [...document.querySelectorAll('#messages .msg[data-id]')].map((e) => e.dataset.id); ` +
	`return ids.length === new Set(ids).size; })()`

// shownIDs lists the data-id of every message shown, in page order.
const shownIDs = `[...document.querySelectorAll('#messages .msg[data-id]')].map((e) => +e.dataset.id)`

// noOverflow is true when the page does not scroll sideways.
const noOverflow = `document.documentElement.scrollWidth <= document.documentElement.clientWidth`

// tcpUser logs nickname in over TCP and returns the client and the user id.
func tcpUser(t *testing.T, s *servertest.Server, nickname, password string) (*servertest.Client, int64) {
	t.Helper()
	c := s.DialTCP(t)
	var r struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	c.OK("im/login", map[string]string{"nickname": nickname, "password": password}, &r)
	return c, r.User.ID
}

// send sends text to conv from c and returns the message id.
func send(t *testing.T, c *servertest.Client, to, text string) int64 {
	t.Helper()
	var r struct {
		ID int64 `json:"id"`
	}
	c.OK("im/send", map[string]string{"to": to, "text": text}, &r)
	return r.ID
}

// selfID is the signed-in user's id as the page shows it.
func selfID(t *testing.T, b *servertest.Browser) int64 {
	t.Helper()
	b.Wait("own entry in the online list", `document.querySelector('#user-list li.self')`)
	return int64(servertest.Eval[float64](b, `+document.querySelector('#user-list li.self').dataset.userId`))
}

// sendUI types text into the composer and sends it with the Enter key.
func sendUI(t *testing.T, b *servertest.Browser, text string) {
	t.Helper()
	b.Type("#text", text+"\r")
	b.Wait("the sent message acknowledged: "+text, msgCount(text)+` === 1 && !document.querySelector('#messages .msg.pending')`,
		`document.getElementById('text').value`)
}

// checkClean fails the test when a page opened a dialog, threw an
// uncaught exception or violated its Content Security Policy.
func checkClean(t *testing.T, browsers ...*servertest.Browser) {
	t.Helper()
	for i, b := range browsers {
		if v := b.CSPViolations(); len(v) > 0 {
			t.Errorf("browser %d: %d CSP violations: %q", i, len(v), v)
		}
		if d := b.Dialogs(); len(d) > 0 {
			t.Errorf("browser %d: %d JavaScript dialogs: %q", i, len(d), d)
		}
		if e := b.Exceptions(); len(e) > 0 {
			t.Errorf("browser %d: %d uncaught exceptions: %q", i, len(e), e)
		}
	}
}

// screenshotDir is where screenshots go: DCE_SCREENSHOTS when set (to look
// at them), else the test's temporary folder.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("DCE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestBrowserLobbyAndPresence: two users in two browsers chat in the lobby
// both ways; each message shows once on both pages with the right sender;
// the online list follows a third connection and a logout.
func TestBrowserLobbyAndPresence(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	bob := servertest.StartBrowser(t)
	start := time.Now()
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob.LoginUI(s.HTTPURL, "bob", "password-bob")
	loggedIn := time.Since(start)
	annID, bobID := selfID(t, ann), selfID(t, bob)

	// Both online, one place each, on both pages.
	for _, page := range []*servertest.Browser{ann, bob} {
		for id, nick := range map[int64]string{annID: "ann", bobID: "bob"} {
			li := fmt.Sprintf(`#user-list li[data-user-id="%d"]`, id)
			page.Wait(nick+" online with 1 place",
				`document.querySelector('`+li+` .nickname')?.textContent === `+js(nick)+
					` && document.querySelector('`+li+` .places')?.textContent === '1'`,
				`document.getElementById('user-list').innerText`)
		}
	}

	start = time.Now()
	sendUI(t, ann, "hello from ann")
	bob.Wait("ann's message on bob's page", msgCount("hello from ann")+` === 1`)
	annToBob := time.Since(start)
	sendUI(t, bob, "hi ann, bob here")
	ann.Wait("bob's message on ann's page", msgCount("hi ann, bob here")+` === 1`)

	for _, text := range []string{"hello from ann", "hi ann, bob here"} {
		a := servertest.Eval[[]string](ann, msgIDs(text))
		b := servertest.Eval[[]string](bob, msgIDs(text))
		if len(a) != 1 || len(b) != 1 || a[0] != b[0] {
			t.Fatalf("%q: ids on ann's page %v, on bob's %v; want the same single id", text, a, b)
		}
		want := "ann"
		if strings.HasPrefix(text, "hi") {
			want = "bob"
		}
		for _, page := range []*servertest.Browser{ann, bob} {
			from := servertest.Eval[string](page, `document.querySelector('#messages .msg[data-id="`+a[0]+`"] .from').textContent`)
			if from != want {
				t.Fatalf("%q shows from %q, want %q", text, from, want)
			}
		}
	}

	// A third connection of ann: her places go to 2 on bob's page, and back.
	annLi := fmt.Sprintf(`#user-list li[data-user-id="%d"] .places`, annID)
	tcp, id := tcpUser(t, s, "ann", "password-ann")
	if id != annID {
		t.Fatalf("tcp login as ann: id %d, the page says %d", id, annID)
	}
	start = time.Now()
	bob.Wait("ann's places 2 on bob's page", `document.querySelector('`+annLi+`')?.textContent === '2'`)
	placesUp := time.Since(start)
	tcp.Close()
	bob.Wait("ann's places back to 1", `document.querySelector('`+annLi+`')?.textContent === '1'`)

	for _, page := range []*servertest.Browser{ann, bob} {
		if !page.True(noDuplicateIDs) {
			t.Fatalf("a message id shows twice: %v", servertest.Eval[[]float64](page, shownIDs))
		}
	}

	// bob logs out: gone from ann's list once the presence grace has passed.
	start = time.Now()
	bob.Click("#logout")
	bob.Wait("bob's login form after logout", `!document.getElementById('login').hidden && document.getElementById('chat').hidden`)
	ann.Wait("bob gone from ann's online list", fmt.Sprintf(`!document.querySelector('#user-list li[data-user-id="%d"]')`, bobID))
	gone := time.Since(start)
	checkClean(t, ann, bob)
	t.Logf("two logins %v; ann->bob shown in %v; places 2 shown %v after the TCP login; logout->gone from the list in %v",
		loggedIn.Round(time.Millisecond), annToBob.Round(time.Millisecond), placesUp.Round(time.Millisecond), gone.Round(time.Millisecond))
}

// TestBrowserPrivateChat: ann opens bob from the online list and writes to
// him; bob's conversation list gets ann with an unread badge; the message
// shows in the private conversation only, never in the lobby.
func TestBrowserPrivateChat(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	bob := servertest.StartBrowser(t)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob.LoginUI(s.HTTPURL, "bob", "password-bob")
	annID, bobID := selfID(t, ann), selfID(t, bob)

	ann.Wait("bob in ann's online list", fmt.Sprintf(`document.querySelector('#user-list li[data-user-id="%d"]')`, bobID))
	ann.Click(fmt.Sprintf(`#user-list li[data-user-id="%d"]`, bobID))
	ann.Wait("the private conversation open", fmt.Sprintf(`document.getElementById('messages').dataset.conv === 'user:%d'`, bobID)+
		` && document.getElementById('conv-title').textContent === 'bob'`)
	const secret = "psst bob, just between us"
	start := time.Now()
	sendUI(t, ann, secret)

	conv := fmt.Sprintf(`#conv-list li[data-conv="user:%d"]`, annID)
	bob.Wait("ann's conversation in bob's list with 1 unread",
		`(() => { const u = document.querySelector('`+conv+` .unread'); return u && !u.hidden && u.textContent === '1'; })()`,
		`document.getElementById('conv-list').innerText`)
	arrived := time.Since(start)
	if servertest.Eval[string](bob, `document.getElementById('messages').dataset.conv`) != "room:lobby" {
		t.Fatal("bob's page left the lobby by itself")
	}
	if n := servertest.Eval[int](bob, msgCount(secret)); n != 0 {
		t.Fatalf("the private message shows %d times in bob's lobby", n)
	}

	bob.Click(conv)
	bob.Wait("the private message in bob's conversation with ann",
		fmt.Sprintf(`document.getElementById('messages').dataset.conv === 'user:%d'`, annID)+` && `+msgCount(secret)+` === 1`)
	if from := servertest.Eval[string](bob, `document.querySelector('#messages .msg[data-id] .from').textContent`); from != "ann" {
		t.Fatalf("the private message shows from %q", from)
	}
	bob.Wait("the unread badge cleared", `document.querySelector('`+conv+` .unread').hidden`)

	// Typing in a private conversation shows on the other side.
	ann.Type("#text", "typing")
	bob.Wait("ann typing on bob's page", `document.getElementById('typing').textContent.includes('ann')`,
		`document.getElementById('typing').textContent`)
	servertest.Eval[chromedp.Void](ann, `document.getElementById('text').value = ''`)

	// The lobby, on both pages and on the server, never has it.
	bob.Click(`#conv-list li[data-conv="room:lobby"]`)
	ann.Click(`#conv-list li[data-conv="room:lobby"]`)
	for _, page := range []*servertest.Browser{ann, bob} {
		page.Wait("the lobby open", `document.getElementById('messages').dataset.conv === 'room:lobby' && !document.querySelector('#messages .placeholder')?.textContent.startsWith('Loading')`)
		if n := servertest.Eval[int](page, msgCount(secret)); n != 0 {
			t.Fatalf("the private message shows %d times in the lobby", n)
		}
	}
	cat, _ := tcpUser(t, s, "cat", "password-cat")
	var lobby struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	cat.OK("im/load", map[string]any{"with": "room:lobby"}, &lobby)
	for _, m := range lobby.Messages {
		if m.Text == secret {
			t.Fatal("the private message is in the lobby's history")
		}
	}
	checkClean(t, ann, bob)
	t.Logf("private message shown as unread on bob's page %v after ann sent it; lobby history %d messages, none private",
		arrived.Round(time.Millisecond), len(lobby.Messages))
}

// TestBrowserHistoryAndReload: after 60 lobby messages, a reload keeps the
// session, shows the newest 50, and scrolling up loads the rest with no
// duplicates.
func TestBrowserHistoryAndReload(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 1000, 1000
	})
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob, _ := tcpUser(t, s, "bob", "password-bob")
	const total = 60
	ids := make([]int64, total)
	for i := range total {
		ids[i] = send(t, bob, "room:lobby", fmt.Sprintf("history %02d", i))
	}
	ann.Wait("every message on the open page", msgCount(fmt.Sprintf("history %02d", total-1))+` === 1`)

	// Record whether the reloaded page ever shows the login form.
	ann.OnNewDocument(`document.addEventListener('DOMContentLoaded', () => {
  const login = document.getElementById('login');
  window.loginShown = !login.hidden;
  new MutationObserver(() => { if (!login.hidden) window.loginShown = true; }).observe(login, {attributes: true});
});`)
	start := time.Now()
	ann.Reload()
	ann.WaitOnline("after the reload")
	reloaded := time.Since(start)
	if !ann.True(`window.loginShown === false && document.getElementById('me').textContent === 'ann'`) {
		t.Fatalf("the reload lost the session (login form shown: %v)", servertest.Eval[any](ann, `window.loginShown`))
	}
	ann.Wait("the newest page loaded", msgCount(fmt.Sprintf("history %02d", total-1))+` === 1`)
	shown := servertest.Eval[[]float64](ann, shownIDs)
	if len(shown) != 50 {
		t.Fatalf("after the reload %d messages show, want the newest 50", len(shown))
	}
	for i, id := range shown {
		if want := ids[total-50+i]; int64(id) != want {
			t.Fatalf("after the reload message %d is id %v, want %d (the newest 50 in order)", i, id, want)
		}
	}

	start = time.Now()
	servertest.Eval[chromedp.Void](ann, `document.getElementById('messages').scrollTop = 0`)
	ann.Wait("older messages after scrolling up", `document.querySelectorAll('#messages .msg[data-id]').length === `+fmt.Sprint(total),
		`document.querySelectorAll('#messages .msg[data-id]').length`)
	older := time.Since(start)
	if !ann.True(noDuplicateIDs) {
		t.Fatalf("a message shows twice: %v", servertest.Eval[[]float64](ann, shownIDs))
	}
	shown = servertest.Eval[[]float64](ann, shownIDs)
	for i, id := range shown {
		if int64(id) != ids[i] {
			t.Fatalf("after scrolling up message %d is id %v, want %d", i, id, ids[i])
		}
	}
	ann.Wait("the beginning of the conversation", `document.getElementById('older').textContent.includes('beginning')`)
	checkClean(t, ann)
	t.Logf("reload to online %v showing 50 of %d; scroll to top loaded the other %d in %v",
		reloaded.Round(time.Millisecond), total, total-50, older.Round(time.Millisecond))
}

// setOffline makes the page's new connections fail (or work again): the
// open ones stay as they are. Chromium releases differ in which command
// does it: newer ones take per-rule conditions
// (Network.emulateNetworkConditionsByRule with offline in a rule), older
// ones refuse those parameters and take the one global setting
// (Network.emulateNetworkConditions), so the first that is accepted is
// used.
func setOffline(t *testing.T, b *servertest.Browser, offline bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), servertest.BrowserTimeout)
	defer cancel()
	rules := []*network.Conditions{}
	if offline {
		rules = append(rules, &network.Conditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
	}
	_, byRule := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule,
		network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules})
	if byRule == nil {
		return
	}
	if _, err := chromedp.Call(ctx, emulateNetworkConditions, globalConditions{Offline: offline,
		DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
		t.Fatalf("network conditions: by rule: %v; globally: %v", byRule, err)
	}
}

// globalConditions are the parameters of Network.emulateNetworkConditions,
// the command older Chromium releases have (setOffline).
type globalConditions struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

var emulateNetworkConditions = cdp.Command[globalConditions, cdp.Empty]{Method: "Network.emulateNetworkConditions"}

// TestBrowserReconnectAfterRestart (X6): the server restarts on the same
// port and runtime folder while the page is open; messages are sent while
// the page is away; the page reconnects by itself, still logged in, and
// shows each of them once.
func TestBrowserReconnectAfterRestart(t *testing.T) {
	ann := servertest.StartBrowser(t)
	cfg := servertest.Config(t)
	cfg.Server.Port = servertest.FreePort(t) // fixed, so the restarted server is where the page is
	s := servertest.StartConfig(t, cfg, boot.Options{})
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob := s.DialTCP(t)
	sid := bob.Login("bob", "password-bob")
	send(t, bob, "room:lobby", "before the restart")
	ann.Wait("the message before the restart", msgCount("before the restart")+` === 1`)

	// The page cannot reconnect until the messages of the gap are stored:
	// new connections fail, and the restart closes the open one.
	setOffline(t, ann, true)
	start := time.Now()
	s.Close()
	ann.Wait("the page noticing the server went away",
		`document.getElementById('status').dataset.state !== 'open' && document.getElementById('status').textContent === 'reconnecting…'`)
	s2 := servertest.StartConfig(t, s.Config, boot.Options{})
	if s2.HTTPURL != s.HTTPURL {
		t.Fatalf("restarted on %s, the page is on %s", s2.HTTPURL, s.HTTPURL)
	}
	bob2 := s2.DialTCP(t)
	bob2.OK("im/resume", map[string]string{"sid": sid}, nil) // the session survived the restart
	var gap []string
	for i := range 5 {
		text := fmt.Sprintf("sent during the gap %d", i)
		send(t, bob2, "room:lobby", text)
		gap = append(gap, text)
	}
	if ann.True(`window.dceDebug.connected`) {
		t.Fatal("the page reconnected while offline: the gap is not a gap")
	}
	setOffline(t, ann, false)
	ann.WaitFor(30*time.Second, "the page online again after the restart",
		`document.getElementById('status').dataset.state === 'open' && document.getElementById('status').textContent === 'online'`)
	back := time.Since(start)
	if !ann.True(`document.getElementById('login').hidden && !document.getElementById('chat').hidden && document.getElementById('me').textContent === 'ann'`) {
		t.Fatal("after the restart the page is not logged in as ann")
	}
	for _, text := range append(gap, "before the restart") {
		ann.Wait("exactly once: "+text, msgCount(text)+` === 1`, msgCount(text))
	}
	if !ann.True(noDuplicateIDs) {
		t.Fatalf("a message shows twice: %v", servertest.Eval[[]float64](ann, shownIDs))
	}
	// And the page works on the new server: a message from it reaches bob.
	bob2.Drain()
	sendUI(t, ann, "ann is back")
	if _, ok := bob2.WaitMatch(browserWait, func(f servertest.Frame) bool {
		return f.Path == "im/message" && strings.Contains(string(f.Body), "ann is back")
	}); !ok {
		t.Fatal("ann's message after the restart did not reach bob")
	}
	checkClean(t, ann)
	t.Logf("server down -> page online again in %v; %d messages sent during the gap, each shown once", back.Round(time.Millisecond), len(gap))
}

// xssPayloads are X1's message texts.
var xssPayloads = []string{
	`<img src=x onerror=alert(1)>`,
	`<script>alert(1)</script>`,
	`<svg onload=alert(1)>`,
	`"><iframe src=javascript:alert(1)>`,
	`[x](javascript:alert(1))`,
	"right-to-left \u202Eevil.exe txt.\u202C done",
	strings.Repeat("W", 4000),
}

// TestBrowserXSS (X1, and X2 for nicknames and briefs): hostile texts,
// nicknames and briefs render as text: no dialog, no element from them,
// no sideways scrolling.
func TestBrowserXSS(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob, _ := tcpUser(t, s, "bob", "password-bob")
	for _, p := range xssPayloads {
		send(t, bob, "room:lobby", p)
	}

	// Hostile nicknames (those that fit 32 characters) and briefs.
	type hostile struct {
		nick, brief string
		id          int64
	}
	var users []hostile
	for i, p := range xssPayloads[:6] {
		nick := p
		if len([]rune(nick)) > 32 || strings.ContainsRune(nick, '\u202E') {
			nick = fmt.Sprintf("mallory%d", i)
		}
		c, id := tcpUser(t, s, nick, "password-evil")
		c.OK("im/profile", map[string]string{"brief": p}, nil)
		send(t, c, "room:lobby", "hello from "+nick)
		users = append(users, hostile{nick, p, id})
	}

	for _, p := range xssPayloads {
		ann.Wait("the payload shown as its exact text", msgCount(p)+` === 1`, msgCount(p))
	}
	for _, u := range users {
		li := fmt.Sprintf(`#user-list li[data-user-id="%d"]`, u.id)
		ann.Wait("hostile user in the online list as text",
			`document.querySelector('`+li+` .nickname')?.textContent === `+js(u.nick)+
				` && document.querySelector('`+li+` .brief')?.textContent === `+js(u.brief),
			`document.querySelector('`+li+`')?.innerHTML`)
		ann.Wait("hostile nickname as sender", msgCount("hello from "+u.nick)+` === 1`)
	}

	elements := servertest.Eval[int](ann, `document.querySelectorAll('#messages img, #messages script, #messages svg, #messages iframe, #messages object, #messages embed').length`)
	listElements := servertest.Eval[int](ann, `document.querySelectorAll('#user-list img, #user-list script, #user-list iframe, #conv-list img, #conv-list script, #conv-list iframe, #user-list svg, #conv-list svg').length`)
	onlyText := ann.True(`[...document.querySelectorAll('#messages .msg .text')].every((t) => [...t.childNodes].every((n) => n.nodeType === Node.TEXT_NODE))`)
	if elements != 0 || listElements != 0 || !onlyText {
		t.Fatalf("markup from users became elements: %d in #messages, %d in the lists, message texts only text nodes: %v",
			elements, listElements, onlyText)
	}
	if !ann.True(noOverflow) || !ann.True(`document.getElementById('messages').scrollWidth <= document.getElementById('messages').clientWidth`) {
		t.Fatalf("the page scrolls sideways: document %v > %v, #messages %v > %v",
			servertest.Eval[int](ann, `document.documentElement.scrollWidth`), servertest.Eval[int](ann, `document.documentElement.clientWidth`),
			servertest.Eval[int](ann, `document.getElementById('messages').scrollWidth`), servertest.Eval[int](ann, `document.getElementById('messages').clientWidth`))
	}
	if !ann.True(noDuplicateIDs) {
		t.Fatal("a message shows twice")
	}
	ann.Screenshot(filepath.Join(screenshotDir(t), "xss-desktop.png"))
	checkClean(t, ann)

	// The dialog detector works: a real alert is seen (and dismissed).
	servertest.Eval[chromedp.Void](ann, `setTimeout(() => alert('probe'), 0)`)
	servertest.Eventually(t, browserWait, "the probe alert seen", func() bool { return len(ann.Dialogs()) == 1 })
	t.Logf("%d hostile texts and %d hostile users rendered: 0 dialogs, 0 elements, no overflow (the probe alert was seen)",
		len(xssPayloads), len(users))
}

var (
	scriptTag      = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	eventAttribute = regexp.MustCompile(`(?i)<[^>]*\son[a-z]+\s*=[^>]*>`)
)

// cspDirectives parses a Content-Security-Policy header value.
func cspDirectives(header string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(header, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), " ")
		if name != "" {
			out[strings.ToLower(name)] = strings.TrimSpace(value)
		}
	}
	return out
}

// TestBrowserCSP (X3): the page's CSP header, and a whole session (login,
// send, private chat, profile, logout) with no CSP violation and no
// uncaught exception.
func TestBrowserCSP(t *testing.T) {
	s := servertest.Start(t)
	req, err := http.NewRequest(http.MethodGet, s.HTTPURL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := s.Do(t, req)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `id="login-form"`) {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	csp := cspDirectives(resp.Header.Get("Content-Security-Policy"))
	for name, want := range map[string]string{
		"default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "object-src": "'none'",
		"base-uri": "'none'", "frame-ancestors": "'none'", "form-action": "'self'", "connect-src": "'self'",
	} {
		if csp[name] != want {
			t.Errorf("CSP %s = %q, want %q (header %q)", name, csp[name], want, resp.Header.Get("Content-Security-Policy"))
		}
	}
	for _, tag := range scriptTag.FindAllString(string(body), -1) {
		if !strings.Contains(tag, " src=") {
			t.Errorf("the page has an inline script: %s", tag)
		}
	}
	if h := eventAttribute.FindString(string(body)); h != "" {
		t.Errorf("the page has an inline event handler: %s", h)
	}

	ann := servertest.StartBrowser(t)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob, bobID := tcpUser(t, s, "bob", "password-bob")
	sendUI(t, ann, "hello, policy")
	ann.Click(fmt.Sprintf(`#user-list li[data-user-id="%d"]`, bobID))
	ann.Wait("the private conversation open", fmt.Sprintf(`document.getElementById('messages').dataset.conv === 'user:%d'`, bobID))
	sendUI(t, ann, "hello bob, privately")
	bob.MustPush("im/message")

	// Clicking yourself in the online list opens the profile.
	annID := selfID(t, ann)
	ann.Click(fmt.Sprintf(`#user-list li[data-user-id="%d"]`, annID))
	ann.Wait("the profile dialog", `document.getElementById('profile-dialog').open`)
	ann.Screenshot(filepath.Join(screenshotDir(t), "profile-desktop.png"))
	ann.SetValue("#profile-brief", "likes strict policies")
	ann.Click("#profile-save")
	ann.Wait("the brief saved", `!document.getElementById('profile-dialog').open && document.querySelector('#user-list li[data-user-id="`+
		fmt.Sprint(annID)+`"] .brief').textContent === 'likes strict policies'`)
	ann.Click("#logout")
	ann.Wait("the login form after logout", `!document.getElementById('login').hidden`)

	checkClean(t, ann) // 0 CSP violations, 0 exceptions, 0 dialogs

	// The detectors work: an inline script is refused and reported, and an
	// uncaught exception is seen.
	servertest.Eval[chromedp.Void](ann, `(() => { const s = document.createElement('script'); s.textContent = 'window.inlineRan = 1'; document.body.append(s); })()`)
	servertest.Eventually(t, browserWait, "the probe's CSP violation reported", func() bool { return len(ann.CSPViolations()) > 0 })
	if ann.True(`window.inlineRan === 1`) {
		t.Fatal("an inline script ran despite the CSP")
	}
	servertest.Eval[chromedp.Void](ann, `setTimeout(() => { throw new Error('probe') }, 0)`)
	servertest.Eventually(t, browserWait, "the probe exception seen", func() bool { return len(ann.Exceptions()) == 1 })
	t.Logf("CSP header has the %d directives; a session of login, 2 sends, profile, logout: 0 violations, 0 exceptions (probes: %d violation reports)",
		len(csp), len(ann.CSPViolations()))
}

// TestBrowserLinks (X5): only http(s) URLs become links, opened in a new
// tab with noopener and noreferrer; other schemes stay text.
func TestBrowserLinks(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob, _ := tcpUser(t, s, "bob", "password-bob")
	const text = "see https://example.com/x and javascript:alert(1) and ftp://x"
	id := send(t, bob, "room:lobby", text)
	send(t, bob, "room:lobby", "javascript:alert(1)")
	send(t, bob, "room:lobby", "ftp://x")
	ann.Wait("the messages", msgCount(text)+` === 1 && `+msgCount("ftp://x")+` === 1 && `+msgCount("javascript:alert(1)")+` === 1`)

	type link struct {
		Href, Rel, Target, Text string
	}
	links := servertest.Eval[[]link](ann, `[...document.querySelectorAll('#messages a')].map((a) => ({Href: a.href, Rel: a.rel, Target: a.target, Text: a.textContent}))`)
	if len(links) != 1 {
		t.Fatalf("%d links in the messages, want only the https one: %+v", len(links), links)
	}
	l := links[0]
	rel := strings.Fields(l.Rel)
	if l.Href != "https://example.com/x" || l.Text != "https://example.com/x" || l.Target != "_blank" ||
		!containsAll(rel, "noopener", "noreferrer") {
		t.Fatalf("the link: %+v", l)
	}
	inMessage := servertest.Eval[int](ann, fmt.Sprintf(`document.querySelectorAll('#messages .msg[data-id="%d"] .text a').length`, id))
	if inMessage != 1 {
		t.Fatalf("the link is not in its message (%d there)", inMessage)
	}
	checkClean(t, ann)
	t.Logf("1 link (%s rel=%q target=%s); javascript: and ftp: stay text", l.Href, l.Rel, l.Target)
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, x := range list {
			found = found || x == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestBrowserPhone: at 390x844 the chat does not scroll sideways, the
// composer is on screen, and the side panel is a drawer.
func TestBrowserPhone(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	ann.Viewport(390, 844, true)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob, _ := tcpUser(t, s, "bob", "password-bob")
	send(t, bob, "room:lobby", "a long word for a small screen: "+strings.Repeat("x", 300))
	send(t, bob, "room:lobby", "and a link https://example.com/"+strings.Repeat("a", 200))
	ann.Wait("the messages", `document.querySelectorAll('#messages .msg[data-id]').length === 2`)
	sendUI(t, ann, "typed on a phone")

	if !ann.True(noOverflow) {
		t.Fatalf("the phone page scrolls sideways: %d > %d", servertest.Eval[int](ann, `document.documentElement.scrollWidth`),
			servertest.Eval[int](ann, `document.documentElement.clientWidth`))
	}
	type box struct{ Top, Bottom, Left, Right, Width, Height, VW, VH float64 }
	rect := func(id string) box {
		return servertest.Eval[box](ann, `(() => { const r = document.getElementById('`+id+`').getBoundingClientRect(); `+
			`return {Top: r.top, Bottom: r.bottom, Left: r.left, Right: r.right, Width: r.width, Height: r.height, VW: innerWidth, VH: innerHeight}; })()`)
	}
	for _, id := range []string{"composer", "text", "send"} {
		r := rect(id)
		if r.Width <= 0 || r.Height <= 0 || r.Top < 0 || r.Left < 0 || r.Bottom > r.VH || r.Right > r.VW {
			t.Fatalf("#%s is not fully on screen: %+v", id, r)
		}
	}
	if side := rect("side"); side.Right > 0 {
		t.Fatalf("the side panel is open on a phone: %+v", side)
	}
	shots := screenshotDir(t)
	ann.Screenshot(filepath.Join(shots, "phone-chat.png"))

	ann.Click("#drawer-toggle")
	ann.Wait("the drawer open", `document.getElementById('side').getBoundingClientRect().left >= 0 && document.getElementById('side').getBoundingClientRect().right > 0`)
	ann.Wait("the drawer's transition over", `(() => { const r = document.getElementById('side').getBoundingClientRect(); return r.left === 0; })()`)
	ann.Screenshot(filepath.Join(shots, "phone-drawer.png"))
	ann.Click(`#conv-list li[data-conv="room:lobby"]`)
	ann.Wait("the drawer closed after choosing a conversation", `!document.getElementById('chat').classList.contains('drawer-open')`)
	if !ann.True(noOverflow) {
		t.Fatal("the phone page scrolls sideways after the drawer")
	}
	checkClean(t, ann)
	t.Logf("390x844: no sideways scrolling, composer at %+v, drawer opens and closes; screenshots in %s", rect("composer"), shots)
}
