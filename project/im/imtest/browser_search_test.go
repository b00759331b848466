package imtest

// Browser tests of search: results with the conversation, sender, time and
// the match marked as text; paging with "more"; a result opens its
// conversation around the message, scrolled to it and highlighted.

import (
	"fmt"
	"testing"

	"dce/app/servertest"
	"dce/common/config"
)

// TestBrowserSearch: bob's old lobby message (150 messages back, so not
// in the page the conversation opens with) is found by ann's search with
// the match marked and the hostile rest as text; clicking it opens the
// lobby scrolled to that message, highlighted. Chinese is found without
// word segmentation. 25 matches page 20 then 5 with "more". Searching
// within a private conversation finds only what is in it.
func TestBrowserSearch(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 10000, 10000 })
	bob, bobID := tcpUser(t, s, "bob", "password-bob")
	defer bob.Close()
	target := send(t, bob, "room:lobby", `the Needle is <b>here</b> <img src=x onerror=alert(1)>`)
	send(t, bob, "room:lobby", "我们明天在北京见面")
	for i := range 150 {
		send(t, bob, "room:lobby", fmt.Sprintf("filler %d", i))
	}
	for i := range 25 {
		send(t, bob, "room:lobby", fmt.Sprintf("paged match %d", i))
	}
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	if ann.True(fmt.Sprintf(`document.querySelector('%s')`, msgSel(fmt.Sprint(target)))) {
		t.Fatal("the target is already shown: the test would not test the jump")
	}

	ann.SetValue("#search", "needle")
	ann.Click("#search-form input") // focus
	ann.Type("#search", "\r")
	res := fmt.Sprintf(`#search-results button[data-id="%d"]`, target)
	ann.Wait("the result", `document.querySelector('`+res+`')`, `document.getElementById('search-results').innerText`, `document.getElementById('search-empty').textContent`)
	type result struct{ Conv, From, Time, Text, Mark string }
	r := servertest.Eval[result](ann, `(() => { const b = document.querySelector('`+res+`'); return {Conv: b.querySelector('.result-conv').textContent, `+
		`From: b.querySelector('.result-from').textContent, Time: b.querySelector('.result-time').textContent, Text: b.querySelector('.result-text').textContent, `+
		`Mark: [...b.querySelectorAll('mark')].map((m) => m.textContent).join('|')}; })()`)
	if r.Conv != "Lobby" || r.From != "bob" || r.Time == "" || r.Mark != "Needle" || r.Text != `the Needle is <b>here</b> <img src=x onerror=alert(1)>` {
		t.Errorf("the result shows %+v", r)
	}
	if n := servertest.Eval[int](ann, `document.querySelectorAll('#search-results b, #search-results img').length`); n != 0 {
		t.Errorf("%d elements from the message text in the results", n)
	}
	shot(t, ann, "search.png")

	ann.Click(res)
	sel := msgSel(fmt.Sprint(target))
	ann.Wait("the lobby open at the message, highlighted", `document.getElementById('messages').dataset.conv === 'room:lobby' && `+
		`document.querySelector('`+sel+`')?.classList.contains('flash')`)
	ann.Wait("the message in view", `(() => { const r = document.querySelector('`+sel+`').getBoundingClientRect(), `+
		`b = document.getElementById('messages').getBoundingClientRect(); return r.top >= b.top && r.bottom <= b.bottom; })()`)
	if ann.True(`document.querySelector('#messages img')`) {
		t.Error("the message's text became an element")
	}
	// Scrolling down pages forward to the newest.
	servertest.Eval[bool](ann, `(() => { const m = document.getElementById('messages'); m.scrollTop = m.scrollHeight; m.dispatchEvent(new Event('scroll')); return true; })()`)
	ann.WaitFor(2*browserWait, "paged forward to the newest", `(() => { const m = document.getElementById('messages'); m.scrollTop = m.scrollHeight; m.dispatchEvent(new Event('scroll')); `+
		`return `+msgCount("paged match 24")+` === 1; })()`)
	if !ann.True(noDuplicateIDs) {
		t.Error("a message shows twice after paging forward")
	}
	send(t, bob, "room:lobby", "new after the jump")
	ann.Wait("a new message appended", msgCount("new after the jump")+` === 1`)

	// Chinese, without word segmentation.
	ann.SetValue("#search", "北京")
	ann.Type("#search", "\r")
	ann.Wait("the Chinese result", `[...document.querySelectorAll('#search-results mark')].some((m) => m.textContent === '北京')`,
		`document.getElementById('search-results').innerText`)

	// Paging: 25 matches, 20 and then 5.
	ann.SetValue("#search", "paged match")
	ann.Type("#search", "\r")
	ann.Wait("the first page", `document.querySelectorAll('#search-results li').length === 20 && !document.getElementById('search-more').hidden`,
		`document.querySelectorAll('#search-results li').length`)
	ann.Click("#search-more")
	ann.Wait("all 25", `document.querySelectorAll('#search-results li').length === 25 && document.getElementById('search-more').hidden`,
		`document.querySelectorAll('#search-results li').length`)

	// Within one conversation.
	ann.Click("#search-close")
	ann.Wait("the conversations again", `document.getElementById('search-panel').hidden && !document.getElementById('side-scroll').hidden`)
	send(t, bob, fmt.Sprintf("user:%d", selfID(t, ann)), "a private paged match")
	ann.Click(fmt.Sprintf(`#user-list li[data-user-id="%d"]`, bobID))
	ann.Wait("the private chat", fmt.Sprintf(`document.getElementById('messages').dataset.conv === 'user:%d'`, bobID))
	ann.SetValue("#search", "paged match")
	ann.Type("#search", "\r")
	ann.Wait("results everywhere", `document.querySelectorAll('#search-results li').length === 20`)
	ann.Click("#search-here")
	ann.Wait("only the private one", `document.querySelectorAll('#search-results li').length === 1 && `+
		`document.querySelector('#search-results .result-conv').textContent === 'bob'`, `document.getElementById('search-results').innerText`)
	checkClean(t, ann)
}
