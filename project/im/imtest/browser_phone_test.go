package imtest

// The new parts of the page on a phone: group dialogs, search in the
// drawer, the message menu; nothing scrolls sideways.

import (
	"strings"
	"testing"

	"dce/app/servertest"
)

// TestBrowserPhoneFeatures: at 390x844, in Chinese, with a long hostile
// group name: the create dialog, the group's conversation and its dialog,
// the search results in the drawer and the message menu all fit the
// screen, and the page never scrolls sideways.
func TestBrowserPhoneFeatures(t *testing.T) {
	ann := servertest.StartBrowserLang(t, "zh-CN,zh")
	s := servertest.Start(t)
	ann.Viewport(390, 844, true)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	fits := func(what string) {
		t.Helper()
		if !ann.True(noOverflow) {
			t.Errorf("%s: the page scrolls sideways: %d > %d", what, servertest.Eval[int](ann, `document.documentElement.scrollWidth`),
				servertest.Eval[int](ann, `document.documentElement.clientWidth`))
		}
	}
	inView := func(what, css string) {
		t.Helper()
		ann.Wait(what+" within the screen", `(() => { const e = document.querySelector(`+js(css)+`); if (!e) return false; const r = e.getBoundingClientRect(); `+
			`return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; })()`)
	}

	name := `<svg onload=alert(1)>` + strings.Repeat("长", 40)
	openDrawer := func() {
		t.Helper()
		ann.Click("#drawer-toggle")
		ann.Wait("the drawer open", `document.getElementById('chat').classList.contains('drawer-open') && document.getElementById('side').getBoundingClientRect().left === 0`)
	}
	openDrawer()
	ann.Click("#groups-new")
	ann.Wait("the create dialog", `document.getElementById('group-create').open`)
	inView("the create dialog", "#group-create")
	ann.SetValue("#group-name", name)
	ann.Click("#group-create-save")
	ann.Wait("the group open", `/^group:/.test(document.getElementById('messages').dataset.conv) && !document.getElementById('group-create').open`)
	fits("the group's conversation")
	sendUI(t, ann, "手机上的消息 "+strings.Repeat("x", 200))
	ann.Click("#group-info")
	ann.Wait("the group dialog", `document.getElementById('group-dialog').open && document.querySelectorAll('#group-members li').length === 1`)
	inView("the group dialog", "#group-dialog")
	fits("the group dialog")
	shot(t, ann, "phone-group-dialog.png")
	ann.Click("#group-dialog-close")

	id := servertest.Eval[[]string](ann, msgIDs("手机上的消息 "+strings.Repeat("x", 200)))[0]
	ann.Click(msgSel(id) + ` button[data-action="menu"]`)
	inView("the message menu", "#msg-menu")
	fits("the message menu")
	ann.Click(`#msg-menu button[data-menu="edit"]`)
	inView("the edit box", msgSel(id)+" .edit-box")
	fits("editing")
	shot(t, ann, "phone-edit.png")
	ann.Type(msgSel(id)+" .edit-box textarea", "\x1b") // Escape

	openDrawer()
	ann.SetValue("#search", "手机")
	ann.Type("#search", "\r")
	ann.Wait("the result in the drawer", `document.querySelectorAll('#search-results li').length === 1`)
	inView("the result", "#search-results li")
	fits("search")
	shot(t, ann, "phone-search.png")
	ann.Click("#search-results li button")
	ann.Wait("the drawer closed at the message", `!document.getElementById('chat').classList.contains('drawer-open') && document.querySelector('`+msgSel(id)+`.flash')`)
	fits("after the search")
	if ann.True(`document.querySelector('#conv-list svg, #messages svg, #conv-title svg, #group-dialog svg')`) {
		t.Error("the group name became an element")
	}
	checkClean(t, ann)
}
