package imtest

// Groups end to end (PROTOCOL.md sections 3 and 5): the im/group/* nodes,
// their pushes to every connection of every member, and group
// conversations over every transport.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
	"dce/common/config"
	"dce/common/model"
)

// groupEventBody is an im/group push.
type groupEventBody struct {
	Event string      `json:"event"`
	Group model.Group `json:"group"`
	User  *model.User `json:"user"`
}

// groupLogin logs c in as nickname and returns the user id.
func groupLogin(t *testing.T, c *servertest.Client, nickname string) int64 {
	t.Helper()
	var r struct {
		User model.User `json:"user"`
	}
	c.OK("im/login", map[string]string{"nickname": nickname, "password": "password-" + nickname}, &r)
	return r.User.ID
}

// createGroup creates a group from c and returns it.
func createGroup(t *testing.T, c *servertest.Client, name string, private bool, members ...int64) model.Group {
	t.Helper()
	var r struct {
		Group model.Group `json:"group"`
	}
	c.OK("im/group/create", map[string]any{"name": name, "private": private, "members": members}, &r)
	return r.Group
}

// wantCode sends a request and fails unless its reply is the error code.
func wantCode(t *testing.T, c *servertest.Client, code, path string, body any) {
	t.Helper()
	if f := c.Request(path, body); f.ErrorCode() != code {
		t.Fatalf("%s %v: %s, want %s", path, body, f, code)
	}
}

// groupPush waits for c's next im/group push and checks its event, group
// and user (about 0: no user).
func groupPush(t *testing.T, c *servertest.Client, event string, group int64, about int64) groupEventBody {
	t.Helper()
	var e groupEventBody
	c.MustPush("im/group").Decode(t, &e)
	if e.Event != event || e.Group.ID != group || (about == 0) != (e.User == nil) || (e.User != nil && e.User.ID != about) {
		t.Fatalf("push: %+v (user %+v), want %s of group %d about %d", e, e.User, event, group, about)
	}
	return e
}

// noPush fails if c receives a frame on path within wait.
func noPush(t *testing.T, c *servertest.Client, path string, wait time.Duration) {
	t.Helper()
	if f, ok := c.WaitPush(path, wait); ok {
		t.Fatalf("got %s, want no %s", f, path)
	}
}

func groupList(t *testing.T, c *servertest.Client) []model.ListedGroup {
	t.Helper()
	var r struct {
		Groups []model.ListedGroup `json:"groups"`
	}
	c.OK("im/group/list", nil, &r)
	return r.Groups
}

func groupIDs(groups []model.ListedGroup) []int64 {
	var list []int64
	for _, g := range groups {
		list = append(list, g.ID)
	}
	return list
}

func groupMembers(t *testing.T, c *servertest.Client, id int64) []model.Online {
	t.Helper()
	var r struct {
		Users []model.Online `json:"users"`
	}
	c.OK("im/group/members", map[string]int64{"id": id}, &r)
	return r.Users
}

// TestGroupLifecycle: create with members, list, join, invite, members
// with places, leave, remove, rename, the owner leaving, the last member
// leaving, and who may do each.
func TestGroupLifecycle(t *testing.T) {
	s := servertest.Start(t)
	ann, bob, cat, dan := s.DialWS(t, "", nil), s.DialTCP(t), s.DialUDP(t), s.DialTCP(t)
	annID, bobID, catID, danID := groupLogin(t, ann, "ann"), groupLogin(t, bob, "bob"), groupLogin(t, cat, "cat"), groupLogin(t, dan, "dan")
	ann2 := s.DialTCP(t) // ann's second place
	groupLogin(t, ann2, "ann")

	// Create, with bob as a member at once.
	ops := createGroup(t, ann, "  ops  ", false, bobID, bobID, annID)
	if ops.ID == 0 || ops.Name != "ops" || ops.Owner != annID || ops.Private || ops.Members != 2 {
		t.Fatalf("create: %+v", ops)
	}
	groupPush(t, bob, "created", ops.ID, annID)
	groupPush(t, ann2, "created", ops.ID, annID)
	noPush(t, ann, "im/group", 100*time.Millisecond) // the creating connection has the reply
	noPush(t, cat, "im/group", 0)
	secret := createGroup(t, bob, "secret", true)
	noPush(t, bob, "im/group", 100*time.Millisecond) // bob's only place made it
	if !slices.Equal(groupIDs(groupList(t, cat)), []int64{ops.ID}) {
		t.Fatalf("cat's list: %v, want only the open group %d", groupList(t, cat), ops.ID)
	}
	if !slices.Equal(groupIDs(groupList(t, bob)), []int64{ops.ID, secret.ID}) {
		t.Fatalf("bob's list: %v", groupList(t, bob))
	}
	// The list says whose groups they are: cat is in none of them.
	if l := groupList(t, cat); len(l) != 1 || l[0].Member {
		t.Fatalf("cat's list: %+v, want the open group with member false", l)
	}
	if l := groupList(t, bob); len(l) != 2 || !l[0].Member || !l[1].Member {
		t.Fatalf("bob's list: %+v, want both with member true", l)
	}

	// Members, with places: ann holds two, bob one, in join order.
	members := groupMembers(t, cat, ops.ID) // open: anyone may look
	if len(members) != 2 || members[0].ID != annID || members[0].Places != 2 || members[1].ID != bobID || members[1].Places != 1 {
		t.Fatalf("members: %+v", members)
	}
	wantCode(t, cat, "forbidden", "im/group/members", map[string]int64{"id": secret.ID})
	wantCode(t, cat, "forbidden", "im/group/join", map[string]int64{"id": secret.ID})
	wantCode(t, cat, "not_found", "im/group/join", map[string]int64{"id": 999})

	// Join an open group: everyone in it hears, the joiner's other places too.
	var joined struct {
		Group model.Group `json:"group"`
	}
	cat.OK("im/group/join", map[string]int64{"id": ops.ID}, &joined)
	if joined.Group.Members != 3 {
		t.Fatalf("join: %+v", joined.Group)
	}
	for _, c := range []*servertest.Client{ann, ann2, bob} {
		groupPush(t, c, "joined", ops.ID, catID)
	}
	cat.OK("im/group/join", map[string]int64{"id": ops.ID}, nil) // again: success, no push
	noPush(t, bob, "im/group", 150*time.Millisecond)

	// Invite: any member, into a private group too; the invited hear it.
	bob.OK("im/group/invite", map[string]int64{"id": secret.ID, "user": danID}, nil)
	e := groupPush(t, dan, "invited", secret.ID, danID)
	if e.Group.Members != 2 || !e.Group.Private {
		t.Fatalf("invited: %+v", e.Group)
	}
	dan.OK("im/group/invite", map[string]int64{"id": secret.ID, "user": catID}, nil) // a plain member invites
	groupPush(t, bob, "invited", secret.ID, catID)
	groupPush(t, cat, "invited", secret.ID, catID)
	noPush(t, dan, "im/group", 100*time.Millisecond)
	wantCode(t, ann, "forbidden", "im/group/invite", map[string]int64{"id": secret.ID, "user": annID})
	wantCode(t, ann, "not_found", "im/group/invite", map[string]int64{"id": ops.ID, "user": 4242})
	bob.OK("im/group/invite", map[string]int64{"id": secret.ID, "user": catID}, nil) // already a member
	noPush(t, cat, "im/group", 100*time.Millisecond)

	// Rename and remove: the owner only.
	wantCode(t, bob, "forbidden", "im/group/rename", map[string]any{"id": ops.ID, "name": "mine"})
	wantCode(t, bob, "forbidden", "im/group/remove", map[string]int64{"id": ops.ID, "user": catID})
	var renamed struct {
		Group model.Group `json:"group"`
	}
	ann.OK("im/group/rename", map[string]any{"id": ops.ID, "name": "ops team"}, &renamed)
	if renamed.Group.Name != "ops team" {
		t.Fatalf("rename: %+v", renamed.Group)
	}
	for _, c := range []*servertest.Client{ann2, bob, cat} {
		if e := groupPush(t, c, "renamed", ops.ID, 0); e.Group.Name != "ops team" {
			t.Fatalf("renamed push: %+v", e.Group)
		}
	}
	wantCode(t, ann, "bad_request", "im/group/remove", map[string]int64{"id": ops.ID, "user": annID})
	wantCode(t, ann, "not_found", "im/group/remove", map[string]int64{"id": ops.ID, "user": danID})
	ann.OK("im/group/remove", map[string]int64{"id": ops.ID, "user": catID}, nil)
	for _, c := range []*servertest.Client{ann2, bob, cat} { // the removed member hears it too
		if e := groupPush(t, c, "removed", ops.ID, catID); e.Group.Members != 2 {
			t.Fatalf("removed push: %+v", e.Group)
		}
	}

	// Leave; the owner leaving passes ownership to the earliest joined.
	cat.OK("im/group/leave", map[string]int64{"id": secret.ID}, nil)
	groupPush(t, bob, "left", secret.ID, catID)
	groupPush(t, dan, "left", secret.ID, catID)
	wantCode(t, cat, "forbidden", "im/group/members", map[string]int64{"id": secret.ID})
	bob.OK("im/group/leave", map[string]int64{"id": secret.ID}, nil)
	if e := groupPush(t, dan, "left", secret.ID, bobID); e.Group.Owner != danID || e.Group.Members != 1 {
		t.Fatalf("owner left: %+v, want dan (%d) the owner", e.Group, danID)
	}
	dan.OK("im/group/rename", map[string]any{"id": secret.ID, "name": "dan's"}, nil) // dan owns it now

	// The last member leaving dissolves the group.
	dan.OK("im/group/leave", map[string]int64{"id": secret.ID}, nil)
	for i, c := range []*servertest.Client{ann, bob, cat, dan} {
		if slices.Contains(groupIDs(groupList(t, c)), secret.ID) {
			t.Fatalf("user %d still lists the dissolved group", i)
		}
		wantCode(t, c, "not_found", "im/group/members", map[string]int64{"id": secret.ID})
		wantCode(t, c, "not_found", "im/send", map[string]string{"to": fmt.Sprint("group:", secret.ID), "text": "hi"})
	}
	wantCode(t, dan, "not_found", "im/group/join", map[string]int64{"id": secret.ID})
}

// groupMessage is the part of an im/message push the group tests check.
type groupMessage struct {
	ID   int64      `json:"id"`
	Seq  int64      `json:"seq"`
	Conv string     `json:"conv"`
	From model.User `json:"from"`
	To   string     `json:"to"`
	Text string     `json:"text"`
}

// TestGroupPushesEveryConnection: every im/group push reaches every
// connection of every member, the affected user's included, but the
// connection that caused it; a removed or departed member's connections
// (WebSocket and TCP) get none of the group's later messages, at once.
func TestGroupPushesEveryConnection(t *testing.T) {
	s := servertest.Start(t)
	annWS, annTCP := s.DialWS(t, "", nil), s.DialTCP(t)
	bobWS, bobTCP, bobUDP := s.DialWS(t, "", nil), s.DialTCP(t), s.DialUDP(t)
	catWS, catTCP := s.DialWS(t, "", nil), s.DialTCP(t)
	annID := groupLogin(t, annWS, "ann")
	groupLogin(t, annTCP, "ann")
	bobID := groupLogin(t, bobWS, "bob")
	groupLogin(t, bobTCP, "bob")
	groupLogin(t, bobUDP, "bob")
	catID := groupLogin(t, catWS, "cat")
	groupLogin(t, catTCP, "cat")
	everyone := []*servertest.Client{annWS, annTCP, bobWS, bobTCP, bobUDP, catWS, catTCP}
	except := func(c *servertest.Client) []*servertest.Client {
		return slices.DeleteFunc(slices.Clone(everyone), func(o *servertest.Client) bool { return o == c })
	}

	g := createGroup(t, annTCP, "ops", true, bobID)
	for _, c := range []*servertest.Client{annWS, bobWS, bobTCP, bobUDP} {
		groupPush(t, c, "created", g.ID, annID)
	}
	bobUDP.OK("im/group/invite", map[string]int64{"id": g.ID, "user": catID}, nil)
	for _, c := range except(bobUDP) {
		groupPush(t, c, "invited", g.ID, catID)
	}
	conv := fmt.Sprint("group:", g.ID)
	var sent struct {
		ID   int64  `json:"id"`
		Conv string `json:"conv"`
	}
	catWS.OK("im/send", map[string]string{"to": conv, "text": "hello group"}, &sent)
	if sent.Conv != conv {
		t.Fatalf("send reply: %+v", sent)
	}
	for _, c := range except(catWS) { // the sender's other connection included
		var m groupMessage
		c.MustPush("im/message").Decode(t, &m)
		if m.ID != sent.ID || m.Conv != conv || m.To != conv || m.From.ID != catID || m.Text != "hello group" {
			t.Fatalf("group message push: %+v", m)
		}
	}
	noPush(t, catWS, "im/message", 100*time.Millisecond)

	// Removed: cat's two connections hear of it, then nothing of the group.
	annWS.OK("im/group/remove", map[string]int64{"id": g.ID, "user": catID}, nil)
	for _, c := range except(annWS) {
		groupPush(t, c, "removed", g.ID, catID)
	}
	annWS.OK("im/send", map[string]string{"to": conv, "text": "after cat"}, nil)
	for _, c := range []*servertest.Client{annTCP, bobWS, bobTCP, bobUDP} {
		c.MustPush("im/message")
	}
	bobTCP.Fire("im/typing", map[string]string{"to": conv})
	annWS.MustPush("im/typing")
	for _, c := range []*servertest.Client{catWS, catTCP} {
		noPush(t, c, "im/message", 200*time.Millisecond)
		noPush(t, c, "im/typing", 0)
		wantCode(t, c, "forbidden", "im/send", map[string]string{"to": conv, "text": "let me in"})
		wantCode(t, c, "forbidden", "im/load", map[string]string{"with": conv})
	}

	// Left: bob's three connections hear it (but the one that asked), then nothing.
	bobUDP.OK("im/group/leave", map[string]int64{"id": g.ID}, nil)
	for _, c := range []*servertest.Client{annWS, annTCP, bobWS, bobTCP} {
		groupPush(t, c, "left", g.ID, bobID)
	}
	annTCP.OK("im/send", map[string]string{"to": conv, "text": "after bob"}, nil)
	annWS.MustPush("im/message")
	for _, c := range []*servertest.Client{bobWS, bobTCP, bobUDP} {
		noPush(t, c, "im/message", 200*time.Millisecond)
	}
	for _, c := range everyone {
		noPush(t, c, "im/group", 0)
	}
}

// TestGroupConversation: send, typing, read, load (paging), sync,
// conversations and unread counts in a group, over WebSocket, TCP, UDP
// and HTTP; a non-member is refused by each node, and a private group
// does not show for one at all.
func TestGroupConversation(t *testing.T) {
	s := servertest.Start(t)
	ann, bob, bob2, eve := s.DialWS(t, "", nil), s.DialTCP(t), s.DialUDP(t), s.DialTCP(t)
	annID := groupLogin(t, ann, "ann")
	bobID := groupLogin(t, bob, "bob")
	bobSID := bob2.Login("bob", "password-bob")
	groupLogin(t, eve, "eve")
	g := createGroup(t, ann, "ops", true, bobID)
	conv := fmt.Sprint("group:", g.ID)
	bob.MustPush("im/group")
	bob2.MustPush("im/group")

	var ids []int64
	for i := range 7 {
		from := ann
		if i%2 == 1 {
			from = bob
		}
		ids = append(ids, send(t, from, conv, fmt.Sprint("message ", i)))
	}
	resp, body := s.Post(t, "im/send", map[string]string{"to": conv, "text": "over http"}, "Authorization", "Bearer "+bobSID)
	if resp.StatusCode != 200 {
		t.Fatalf("http send: %d %s", resp.StatusCode, body)
	}
	var httpSent struct {
		ID int64 `json:"id"`
	}
	json.Unmarshal(body, &httpSent)
	ids = append(ids, httpSent.ID)

	// Typing reaches the other members, not the typist's own connections.
	ann.Fire("im/typing", map[string]string{"to": conv})
	for _, c := range []*servertest.Client{bob, bob2} {
		var typing struct {
			From model.User `json:"from"`
			Conv string     `json:"conv"`
		}
		c.MustPush("im/typing").Decode(t, &typing)
		if typing.From.ID != annID || typing.Conv != conv {
			t.Fatalf("typing: %+v", typing)
		}
	}
	noPush(t, ann, "im/typing", 100*time.Millisecond)

	// Load, paged.
	var page struct {
		Messages []groupMessage `json:"messages"`
		More     bool           `json:"more"`
	}
	bob2.OK("im/load", map[string]any{"with": conv, "limit": 3}, &page)
	if len(page.Messages) != 3 || !page.More || page.Messages[2].ID != ids[7] || page.Messages[0].Conv != conv {
		t.Fatalf("newest 3: %+v", page)
	}
	bob2.OK("im/load", map[string]any{"with": conv, "before": page.Messages[0].ID, "limit": 10}, &page)
	if len(page.Messages) != 5 || page.More || page.Messages[0].ID != ids[0] {
		t.Fatalf("older: %+v", page)
	}
	bob2.OK("im/load", map[string]any{"with": conv, "after": ids[5]}, &page)
	if len(page.Messages) != 2 || page.Messages[0].ID != ids[6] {
		t.Fatalf("after: %+v", page)
	}

	// Conversations and unread; reading reaches the reader's other places.
	var convs struct {
		Conversations []struct {
			Conv   string       `json:"conv"`
			Last   groupMessage `json:"last"`
			Unread int          `json:"unread"`
		} `json:"conversations"`
	}
	ann.OK("im/conversations", nil, &convs)
	if len(convs.Conversations) == 0 || convs.Conversations[0].Conv != conv || convs.Conversations[0].Last.ID != ids[7] ||
		convs.Conversations[0].Unread != 4 || convs.Conversations[0].Last.Conv != conv {
		t.Fatalf("ann's conversations: %+v, want %s first with 4 unread (bob's)", convs, conv)
	}
	bob.OK("im/read", map[string]any{"with": conv, "id": ids[4]}, nil)
	var read struct {
		Conv string `json:"conv"`
		User int64  `json:"user"`
		ID   int64  `json:"id"`
	}
	bob2.MustPush("im/read").Decode(t, &read)
	if read.Conv != conv || read.User != bobID || read.ID != ids[4] {
		t.Fatalf("read push: %+v", read)
	}
	noPush(t, ann, "im/read", 100*time.Millisecond) // not to the whole group
	noPush(t, bob, "im/read", 0)
	bob.OK("im/conversations", nil, &convs)
	if convs.Conversations[0].Conv != conv || convs.Conversations[0].Unread != 1 {
		t.Fatalf("bob's unread after reading to the 5th: %+v, want 1 (ann's 7th)", convs.Conversations[0])
	}

	// Sync from 0 and from the middle.
	var synced struct {
		Messages []groupMessage `json:"messages"`
		Seq      int64          `json:"seq"`
	}
	bob.OK("im/sync", map[string]int64{"since": 0}, &synced)
	var groupIDsSynced []int64
	for _, m := range synced.Messages {
		if m.Conv == conv {
			groupIDsSynced = append(groupIDsSynced, m.ID)
		}
	}
	if !slices.Equal(groupIDsSynced, ids) {
		t.Fatalf("bob's sync: %v, want %v", groupIDsSynced, ids)
	}

	// A non-member: each node refuses; the private group is nowhere.
	for path, body := range map[string]any{
		"im/send":          map[string]string{"to": conv, "text": "x"},
		"im/load":          map[string]string{"with": conv},
		"im/read":          map[string]any{"with": conv, "id": ids[0]},
		"im/typing":        map[string]string{"to": conv},
		"im/group/members": map[string]int64{"id": g.ID},
		"im/group/join":    map[string]int64{"id": g.ID},
		"im/group/invite":  map[string]int64{"id": g.ID, "user": annID},
		"im/group/leave":   map[string]int64{"id": g.ID},
		"im/group/remove":  map[string]int64{"id": g.ID, "user": bobID},
		"im/group/rename":  map[string]any{"id": g.ID, "name": "mine"},
	} {
		wantCode(t, eve, "forbidden", path, body)
	}
	eve.OK("im/sync", map[string]int64{"since": 0}, &synced)
	eve.OK("im/conversations", nil, &convs)
	if len(synced.Messages) != 0 || len(convs.Conversations) != 0 || len(groupList(t, eve)) != 0 {
		t.Fatalf("a non-member sees the private group: sync %+v, conversations %+v, list %+v", synced, convs, groupList(t, eve))
	}
	resp, body = s.Post(t, "im/load", map[string]string{"with": conv}, "Authorization", "Bearer "+eve.Login("eve", "password-eve"))
	if resp.StatusCode != 403 {
		t.Fatalf("http load by a non-member: %d %s, want 403", resp.StatusCode, body)
	}

	// An open group: a non-member may look at its members and join, not read.
	open := createGroup(t, ann, "town", false)
	openConv := fmt.Sprint("group:", open.ID)
	send(t, ann, openConv, "town news")
	wantCode(t, eve, "forbidden", "im/load", map[string]string{"with": openConv})
	wantCode(t, eve, "forbidden", "im/send", map[string]string{"to": openConv, "text": "x"})
	if m := groupMembers(t, eve, open.ID); len(m) != 1 || m[0].ID != annID {
		t.Fatalf("open group's members: %+v", m)
	}
	eve.OK("im/group/join", map[string]int64{"id": open.ID}, nil)
	eve.OK("im/load", map[string]string{"with": openConv}, &page)
	if len(page.Messages) != 1 || page.Messages[0].Text != "town news" { // the history from before joining
		t.Fatalf("a new member's load: %+v", page)
	}
}

// TestGroupSyncAfterRestart: group membership and messages survive a
// restart; a member's sync from a seq before it misses nothing and the
// group goes on working.
func TestGroupSyncAfterRestart(t *testing.T) {
	cfg := servertest.Config(t)
	s1 := servertest.StartConfig(t, cfg, boot.Options{})
	ann, bob := s1.DialWS(t, "", nil), s1.DialTCP(t)
	groupLogin(t, ann, "ann")
	bobID := groupLogin(t, bob, "bob")
	g := createGroup(t, ann, "ops", true, bobID)
	conv := fmt.Sprint("group:", g.ID)
	first := send(t, ann, conv, "before the restart")
	var m groupMessage
	bob.MustPush("im/message").Decode(t, &m)
	since := m.Seq
	second := send(t, ann, conv, "missed by bob")
	s1.Close()

	s2 := servertest.StartConfig(t, cfg, boot.Options{})
	bob = s2.DialTCP(t)
	groupLogin(t, bob, "bob")
	var synced struct {
		Messages []groupMessage `json:"messages"`
	}
	bob.OK("im/sync", map[string]int64{"since": since}, &synced)
	if len(synced.Messages) != 1 || synced.Messages[0].ID != second || synced.Messages[0].Conv != conv {
		t.Fatalf("sync after the restart: %+v, want only %d", synced, second)
	}
	bob.OK("im/sync", map[string]int64{"since": 0}, &synced)
	if len(synced.Messages) != 2 || synced.Messages[0].ID != first {
		t.Fatalf("sync from 0: %+v", synced)
	}
	if l := groupList(t, bob); len(l) != 1 || l[0] != (model.ListedGroup{Group: g, Member: true}) {
		t.Fatalf("list after the restart: %+v, want %+v", l, g)
	}
	ann = s2.DialWS(t, "", nil)
	groupLogin(t, ann, "ann")
	third := send(t, ann, conv, "after the restart")
	bob.MustPush("im/message").Decode(t, &m)
	if m.ID != third {
		t.Fatalf("push after the restart: %+v", m)
	}
}

// TestGroupBadInputs: section 4's codes for what the group nodes refuse.
func TestGroupBadInputs(t *testing.T) {
	s := servertest.Start(t)
	ann := s.DialTCP(t)
	groupLogin(t, ann, "ann")
	g := createGroup(t, ann, "ops", false)
	for _, c := range []struct {
		code, path string
		body       any
	}{
		{"bad_request", "im/group/create", map[string]any{}},
		{"bad_request", "im/group/create", map[string]any{"name": ""}},
		{"bad_request", "im/group/create", map[string]any{"name": "   "}},
		{"bad_request", "im/group/create", map[string]any{"name": "tab\there"}},
		{"bad_request", "im/group/create", map[string]any{"name": "nul\x00"}},
		{"bad_request", "im/group/create", map[string]any{"name": "bell\a"}},
		{"bad_request", "im/group/create", map[string]any{"name": "bidi \u202Eevil"}},
		{"bad_request", "im/group/create", map[string]any{"name": strings.Repeat("x", 65)}},
		{"bad_request", "im/group/create", map[string]any{"name": 7}},
		{"bad_request", "im/group/create", map[string]any{"name": "ok", "members": "all"}},
		{"bad_request", "im/group/create", map[string]any{"name": "ok", "private": "yes"}},
		{"not_found", "im/group/create", map[string]any{"name": "ok", "members": []int64{4242}}},
		{"bad_request", "im/group/create", map[string]any{"name": "ok", "members": []int64{-1}}},
		{"bad_request", "im/group/join", map[string]any{}},
		{"bad_request", "im/group/join", map[string]any{"id": "1"}},
		{"bad_request", "im/group/join", map[string]any{"id": -3}},
		{"not_found", "im/group/join", map[string]any{"id": 4242}},
		{"bad_request", "im/group/invite", map[string]any{"id": g.ID}},
		{"not_found", "im/group/invite", map[string]any{"id": g.ID, "user": 4242}},
		{"not_found", "im/group/invite", map[string]any{"id": 4242, "user": 1}},
		{"bad_request", "im/group/leave", map[string]any{}},
		{"not_found", "im/group/leave", map[string]any{"id": 4242}},
		{"bad_request", "im/group/remove", map[string]any{"id": g.ID}},
		{"not_found", "im/group/remove", map[string]any{"id": g.ID, "user": 4242}},
		{"bad_request", "im/group/rename", map[string]any{"id": g.ID}},
		{"bad_request", "im/group/rename", map[string]any{"id": g.ID, "name": strings.Repeat("é", 65)}},
		{"bad_request", "im/group/rename", map[string]any{"name": "x"}},
		{"not_found", "im/group/rename", map[string]any{"id": 4242, "name": "x"}},
		{"bad_request", "im/group/members", map[string]any{}},
		{"not_found", "im/group/members", map[string]any{"id": 4242}},
		{"bad_request", "im/send", map[string]any{"to": "group:0", "text": "x"}},
		{"bad_request", "im/send", map[string]any{"to": "group:01", "text": "x"}},
		{"not_found", "im/send", map[string]any{"to": "group:4242", "text": "x"}},
		{"not_found", "im/load", map[string]any{"with": "group:4242"}},
		{"not_found", "im/read", map[string]any{"with": "group:4242", "id": 1}},
		{"not_found", "im/typing", map[string]any{"to": "group:4242"}},
	} {
		wantCode(t, ann, c.code, c.path, c.body)
	}
	// 64 characters, non-ASCII, with spaces trimmed: fine.
	name := strings.Repeat("é", 64)
	if got := createGroup(t, ann, "  "+name+"  ", false); got.Name != name {
		t.Fatalf("64-character name: %q", got.Name)
	}
	wantCode(t, s.DialTCP(t), "unauthorized", "im/group/list", nil)
}

// TestGroupMemberCap: limits.group_members bounds create, join and invite
// (forbidden, "the group is full").
func TestGroupMemberCap(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.GroupMembers = 3 })
	clients := make([]*servertest.Client, 5)
	ids := make([]int64, 5)
	for i := range clients {
		clients[i] = s.DialTCP(t)
		ids[i] = groupLogin(t, clients[i], fmt.Sprint("user", i))
	}
	wantCode(t, clients[0], "forbidden", "im/group/create", map[string]any{"name": "big", "members": ids[1:4]})
	g := createGroup(t, clients[0], "small", false, ids[1])
	clients[0].OK("im/group/invite", map[string]int64{"id": g.ID, "user": ids[2]}, nil)
	wantCode(t, clients[0], "forbidden", "im/group/invite", map[string]int64{"id": g.ID, "user": ids[3]})
	wantCode(t, clients[4], "forbidden", "im/group/join", map[string]int64{"id": g.ID})
	clients[2].OK("im/group/leave", map[string]int64{"id": g.ID}, nil)
	clients[4].OK("im/group/join", map[string]int64{"id": g.ID}, nil) // room again
	if m := groupMembers(t, clients[4], g.ID); len(m) != 3 {
		t.Fatalf("members: %+v", m)
	}

	// A reload applies a new cap at once.
	wantCode(t, clients[0], "forbidden", "im/group/invite", map[string]int64{"id": g.ID, "user": ids[3]})
	next := s.Config
	next.Limits.GroupMembers = 4
	if applied, restart := s.Reload(next); !slices.Contains(applied, "limits.group_members") || slices.Contains(restart, "limits.group_members") {
		t.Fatalf("reload: applied %v, restart needed %v; want limits.group_members applied", applied, restart)
	}
	clients[0].OK("im/group/invite", map[string]int64{"id": g.ID, "user": ids[3]}, nil)
	wantCode(t, clients[0], "forbidden", "im/group/invite", map[string]int64{"id": g.ID, "user": ids[2]})
}

// TestX2GroupNames (TESTPLAN X2, group names): X1's hostile payloads as
// group names come back byte-exact in every reply and push, over every
// transport (the same bytes on each); those no name may be (over 64
// characters, a bidi override) get bad_request.
func TestX2GroupNames(t *testing.T) {
	s := servertest.Start(t)
	ann, bobWS, bobUDP := s.DialTCP(t), s.DialWS(t, "", nil), s.DialUDP(t)
	groupLogin(t, ann, "ann")
	bobID := groupLogin(t, bobWS, "bob")
	bobSID := bobUDP.Login("bob", "password-bob")
	accepted := 0
	for _, p := range xssPayloads {
		if len([]rune(p)) > model.MaxGroupName || strings.ContainsRune(p, '\u202E') {
			wantCode(t, ann, "bad_request", "im/group/create", map[string]any{"name": p})
			continue
		}
		accepted++
		g := createGroup(t, ann, p, false, bobID)
		if g.Name != p {
			t.Fatalf("create reply: name %q, want %q", g.Name, p)
		}
		wsPush, udpPush := bobWS.MustPush("im/group"), bobUDP.MustPush("im/group")
		if string(wsPush.Body) != string(udpPush.Body) {
			t.Fatalf("the push differs by transport:\n%s\n%s", wsPush.Body, udpPush.Body)
		}
		var e groupEventBody
		wsPush.Decode(t, &e)
		if e.Group.Name != p {
			t.Fatalf("created push: name %q, want %q", e.Group.Name, p)
		}
		renamed := p + " 2"
		var r struct {
			Group model.Group `json:"group"`
		}
		ann.OK("im/group/rename", map[string]any{"id": g.ID, "name": renamed}, &r)
		bobUDP.MustPush("im/group").Decode(t, &e)
		if r.Group.Name != renamed || e.Group.Name != renamed {
			t.Fatalf("rename: reply %q, push %q, want %q", r.Group.Name, e.Group.Name, renamed)
		}
		bobWS.MustPush("im/group")
		resp, body := s.Post(t, "im/group/list", nil, "Authorization", "Bearer "+bobSID)
		var list struct {
			Groups []model.Group `json:"groups"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &list) != nil ||
			!slices.ContainsFunc(list.Groups, func(x model.Group) bool { return x.ID == g.ID && x.Name == renamed }) {
			t.Fatalf("http list: %d %s, want group %d named %q", resp.StatusCode, body, g.ID, renamed)
		}
	}
	if accepted != 5 {
		t.Fatalf("%d payloads accepted as names, want 5", accepted)
	}
}

// TestGroupDissolvedIDNotReused: the newest group dissolves (its last
// member leaves); a group created after it, before and after a restart,
// has a new id, and its members read nothing of the old one's history
// over im/load, im/sync, im/search and im/conversations, while the old
// author can no longer edit their old message (not_found).
func TestGroupDissolvedIDNotReused(t *testing.T) {
	cfg := servertest.Config(t)
	s1 := servertest.StartConfig(t, cfg, boot.Options{})
	ann, cat, dan := s1.DialTCP(t), s1.DialTCP(t), s1.DialTCP(t)
	groupLogin(t, ann, "ann")
	catID := groupLogin(t, cat, "cat")
	groupLogin(t, dan, "dan")
	old := createGroup(t, ann, "old", true)
	oldConv := fmt.Sprint("group:", old.ID)
	secret := send(t, ann, oldConv, "canary of the old group")
	ann.OK("im/group/leave", map[string]int64{"id": old.ID}, nil)

	check := func(cat, dan, ann *servertest.Client, g model.Group, previous int64) {
		t.Helper()
		if g.ID <= previous {
			t.Errorf("a group created after group %d dissolved has id %d, want a new one", previous, g.ID)
		}
		conv := fmt.Sprint("group:", g.ID)
		cat.MustPush("im/group") // dan's created push, on cat's connection
		for _, c := range []*servertest.Client{cat, dan} {
			var page struct {
				Messages []groupMessage `json:"messages"`
			}
			c.OK("im/load", map[string]any{"with": conv}, &page)
			if len(page.Messages) != 0 {
				t.Errorf("a new member loads %+v from %s, want nothing", page.Messages, conv)
			}
			c.OK("im/sync", map[string]int64{"since": 0}, &page)
			if len(page.Messages) != 0 {
				t.Errorf("a new member syncs %+v, want nothing", page.Messages)
			}
			c.OK("im/search", map[string]any{"q": "canary"}, &page)
			if len(page.Messages) != 0 {
				t.Errorf("a new member finds %+v, want nothing", page.Messages)
			}
			var convs struct {
				Conversations []struct {
					Conv string `json:"conv"`
				} `json:"conversations"`
			}
			c.OK("im/conversations", nil, &convs)
			if len(convs.Conversations) != 0 {
				t.Errorf("a new member's conversations: %+v, want none", convs.Conversations)
			}
			wantCode(t, c, "not_found", "im/load", map[string]any{"with": oldConv})
		}
		wantCode(t, ann, "not_found", "im/edit", map[string]any{"id": secret, "text": "pushed to the new members"})
		noPush(t, cat, "im/edited", 100*time.Millisecond)
	}
	g := createGroup(t, dan, "new", true, catID)
	check(cat, dan, ann, g, old.ID)

	// After a restart, the dissolved group stays gone and its id unused.
	dan.OK("im/group/leave", map[string]int64{"id": g.ID}, nil)
	cat.MustPush("im/group")
	cat.OK("im/group/leave", map[string]int64{"id": g.ID}, nil)
	s1.Close()
	s2 := servertest.StartConfig(t, cfg, boot.Options{})
	ann, cat, dan = s2.DialTCP(t), s2.DialTCP(t), s2.DialTCP(t)
	groupLogin(t, ann, "ann")
	groupLogin(t, cat, "cat")
	groupLogin(t, dan, "dan")
	if l := groupList(t, dan); len(l) != 0 {
		t.Fatalf("after the restart, dan lists %+v, want no group", l)
	}
	check(cat, dan, ann, createGroup(t, dan, "newer", true, catID), g.ID)
}

// TestGroupCreateBounds: im/group/create names at most 256 members
// (bad_request naming the cap, before any lookup or token), and creations
// have a limiter of their own, stricter than messages (with the defaults,
// bursts of 5 a user), which refused creations count against too.
func TestGroupCreateBounds(t *testing.T) {
	s := servertest.Start(t)
	ann, bob := s.DialTCP(t), s.DialWS(t, "", nil)
	groupLogin(t, ann, "ann")
	bobID := groupLogin(t, bob, "bob")
	many := make([]int64, 257)
	for i := range many {
		many[i] = int64(1000 + i)
	}
	for range 10 { // never a token: 10 of them still leave the burst whole
		f := ann.Request("im/group/create", map[string]any{"name": "huge", "members": many})
		if f.ErrorCode() != "bad_request" || !strings.Contains(string(f.Body), "256") {
			t.Fatalf("create with 257 members: %s, want bad_request naming 256", f)
		}
	}
	// 256 (with duplicates and the creator among them) passes the cap and
	// is refused by the lookup: no such users.
	wantCode(t, ann, "not_found", "im/group/create", map[string]any{"name": "big", "members": append(many[:256:256], many[0], bobID-1)})
	for range 4 {
		createGroup(t, ann, "ok", false, bobID)
		bob.MustPush("im/group")
	}
	f := ann.Request("im/group/create", map[string]any{"name": "one too many"})
	if f.ErrorCode() != "rate_limited" || retryAfterMS(t, f) <= 0 {
		t.Fatalf("6th creation in a burst of 5: %s, want rate_limited with retry_after_ms", f)
	}
	createGroup(t, bob, "bob's own", false) // per user
	ann.OK("im/send", map[string]string{"to": "room:lobby", "text": "sends are not held back"}, nil)
}

// TestGroupReadsRateLimited: im/group/list and im/group/members take the
// updates limiter's tokens (their cost grows with the groups and the
// members), so a burst past it is rate_limited with retry_after_ms; and
// im/group/members gives each member's places.
func TestGroupReadsRateLimited(t *testing.T) {
	s := servertest.Start(t)
	ann, bob, bob2 := s.DialTCP(t), s.DialWS(t, "", nil), s.DialUDP(t)
	annID := groupLogin(t, ann, "ann")
	bobID := groupLogin(t, bob, "bob")
	bob2.Login("bob", "password-bob")
	g := createGroup(t, ann, "ops", false, bobID)
	if m := groupMembers(t, ann, g.ID); len(m) != 2 || m[0].ID != annID || m[0].Places != 1 || m[1].ID != bobID || m[1].Places != 2 {
		t.Fatalf("members: %+v, want ann at 1 place and bob at 2", m)
	}
	burst := s.Config.Limits.MessageBurst
	for _, c := range []struct {
		path string
		body any
	}{{"im/group/list", nil}, {"im/group/members", map[string]int64{"id": g.ID}}} {
		eve := s.DialTCP(t)
		groupLogin(t, eve, fmt.Sprint("eve", len(c.path)))
		limited := false
		for range burst + 1 {
			f := eve.Request(c.path, c.body)
			if code := f.ErrorCode(); code == "rate_limited" {
				if retryAfterMS(t, f) <= 0 {
					t.Fatalf("%s: %s, want retry_after_ms", c.path, f)
				}
				limited = true
				break
			} else if code != "" {
				t.Fatalf("%s: %s", c.path, f)
			}
		}
		if !limited {
			t.Errorf("%d of %s in a burst of %d: none rate_limited", burst+1, c.path, burst)
		}
	}
}

// TestTypingUnknownUserLimitedFirst: im/typing to a user who does not
// exist is not_found within the typing rate, and past it dropped like any
// other typing ({}), before the store is asked about the user.
func TestTypingUnknownUserLimitedFirst(t *testing.T) {
	s := servertest.Start(t)
	ann := s.DialTCP(t)
	groupLogin(t, ann, "ann")
	rate := s.Config.Limits.TypingPerSecond
	for i := range rate {
		wantCode(t, ann, "not_found", "im/typing", map[string]string{"to": fmt.Sprint("user:", 4242+i)})
	}
	if f := ann.Request("im/typing", map[string]string{"to": "user:9999"}); f.ErrorCode() != "" {
		t.Fatalf("typing past the rate to an unknown user: %s, want {} (dropped before the lookup)", f)
	}
}
