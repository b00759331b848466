package imtest

// Groups end to end (PROTOCOL.md sections 3 and 5): the im/group/* nodes,
// their pushes to every connection of every member, and group
// conversations over every transport.

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"dce/app/servertest"
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

func groupList(t *testing.T, c *servertest.Client) []model.Group {
	t.Helper()
	var r struct {
		Groups []model.Group `json:"groups"`
	}
	c.OK("im/group/list", nil, &r)
	return r.Groups
}

func groupIDs(groups []model.Group) []int64 {
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
