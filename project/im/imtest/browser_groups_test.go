package imtest

// Browser tests of groups: create with a first member picked by search,
// an invitation seen live, group chat like private chat, members and who
// is online, rename, remove, browse and join, leave; hostile names render
// as text.

import (
	"fmt"
	"strings"
	"testing"

	"dce/app/servertest"
)

// convLi is the CSS selector of conv's entry in the conversation list.
func convLi(conv string) string { return `#conv-list li[data-conv="` + conv + `"]` }

// TestBrowserGroups: ann creates a private group named with HTML, picking
// carl (online over TCP) from the user search; carl is told. ann invites
// bob from the group dialog and bob's page shows the group at once; they
// chat in it (unread count and last message in the sidebar, typing, read
// marks); the member list shows who is online; ann renames the group and
// bob sees the name; ann removes bob, whose open conversation closes with
// a notice.
func TestBrowserGroups(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t)
	bob := servertest.StartBrowser(t)
	carl, carlID := tcpUser(t, s, "carl", "password-carl")
	defer carl.Close()
	ann.LoginUI(s.HTTPURL, "ann", "password-ann")
	bob.LoginUI(s.HTTPURL, "bob", "password-bob")
	bobID := selfID(t, bob)
	ann.Wait("carl and bob online on ann's page", fmt.Sprintf(`document.querySelector('#user-list li[data-user-id="%d"]') && document.querySelector('#user-list li[data-user-id="%d"]')`, carlID, bobID))

	// Create, with carl picked from the search.
	hostile := `<img src=x onerror=alert(1)> ops`
	ann.Click("#groups-new")
	ann.Wait("the create dialog", `document.getElementById('group-create').open`)
	ann.SetValue("#group-name", hostile)
	servertest.Eval[bool](ann, `(() => { const e = document.getElementById('group-private'); e.checked = true; return true; })()`)
	ann.Type("#group-pick", "car")
	ann.Wait("carl found by the search, bob not", fmt.Sprintf(`document.querySelector('#group-pick-list li[data-user-id="%d"]') && !document.querySelector('#group-pick-list li[data-user-id="%d"]')`, carlID, bobID),
		`document.getElementById('group-pick-list').innerText`)
	ann.Click(fmt.Sprintf(`#group-pick-list li[data-user-id="%d"] input`, carlID))
	ann.Click("#group-create-save")
	ann.Wait("the group open on ann's page", `!document.getElementById('group-create').open && /^group:\d+$/.test(document.getElementById('messages').dataset.conv)`,
		`document.getElementById('group-create-error').textContent`)
	conv := servertest.Eval[string](ann, `document.getElementById('messages').dataset.conv`)
	if title := servertest.Eval[string](ann, `document.getElementById('conv-title').textContent`); title != "# "+hostile {
		t.Errorf("the group's title is %q", title)
	}
	var created struct {
		Event string `json:"event"`
		Group struct {
			ID      int64  `json:"id"`
			Name    string `json:"name"`
			Private bool   `json:"private"`
			Members int    `json:"members"`
		} `json:"group"`
	}
	carl.MustPush("im/group").Decode(t, &created)
	if created.Event != "created" || created.Group.Name != hostile || !created.Group.Private || created.Group.Members != 2 ||
		conv != fmt.Sprintf("group:%d", created.Group.ID) {
		t.Fatalf("carl was told %+v, want the private group %s with ann and carl", created, conv)
	}

	// Invite bob from the group dialog: his page shows the group live.
	ann.Click("#group-info")
	ann.Wait("the group dialog with ann and carl", `document.getElementById('group-dialog').open && document.querySelectorAll('#group-members li').length === 2`,
		`document.getElementById('group-members').innerText`)
	ann.Type("#group-invite", "bo")
	ann.Click(fmt.Sprintf(`#group-invite-list li[data-user-id="%d"] button`, bobID))
	ann.Wait("bob among the members", fmt.Sprintf(`document.querySelector('#group-members li[data-user-id="%d"]')`, bobID))
	ann.Wait("bob and carl shown online", fmt.Sprintf(`document.querySelector('#group-members li[data-user-id="%d"]').classList.contains('online') && `+
		`document.querySelector('#group-members li[data-user-id="%d"]').classList.contains('online')`, bobID, carlID))
	bob.Wait("the group in bob's sidebar, live", `document.querySelector('`+convLi(conv)+` .row-name')?.textContent === `+js("# "+hostile),
		`document.getElementById('conv-list').innerText`)
	shot(t, ann, "group-dialog.png")
	ann.Click("#group-dialog-close")

	// Chat: unread and last message on bob's page, then both ways.
	send(t, carl, conv, "hello group from carl")
	sendUI(t, ann, "hello group from ann")
	bob.Wait("two unread and ann's last message", `document.querySelector('`+convLi(conv)+` .unread')?.textContent === '2' && `+
		`document.querySelector('`+convLi(conv)+` .row-sub')?.textContent === 'ann: hello group from ann'`,
		`document.querySelector('`+convLi(conv)+`')?.innerText`)
	bob.Click(convLi(conv))
	bob.Wait("the group's messages on bob's page", msgCount("hello group from carl")+` === 1 && `+msgCount("hello group from ann")+` === 1`)
	bob.Wait("the unread count cleared", `document.querySelector('`+convLi(conv)+` .unread').hidden`)
	servertest.Eval[bool](bob, `(() => { const e = document.getElementById('text'); e.value = 'typ'; e.dispatchEvent(new Event('input')); return true; })()`)
	ann.Wait("bob typing in the group on ann's page", `document.getElementById('typing').textContent.includes('bob')`)
	servertest.Eval[bool](bob, `(() => { document.getElementById('text').value = ''; return true; })()`)
	sendUI(t, bob, "hello from bob")
	ann.Wait("bob's message on ann's page", msgCount("hello from bob")+` === 1`)
	shot(t, ann, "group-chat.png")

	// Rename: bob's page follows.
	ann.Click("#group-info")
	ann.Wait("the rename field for the owner", `!document.getElementById('group-rename-row').hidden`)
	ann.SetValue("#group-rename", "ops & <b>friends</b>")
	ann.Click("#group-rename-save")
	bob.Wait("the new name on bob's page", `document.getElementById('conv-title').textContent === '# ops & <b>friends</b>' && `+
		`document.querySelector('`+convLi(conv)+` .row-name').textContent === '# ops & <b>friends</b>'`,
		`document.getElementById('conv-title').textContent`)
	if bob.True(`!document.getElementById('group-rename-row').hidden && document.getElementById('group-dialog').open`) {
		t.Error("bob, not the owner, may rename")
	}

	// Remove bob: his open conversation closes with a notice.
	ann.Click(fmt.Sprintf(`#group-members li[data-user-id="%d"] button[data-action="remove"]`, bobID))
	ann.Wait("bob gone from the members", fmt.Sprintf(`!document.querySelector('#group-members li[data-user-id="%d"]')`, bobID))
	bob.Wait("bob back in the lobby with a notice", `document.getElementById('messages').dataset.conv === 'room:lobby' && !document.getElementById('notice').hidden && `+
		`document.getElementById('notice-text').textContent.includes('removed')`, `document.getElementById('notice-text').textContent`)
	bob.Wait("the group gone from bob's sidebar", `!document.querySelector('`+convLi(conv)+`')`)
	if n := servertest.Eval[int](bob, `document.querySelectorAll('#notice img, #conv-list img, #messages img, #group-members img').length`); n != 0 {
		t.Errorf("%d img elements: a group name became HTML", n)
	}
	checkClean(t, ann, bob)
}

// TestBrowserOpenGroups: an open group carl made is listed in bob's
// browser with its member count; bob joins it, reads its history, is in
// its member list, and leaves; the group is gone from his sidebar but
// still listed to join.
func TestBrowserOpenGroups(t *testing.T) {
	bob := servertest.StartBrowser(t)
	s := servertest.Start(t)
	carl, _ := tcpUser(t, s, "carl", "password-carl")
	defer carl.Close()
	var r struct {
		Group struct {
			ID int64 `json:"id"`
		} `json:"group"`
	}
	carl.OK("im/group/create", map[string]any{"name": "open house"}, &r)
	conv := fmt.Sprintf("group:%d", r.Group.ID)
	send(t, carl, conv, "history before bob joined")
	bob.LoginUI(s.HTTPURL, "bob", "password-bob")
	bobID := selfID(t, bob)
	if bob.True(`document.querySelector('` + convLi(conv) + `')`) {
		t.Fatal("an open group bob is not in shows in his conversations")
	}
	bob.Click("#groups-browse")
	li := fmt.Sprintf(`#group-browse-list li[data-group-id="%d"]`, r.Group.ID)
	bob.Wait("the open group listed", `document.querySelector('`+li+` .row-name')?.textContent === 'open house' && `+
		`document.querySelector('`+li+` .row-sub').textContent.includes('1 member')`, `document.getElementById('group-browse-list').innerText`)
	bob.Click(li + ` button[data-action="join"]`)
	bob.Wait("the group open with its history", `document.getElementById('messages').dataset.conv === `+js(conv)+` && `+msgCount("history before bob joined")+` === 1`)
	joined := carl.MustPush("im/group")
	if !strings.Contains(joined.String(), `"joined"`) {
		t.Errorf("carl was told %s, want joined", joined)
	}
	bob.Click("#group-info")
	bob.Wait("bob in the member list, no rename for him", fmt.Sprintf(`document.querySelector('#group-members li[data-user-id="%d"]') && document.getElementById('group-rename-row').hidden`, bobID))
	bob.Click("#group-leave")
	bob.Wait("the group left", `!document.getElementById('group-dialog').open && document.getElementById('messages').dataset.conv === 'room:lobby' && !document.querySelector('`+convLi(conv)+`')`)
	bob.Click("#groups-browse")
	bob.Wait("still listed, to join again", `document.querySelector('`+li+` button[data-action="join"]')`)
	checkClean(t, bob)
}
