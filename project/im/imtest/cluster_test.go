package imtest

// Several nodes as one server (PROTOCOL.md section 8): three nodes on one
// PostgreSQL database and one Redis, with clients of every transport on
// different nodes. These need the real servers (DCE_TEST_POSTGRES,
// DCE_TEST_REDIS; scripts/services.sh starts them) and fail under CI
// without them.

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
	"dce/common/model"
)

// clusterNodes runs three nodes whose send limit a burst does not reach.
func clusterNodes(t *testing.T, edits ...func(*config.Config)) []*servertest.Server {
	t.Helper()
	return servertest.StartNodes(t, 3, append([]func(*config.Config){func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 100000, 100000
	}}, edits...)...)
}

// pushText waits for c's next push on path and returns its text.
func pushText(t *testing.T, c *servertest.Client, path string) model.Message {
	t.Helper()
	var m model.Message
	c.MustPush(path).Decode(t, &m)
	return m
}

// Users on three nodes chat in the lobby, privately and in a group, and
// see typing, read marks, edits and deletes made on the other nodes;
// im/sync on any node has everything stored on every node.
func TestClusterConversations(t *testing.T) {
	nodes := clusterNodes(t)
	alice := nodes[0].DialWS(t, "", nil)
	aliceID := groupLogin(t, alice, "alice")
	bob := nodes[1].DialTCP(t)
	bobID := groupLogin(t, bob, "bob")
	carol := nodes[2].DialWS(t, "", nil)
	carolID := groupLogin(t, carol, "carol")
	time.Sleep(300 * time.Millisecond)
	for _, c := range []*servertest.Client{alice, bob, carol} {
		c.Drain()
	}

	// The lobby: one send on node 1, a push on nodes 2 and 3.
	alice.OK("im/send", map[string]string{"to": "room:lobby", "text": "hello from node one"}, nil)
	for _, c := range []*servertest.Client{bob, carol} {
		if m := pushText(t, c, "im/message"); m.Text != "hello from node one" || m.From.ID != aliceID {
			t.Fatalf("lobby push: %+v", m)
		}
	}

	// A private message reaches its addressee on another node, and no one else.
	var sent struct {
		ID int64 `json:"id"`
	}
	bob.OK("im/send", map[string]string{"to": "user:" + strconv.FormatInt(aliceID, 10), "text": "psst"}, &sent)
	if m := pushText(t, alice, "im/message"); m.Text != "psst" || m.Conv != "user:"+strconv.FormatInt(bobID, 10) {
		t.Fatalf("private push: %+v", m)
	}
	noPush(t, carol, "im/message", 300*time.Millisecond)

	// Typing and a read mark cross too.
	alice.Fire("im/typing", map[string]string{"to": "user:" + strconv.FormatInt(bobID, 10)})
	bob.MustPush("im/typing")
	alice.OK("im/read", map[string]any{"with": "user:" + strconv.FormatInt(bobID, 10), "id": sent.ID}, nil)
	bob.MustPush("im/read")

	// A group made on node 3 with members on nodes 1 and 2.
	g := createGroup(t, carol, "three nodes", true, aliceID, bobID)
	groupPush(t, alice, "created", g.ID, carolID)
	groupPush(t, bob, "created", g.ID, carolID)
	to := fmt.Sprintf("group:%d", g.ID)
	alice.OK("im/send", map[string]string{"to": to, "text": "to the group"}, &sent)
	for _, c := range []*servertest.Client{bob, carol} {
		if m := pushText(t, c, "im/message"); m.Text != "to the group" || m.Conv != to {
			t.Fatalf("group push: %+v", m)
		}
	}

	// An edit and a delete on node 1 reach nodes 2 and 3.
	alice.OK("im/edit", map[string]any{"id": sent.ID, "text": "to the whole group"}, nil)
	for _, c := range []*servertest.Client{bob, carol} {
		if m := pushText(t, c, "im/edited"); m.Text != "to the whole group" || !m.Edited {
			t.Fatalf("edit push: %+v", m)
		}
	}
	alice.OK("im/delete", map[string]any{"id": sent.ID}, nil)
	for _, c := range []*servertest.Client{bob, carol} {
		c.MustPush("im/deleted")
	}

	// Removed on node 3: no more group pushes on node 2.
	carol.OK("im/group/remove", map[string]any{"id": g.ID, "user": bobID}, nil)
	groupPush(t, bob, "removed", g.ID, bobID)
	carol.OK("im/send", map[string]string{"to": to, "text": "without bob"}, nil)
	pushText(t, alice, "im/message")
	noPush(t, bob, "im/message", 300*time.Millisecond)

	// im/sync from 0 on each node: the same changes, in the same order.
	var first []int64
	for i, n := range nodes {
		c := n.DialWS(t, "", nil)
		groupLogin(t, c, "alice")
		var r struct {
			Messages []model.Message `json:"messages"`
		}
		c.OK("im/sync", map[string]any{"since": 0}, &r)
		var seqs []int64
		for _, m := range r.Messages {
			seqs = append(seqs, m.Seq)
		}
		if i == 0 {
			first = seqs
			if len(seqs) < 4 {
				t.Fatalf("sync on node 1: %d messages, want at least 4", len(seqs))
			}
		} else if fmt.Sprint(seqs) != fmt.Sprint(first) {
			t.Fatalf("sync on node %d: seqs %v, node 1 %v", i+1, seqs, first)
		}
	}
}

// A session made on one node resumes on the others, and a logout on one
// ends it on every connection that holds it, on every node, before its
// reply.
func TestClusterSessions(t *testing.T) {
	nodes := clusterNodes(t)
	first := nodes[0].DialWS(t, "", nil)
	sid, id := authLogin(t, first, "dora", "password-dora")
	second := nodes[1].DialTCP(t)
	var r struct {
		User model.User `json:"user"`
	}
	second.OK("im/resume", map[string]string{"sid": sid}, &r)
	if r.User.ID != id {
		t.Fatalf("resume on node 2: user %+v, want %d", r.User, id)
	}
	third := nodes[2].DialWS(t, "sid="+sid, nil)
	third.OK("im/conversations", map[string]any{}, nil)

	second.OK("im/logout", map[string]any{}, nil)
	for name, c := range map[string]*servertest.Client{"node 1": first, "node 3": third} {
		if code := c.Request("im/conversations", map[string]any{}).ErrorCode(); code != "unauthorized" {
			t.Errorf("%s: right after the logout's reply, a connection that held the session got %q, want unauthorized", name, code)
		}
	}
	late := nodes[2].DialTCP(t)
	if code := late.Request("im/resume", map[string]string{"sid": sid}).ErrorCode(); code != "unauthorized" {
		t.Fatalf("resume after logout on node 3: %s, want unauthorized", code)
	}
}

// Presence sums places over the nodes, keeps the grace across them, and
// im/users on any node lists who is online on every node.
func TestClusterPresence(t *testing.T) {
	nodes := clusterNodes(t, func(c *config.Config) { c.Session.PresenceGrace = config.Duration{Duration: time.Second} })
	watcher := nodes[2].DialWS(t, "", nil)
	groupLogin(t, watcher, "watcher")
	time.Sleep(200 * time.Millisecond)
	watcher.Drain()

	a := nodes[0].DialWS(t, "", nil)
	sid, id := authLogin(t, a, "erin", "password-erin")
	presence := func(online bool, places int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			f, ok := watcher.WaitPush("im/presence", time.Until(deadline))
			if !ok {
				break
			}
			var p struct {
				User   model.User `json:"user"`
				Online bool       `json:"online"`
				Places int        `json:"places"`
			}
			f.Decode(t, &p)
			if p.User.ID == id && p.Online == online && p.Places == places {
				return
			}
		}
		t.Fatalf("no im/presence of user %d online=%v places=%d on node 3", id, online, places)
	}
	presence(true, 1)
	b := nodes[1].DialWS(t, "sid="+sid, nil)
	b.OK("im/conversations", map[string]any{}, nil)
	presence(true, 2)

	var users struct {
		Users []model.Online `json:"users"`
	}
	watcher.OK("im/users", map[string]any{}, &users)
	places := 0
	for _, u := range users.Users {
		if u.ID == id {
			places = u.Places
		}
	}
	if places != 2 {
		t.Fatalf("im/users on node 3: erin in %d places, want 2 (one on node 1, one on node 2)", places)
	}

	// Moving from node 1 to node 2 within the grace: no offline.
	a.Close()
	presence(true, 1)
	b.Close()
	c := nodes[0].DialWS(t, "sid="+sid, nil)
	c.OK("im/conversations", map[string]any{}, nil)
	time.Sleep(1500 * time.Millisecond)
	for _, f := range watcher.Pushes() {
		var p struct {
			User   model.User `json:"user"`
			Online bool       `json:"online"`
		}
		if f.Path == "im/presence" {
			f.Decode(t, &p)
			if p.User.ID == id && !p.Online {
				t.Fatalf("erin went offline while moving between nodes within the grace: %s", f)
			}
		}
	}
	c.Close()
	presence(false, 0)
}

// The per-user connection cap and send rate hold whichever nodes a user
// is on.
func TestClusterLimits(t *testing.T) {
	nodes := servertest.StartNodes(t, 3, func(c *config.Config) {
		c.Limits.ConnectionsPerUser = 3
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 1, 3
	})
	first := nodes[0].DialWS(t, "", nil)
	sid, _ := authLogin(t, first, "fred", "password-fred")
	var held []*servertest.Client
	for _, n := range nodes[1:] {
		c := n.DialWS(t, "sid="+sid, nil)
		c.OK("im/conversations", map[string]any{}, nil)
		held = append(held, c)
	}
	over := nodes[2].DialTCP(t)
	if f := over.Request("im/resume", map[string]string{"sid": sid}); f.ErrorCode() != "forbidden" {
		t.Fatalf("a fourth connection over three nodes with connections_per_user = 3: %s, want forbidden", f)
	}

	for i := range 3 {
		first.OK("im/send", map[string]string{"to": "room:lobby", "text": fmt.Sprint("burst ", i)}, nil)
	}
	if f := held[0].Request("im/send", map[string]string{"to": "room:lobby", "text": "one too many"}); f.ErrorCode() != "rate_limited" {
		t.Fatalf("a fourth message within the burst of 3, sent on another node: %s, want rate_limited", f)
	}
}

// TESTPLAN P9 over three nodes: senders on every node at once, readers of
// every transport on every node, droppers that resume on another node;
// every acknowledged change reaches every reader once, in seq order.
func TestClusterP9PushesInSeqOrder(t *testing.T) {
	orderRunOn(t, clusterNodes(t), false)
}

// The same with private messages to one user whose connections are spread
// over the nodes.
func TestClusterP9PrivatePushesInSeqOrder(t *testing.T) {
	orderRunOn(t, clusterNodes(t), true)
}

// Moderation over three nodes: a mute, a ban and a profile change made on
// one node hold on the others by the time its reply comes (each node
// forgets its cached copy of the account first), and a ban closes the
// user's connections on every node.
func TestClusterModeration(t *testing.T) {
	nodes := clusterNodes(t)
	admin := nodes[0].DialWS(t, "", nil)
	adminID := groupLogin(t, admin, "root")
	if err := nodes[0].Store.SetAdmin(t.Context(), adminID, true); err != nil {
		t.Fatal(err)
	}
	ws := nodes[1].DialWS(t, "", nil)
	bobID := groupLogin(t, ws, "bob")
	tcp := nodes[2].DialTCP(t)
	groupLogin(t, tcp, "bob")
	for _, c := range []*servertest.Client{ws, tcp} { // each node caches bob's account
		send(t, c, "room:lobby", "bob before")
	}

	admin.OK("admin/mute", map[string]any{"user": bobID, "minutes": 10}, nil)
	for _, c := range []*servertest.Client{ws, tcp} {
		wantCode(t, c, "forbidden", "im/send", map[string]string{"to": "room:lobby", "text": "muted on another node"})
	}
	admin.OK("admin/mute", map[string]any{"user": bobID, "minutes": 0}, nil)
	for _, c := range []*servertest.Client{ws, tcp} {
		send(t, c, "room:lobby", "unmuted on another node")
	}

	// A profile change on node 2 shows on node 3's next message at once.
	ws.OK("im/profile", map[string]string{"brief": "changed on node two"}, nil)
	send(t, tcp, "room:lobby", "from node three")
	for {
		if m := pushText(t, admin, "im/message"); m.Text == "from node three" {
			if m.From.Brief != "changed on node two" {
				t.Fatalf("node 3 sent with brief %q after it changed on node 2", m.From.Brief)
			}
			break
		}
	}

	admin.OK("admin/ban", map[string]any{"user": bobID, "minutes": 30, "reason": "across"}, nil)
	kickedAll(t, "across", 4503, []*servertest.Client{ws}, []*servertest.Client{tcp})
	for i, n := range nodes {
		if f := n.DialTCP(t).Request("im/login", map[string]string{"nickname": "bob", "password": "password-bob"}); f.ErrorCode() != "forbidden" {
			t.Fatalf("node %d: the banned user's login: %s, want forbidden", i+1, f.Body)
		}
	}
}
