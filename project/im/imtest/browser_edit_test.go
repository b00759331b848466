package imtest

// Browser tests of editing and deleting: the menu on one's own messages
// (any message, delete only, for an admin), an edit in place and a
// deletion seen live on the other page, and both applied by im/sync on a
// page that was away.

import (
	"context"
	"fmt"
	"testing"

	"dce/app/boot"
	"dce/app/servertest"
)

// msgSel is the CSS selector of message id's element in #messages.
func msgSel(id string) string { return `#messages .msg[data-id="` + id + `"]` }

// menuAction opens the menu of message id on page b and clicks item
// (edit, delete, confirm-delete).
func menuAction(b *servertest.Browser, id string, items ...string) {
	b.Click(msgSel(id) + ` button[data-action="menu"]`)
	for _, item := range items {
		b.Click(`#msg-menu button[data-menu="` + item + `"]`)
	}
}

// TestBrowserEditDelete: ann edits one of her messages in place and
// deletes another; bob's page shows the edit (with its mark) and the
// deletion live. Bob's own message has no menu on ann's page. An edit to
// HTML renders as text.
func TestBrowserEditDelete(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	bob := servertest.StartBrowser(t)
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob.LoginUI(s.HTTPURL, "bob", "password-bob")
	sendUI(t, ann, "first version")
	sendUI(t, ann, "to be deleted")
	sendUI(t, bob, "bob's own")
	ann.Wait("bob's message on ann's page", msgCount("bob's own")+` === 1`)
	edited := servertest.Eval[[]string](ann, msgIDs("first version"))[0]
	deleted := servertest.Eval[[]string](ann, msgIDs("to be deleted"))[0]
	bobs := servertest.Eval[[]string](ann, msgIDs("bob's own"))[0]
	bob.Wait("ann's messages on bob's page", msgCount("first version")+` === 1 && `+msgCount("to be deleted")+` === 1`)
	if ann.True(`document.querySelector('` + msgSel(bobs) + ` button[data-action="menu"]')`) {
		t.Error("ann's page offers a menu on bob's message")
	}
	if bob.True(`document.querySelector('` + msgSel(edited) + ` button[data-action="menu"]')`) {
		t.Error("bob's page offers a menu on ann's message")
	}

	// Edit in place.
	menuAction(ann, edited, "edit")
	ann.Wait("the edit box", `document.querySelector('`+msgSel(edited)+` .edit-box textarea')?.value === 'first version'`)
	servertest.Eval[bool](ann, `(() => { const a = document.querySelector('`+msgSel(edited)+` .edit-box textarea'); a.value = ''; return true; })()`)
	ann.Type(msgSel(edited)+` .edit-box textarea`, "second version <img src=x onerror=alert(1)>\r")
	for _, page := range []*servertest.Browser{ann, bob} {
		page.Wait("the edit with its mark", `document.querySelector('`+msgSel(edited)+` .text')?.textContent === 'second version <img src=x onerror=alert(1)>' && `+
			`!!document.querySelector('`+msgSel(edited)+` .edited') && !document.querySelector('`+msgSel(edited)+` .edit-box')`,
			`document.querySelector('`+msgSel(edited)+`')?.innerText`)
	}

	// Delete, after the confirmation.
	menuAction(ann, deleted, "delete")
	if !ann.True(`document.querySelector('` + msgSel(deleted) + ` .text').textContent === 'to be deleted'`) {
		t.Fatal("the message went before the deletion was confirmed")
	}
	ann.Click(`#msg-menu button[data-menu="confirm-delete"]`)
	for _, page := range []*servertest.Browser{ann, bob} {
		page.Wait("message deleted", `document.querySelector('`+msgSel(deleted)+`').classList.contains('deleted') && `+
			`document.querySelector('`+msgSel(deleted)+` .text').textContent === 'message deleted' && `+
			`!document.querySelector('`+msgSel(deleted)+` button[data-action="menu"]')`)
	}
	if n := servertest.Eval[int](bob, `document.querySelectorAll('#messages img').length`); n != 0 {
		t.Errorf("%d img elements on bob's page: the edit became HTML", n)
	}
	checkClean(t, ann, bob)
}

// TestBrowserEditSync: bob's page is away (the server restarts while the
// page is offline) while ann edits one message and deletes another; back
// online, im/sync applies both, and bob's
// sync point has passed the deletion's seq. An admin's page offers delete
// (not edit) on anyone's message, and the deletion reaches bob.
func TestBrowserEditSync(t *testing.T) {
	bob := servertest.StartBrowser(t)
	cfg := servertest.Config(t)
	cfg.Server.Port = servertest.FreePort(t) // fixed, so the restarted server is where the page is
	s0 := servertest.StartConfig(t, cfg, boot.Options{})
	ann, _ := tcpUser(t, s0, "ann", "password-ann")
	one := send(t, ann, "room:lobby", "will change while bob is away")
	two := send(t, ann, "room:lobby", "will go while bob is away")
	three := send(t, ann, "room:lobby", "an admin removes this")
	bob.LoginUI(s0.HTTPURL, "bob", "password-bob")
	bob.Wait("ann's messages", msgCount("an admin removes this")+` === 1`)

	setOffline(t, bob, true)
	ann.Close()
	s0.Close()
	bob.Wait("the page offline", `!window.dceDebug.connected`)
	s := servertest.StartConfig(t, s0.Config, boot.Options{})
	ann, _ = tcpUser(t, s, "ann", "password-ann")
	defer ann.Close()
	var r struct {
		Message struct {
			Seq int64 `json:"seq"`
		} `json:"message"`
	}
	ann.OK("im/edit", map[string]any{"id": one, "text": "changed while bob was away"}, &r)
	ann.OK("im/delete", map[string]any{"id": two}, nil)
	var sync struct {
		Seq int64 `json:"seq"`
	}
	ann.OK("im/sync", map[string]any{"since": r.Message.Seq}, &sync)
	setOffline(t, bob, false)
	bob.WaitOnline("after being away")
	bob.Wait("the edit applied by im/sync", fmt.Sprintf(`document.querySelector('%s .text').textContent === 'changed while bob was away' && !!document.querySelector('%s .edited')`,
		msgSel(fmt.Sprint(one)), msgSel(fmt.Sprint(one))))
	bob.Wait("the deletion applied by im/sync", fmt.Sprintf(`document.querySelector('%s').classList.contains('deleted')`, msgSel(fmt.Sprint(two))))
	if seq := servertest.Eval[int64](bob, `window.dceDebug.lastSeq`); seq < sync.Seq {
		t.Errorf("bob's sync point %d is before the deletion's seq %d", seq, sync.Seq)
	}

	// An admin: delete only, on anyone's message.
	root, rootID := tcpUser(t, s, "root", "password-root")
	root.Close()
	if err := s.Server.Store.SetAdmin(context.Background(), rootID, true); err != nil {
		t.Fatal(err)
	}
	admin := servertest.StartBrowser(t)
	admin.LoginUI(s.HTTPURL, "root", "password-root")
	admin.Wait("ann's message with a menu", msgCount("an admin removes this")+` === 1 && document.querySelector('`+msgSel(fmt.Sprint(three))+` button[data-action="menu"]')`,
		`document.getElementById('me').textContent`, `document.querySelector('#user-list li.self')?.innerText`)
	menuAction(admin, fmt.Sprint(three))
	if admin.True(`document.querySelector('#msg-menu button[data-menu="edit"]')`) {
		t.Error("an admin's page offers to edit someone else's message")
	}
	admin.Click(`#msg-menu button[data-menu="delete"]`)
	admin.Click(`#msg-menu button[data-menu="confirm-delete"]`)
	bob.Wait("the admin's deletion on bob's page", fmt.Sprintf(`document.querySelector('%s').classList.contains('deleted')`, msgSel(fmt.Sprint(three))))
	checkClean(t, bob, admin)
}
