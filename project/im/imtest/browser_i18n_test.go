package imtest

// Browser tests of the page's languages: chosen from the browser's
// languages, switched and remembered, dates by Intl, server errors shown
// by their code in the page's language.

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"dce/app/servertest"

	"github.com/chromedp/chromedp"
)

// shot saves a screenshot of b as name in DCE_SCREENSHOTS, when it is set.
func shot(t *testing.T, b *servertest.Browser, name string) {
	t.Helper()
	if os.Getenv("DCE_SCREENSHOTS") == "" {
		return
	}
	b.Screenshot(filepath.Join(screenshotDir(t), name))
}

// pickLanguage chooses code in the language switch select (by its id), as
// a user does.
func pickLanguage(b *servertest.Browser, id, code string) {
	servertest.Eval[chromedp.Void](b, `(() => { const s = document.getElementById(`+js(id)+`); s.value = `+js(code)+
		`; s.dispatchEvent(new Event('change', {bubbles: true})); })()`)
}

// TestBrowserChinese: a browser whose language is Chinese gets the page in
// Chinese from the first screen: the login form, a server error (a wrong
// password, shown by its code auth_failed), the chat, today's date label
// and times by Intl in zh-CN; on a phone it does not scroll sideways.
func TestBrowserChinese(t *testing.T) {
	ann := servertest.StartBrowserLang(t, "zh-CN,zh")
	s := servertest.Start(t)
	bob, _ := tcpUser(t, s, "bob", "password-bob")
	defer bob.Close()

	ann.Navigate(s.HTTPURL + "/")
	ann.Wait("the login form in Chinese", `!document.getElementById('login').hidden && document.getElementById('login-submit').textContent === '登录'`,
		`document.getElementById('login-submit').textContent`, `navigator.languages`)
	if got := servertest.Eval[string](ann, `document.documentElement.lang`); got != "zh-CN" {
		t.Errorf("<html lang> = %q, want zh-CN", got)
	}
	if got := servertest.Eval[string](ann, `document.getElementById('login-lang').value`); got != "zh" {
		t.Errorf("the language switch shows %q, want zh", got)
	}
	// A server error, by its code: bob exists, the password is wrong.
	ann.SetValue("#nickname", "bob")
	ann.SetValue("#password", "not-bobs-password")
	ann.Click("#login-submit")
	ann.Wait("the wrong password, in Chinese", `document.getElementById('login-error').textContent === '密码错误。'`,
		`document.getElementById('login-error').textContent`)

	ann.SetValue("#nickname", "ann")
	ann.SetValue("#password", "password-ann")
	ann.Click("#login-submit")
	ann.WaitOnline("in Chinese")
	ann.Wait("the chat in Chinese", `document.getElementById('status').textContent === '在线' && document.getElementById('conv-title').textContent === '大厅'`,
		`document.getElementById('status').textContent`, `document.getElementById('conv-title').textContent`)

	send(t, bob, "room:lobby", "你好，ann！<img src=x onerror=alert(1)>")
	ann.Wait("bob's message", msgCount("你好，ann！<img src=x onerror=alert(1)>")+` === 1`)
	sendUI(t, ann, "你好 bob")
	if got := servertest.Eval[string](ann, `document.querySelector('#messages .day span').textContent`); got != "今天" {
		t.Errorf("the day separator says %q, want 今天", got)
	}
	want := servertest.Eval[string](ann, `(() => { const m = document.querySelector('#messages .msg[data-id] time'); `+
		`return new Intl.DateTimeFormat('zh-CN', {hour: 'numeric', minute: '2-digit'}).format(new Date(m.dateTime)); })()`)
	if got := servertest.Eval[string](ann, `document.querySelector('#messages .msg[data-id] time').textContent`); got != want {
		t.Errorf("a message's time shows %q, want zh-CN's %q", got, want)
	}
	if sub := servertest.Eval[string](ann, `document.getElementById('conv-sub').textContent`); sub != "2 人在线" {
		t.Errorf("the lobby's header says %q, want 2 人在线", sub)
	}
	if ann.True(`document.querySelector('#messages img')`) {
		t.Error("a message's text became an element")
	}
	shot(t, ann, "zh-chat.png")

	ann.Viewport(390, 844, true)
	ann.Wait("the phone layout", `innerWidth === 390`)
	if !ann.True(noOverflow) {
		t.Errorf("the Chinese page scrolls sideways on a phone: %d > %d", servertest.Eval[int](ann, `document.documentElement.scrollWidth`),
			servertest.Eval[int](ann, `document.documentElement.clientWidth`))
	}
	shot(t, ann, "zh-phone.png")
	checkClean(t, ann)
}

// TestBrowserLanguageSwitch: an English browser switches to Chinese on the
// login screen, the choice holds after logging in and across a reload,
// and switching back to English in the chat holds across a reload too.
func TestBrowserLanguageSwitch(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	ann.Navigate(s.HTTPURL + "/")
	ann.Wait("the login form in English", `!document.getElementById('login').hidden && document.getElementById('login-submit').textContent === 'Log in'`,
		`document.getElementById('login-submit').textContent`)
	pickLanguage(ann, "login-lang", "zh")
	ann.Wait("the login form in Chinese", `document.getElementById('login-submit').textContent === '登录' && document.documentElement.lang === 'zh-CN'`)

	ann.SetValue("#nickname", "ann")
	ann.SetValue("#password", "password-ann")
	ann.Click("#login-submit")
	ann.WaitOnline("after switching to Chinese")
	ann.Wait("the chat in Chinese", `document.getElementById('status').textContent === '在线' && document.getElementById('lang').value === 'zh'`)

	ann.Reload()
	ann.WaitOnline("after a reload")
	ann.Wait("still Chinese after a reload", `document.getElementById('status').textContent === '在线' && document.getElementById('conv-title').textContent === '大厅'`,
		`document.getElementById('status').textContent`)

	pickLanguage(ann, "lang", "en")
	ann.Wait("English again", `document.getElementById('status').textContent === 'online' && document.getElementById('conv-title').textContent === 'Lobby'`+
		` && document.getElementById('text').placeholder === 'Write a message…'`)
	ann.Reload()
	ann.WaitOnline("after the second reload")
	ann.Wait("still English after a reload", `document.getElementById('conv-title').textContent === 'Lobby' && document.documentElement.lang === 'en'`)
	checkClean(t, ann)
}

// TestBrowserLanguageFiles: every key of the reference language (en.js)
// is in every other language file, and no file has a key en.js lacks.
func TestBrowserLanguageFiles(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	ann.Navigate(s.HTTPURL + "/")
	ann.Wait("the page", `document.getElementById('login-lang')?.options.length > 1`)
	type diff struct{ Lang, Missing, Extra []string }
	got := servertest.Eval[[]diff](ann, `(async () => {
	  const base = new URL('js/i18n/', document.querySelector('script[type=module]').src);
	  const en = (await import(new URL('en.js', base))).default;
	  const plural = (k) => k.replace(/\.(zero|one|two|few|many|other)$/, '.other');
	  const keys = (d) => new Set(Object.keys(d).map(plural));
	  const out = [];
	  for (const o of document.getElementById('login-lang').options) {
	    const d = (await import(new URL(o.value + '.js', base))).default;
	    const a = keys(en), b = keys(d);
	    out.push({Lang: [o.value], Missing: [...a].filter((k) => !b.has(k)), Extra: [...b].filter((k) => !a.has(k))});
	  }
	  return out;
	})()`)
	if len(got) < 2 {
		t.Fatalf("the switch offers %d languages, want English and Chinese at least", len(got))
	}
	for _, d := range got {
		if len(d.Missing) > 0 || len(d.Extra) > 0 {
			t.Errorf("language %v: missing %v, not in en.js %v", d.Lang, d.Missing, d.Extra)
		}
	}
	t.Log(fmt.Sprintf("%d languages checked", len(got)))
}
