package imtest

// im/edit and im/delete end to end: live pushes on every transport, a
// reader that was away catching up through im/sync, deleted messages
// empty everywhere, the edit window, admins' deletions, and every bad
// input and authorization case (README: edit and delete).

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// editMessage is a Message as these tests read it.
type editMessage struct {
	ID   int64  `json:"id"`
	Seq  int64  `json:"seq"`
	Conv string `json:"conv"`
	From struct {
		ID       int64  `json:"id"`
		Nickname string `json:"nickname"`
	} `json:"from"`
	To      string          `json:"to"`
	Text    string          `json:"text"`
	File    *map[string]any `json:"file"`
	Edited  bool            `json:"edited"`
	Deleted bool            `json:"deleted"`
}

// editDeleted is an im/deleted push.
type editDeleted struct {
	ID   int64  `json:"id"`
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
}

// editSend sends text to `to` and returns the new message's id.
func editSend(t *testing.T, c *servertest.Client, to, text string) int64 {
	t.Helper()
	return send(t, c, to, text)
}

// editCode sends a request and returns its error code ("" on success).
func editCode(t *testing.T, c *servertest.Client, path string, body any) string {
	t.Helper()
	return c.Request(path, body).ErrorCode()
}

// editExpect fails the test unless path with body answers code.
func editExpect(t *testing.T, c *servertest.Client, path string, body any, code string) {
	t.Helper()
	if got := editCode(t, c, path, body); got != code {
		t.Errorf("%s %v: code %q, want %q", path, body, got, code)
	}
}

// editEdited waits for an im/edited push of message id on c.
func editEdited(t *testing.T, c *servertest.Client, name string, id int64) editMessage {
	t.Helper()
	f, ok := c.WaitMatch(servertest.DefaultTimeout, func(f servertest.Frame) bool {
		return f.Path == "im/edited" && strings.Contains(string(f.Body), `"id":`+strconv.FormatInt(id, 10)+`,`)
	})
	if !ok {
		t.Fatalf("%s: no im/edited push for message %d; have %v", name, id, c.Pushes())
	}
	var m editMessage
	f.Decode(t, &m)
	return m
}

// editDeletedPush waits for an im/deleted push of message id on c.
func editDeletedPush(t *testing.T, c *servertest.Client, name string, id int64) editDeleted {
	t.Helper()
	f, ok := c.WaitMatch(servertest.DefaultTimeout, func(f servertest.Frame) bool {
		return f.Path == "im/deleted" && strings.Contains(string(f.Body), `"id":`+strconv.FormatInt(id, 10)+`,`)
	})
	if !ok {
		t.Fatalf("%s: no im/deleted push for message %d; have %v", name, id, c.Pushes())
	}
	var d editDeleted
	f.Decode(t, &d)
	return d
}

// editNone fails the test if c got a push with path within a short while.
func editNone(t *testing.T, c *servertest.Client, name, path string) {
	t.Helper()
	if f, ok := c.WaitPush(path, 300*time.Millisecond); ok {
		t.Errorf("%s got %s", name, f)
	}
}

// TestEditDeleteLivePushes: an edit and a deletion, in the lobby and in a
// private chat, reach every reader's connections on WebSocket, TCP and
// UDP (the author's other connections included, not the one that asked)
// as im/edited and im/deleted, with new seqs; the replies come after the
// commit; HTTP works the same.
func TestEditDeleteLivePushes(t *testing.T) {
	s := servertest.Start(t)
	ann := s.DialWS(t, "", nil)
	annSID, annID := authLogin(t, ann, "ann", "password-ann")
	annOther := s.DialTCP(t)
	annOther.OK("im/resume", map[string]string{"sid": annSID}, nil)
	bobWS := s.DialWS(t, "", nil)
	bobSID, bobID := authLogin(t, bobWS, "bob", "password-bob")
	bobTCP := s.DialTCP(t)
	bobTCP.OK("im/resume", map[string]string{"sid": bobSID}, nil)
	bobUDP := s.DialUDP(t)
	bobUDP.OK("im/resume", map[string]string{"sid": bobSID}, nil)
	eve := s.DialTCP(t)
	authLogin(t, eve, "eve", "password-eve")
	bobs := map[string]*servertest.Client{"bob ws": bobWS, "bob tcp": bobTCP, "bob udp": bobUDP}

	for _, c := range []struct {
		to         string
		bobView    string
		annView    string
		eveReads   bool
		text, edit string
	}{
		{"room:lobby", "room:lobby", "room:lobby", true, "helo everyone", "hello everyone"},
		{"user:" + strconv.FormatInt(bobID, 10), "user:" + strconv.FormatInt(annID, 10), "user:" + strconv.FormatInt(bobID, 10), false,
			"a secert for bob", "a secret for bob"},
	} {
		id := editSend(t, ann, c.to, c.text)
		var reply struct {
			Message editMessage `json:"message"`
		}
		ann.OK("im/edit", map[string]any{"id": id, "text": c.edit}, &reply)
		edited := reply.Message
		if edited.ID != id || edited.Text != c.edit || !edited.Edited || edited.Deleted || edited.Conv != c.annView ||
			edited.From.ID != annID || edited.From.Nickname != "ann" || edited.To != c.to {
			t.Errorf("%s: im/edit replied %+v", c.to, edited)
		}
		for name, reader := range bobs {
			m := editEdited(t, reader, name, id)
			if m.Seq != edited.Seq || m.Text != c.edit || !m.Edited || m.Conv != c.bobView || m.From.Nickname != "ann" {
				t.Errorf("%s: %s got im/edited %+v, want seq %d in %s", c.to, name, m, edited.Seq, c.bobView)
			}
		}
		if m := editEdited(t, annOther, "ann's other connection", id); m.Conv != c.annView || m.Seq != edited.Seq {
			t.Errorf("%s: ann's other connection got %+v", c.to, m)
		}
		if c.eveReads {
			editEdited(t, eve, "eve", id)
		} else {
			editNone(t, eve, "eve (not a reader)", "im/edited")
		}

		ann.OK("im/delete", map[string]any{"id": id}, nil)
		var deletedSeq int64
		for name, reader := range bobs {
			d := editDeletedPush(t, reader, name, id)
			if d.Conv != c.bobView || d.Seq <= edited.Seq {
				t.Errorf("%s: %s got im/deleted %+v, want conv %s and a seq above %d", c.to, name, d, c.bobView, edited.Seq)
			}
			deletedSeq = d.Seq
		}
		if d := editDeletedPush(t, annOther, "ann's other connection", id); d.Conv != c.annView || d.Seq != deletedSeq {
			t.Errorf("%s: ann's other connection got %+v", c.to, d)
		}
		if c.eveReads {
			editDeletedPush(t, eve, "eve", id)
		} else {
			editNone(t, eve, "eve (not a reader)", "im/deleted")
		}
		// The connection that asked got replies, not pushes.
		editNone(t, ann, "ann's asking connection", "im/edited")
		editNone(t, ann, "ann's asking connection", "im/deleted")
		// A second deletion: success, and no push.
		ann.OK("im/delete", map[string]any{"id": id}, nil)
		editNone(t, bobWS, "bob after a second deletion", "im/deleted")
	}

	// Over HTTP, with the Bearer sid: the same nodes, the same pushes.
	id := editSend(t, bobTCP, "room:lobby", "from http soon")
	resp, body := s.Post(t, "/im/edit", map[string]any{"id": id, "text": "edited over http"}, "Authorization", "Bearer "+bobSID)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"text":"edited over http"`) {
		t.Errorf("POST /im/edit: %d %s", resp.StatusCode, body)
	}
	editEdited(t, ann, "ann", id)
	editEdited(t, bobWS, "bob ws", id)
	resp, body = s.Post(t, "/im/delete", map[string]any{"id": id}, "Authorization", "Bearer "+bobSID)
	if resp.StatusCode != 200 || string(body) != "{}" {
		t.Errorf("POST /im/delete: %d %s", resp.StatusCode, body)
	}
	editDeletedPush(t, ann, "ann", id)
	resp, _ = s.Post(t, "/im/delete", map[string]any{"id": id + 1000}, "Authorization", "Bearer "+bobSID)
	if resp.StatusCode != 404 {
		t.Errorf("POST /im/delete of an unknown id: %d, want 404", resp.StatusCode)
	}
}

// TestEditDeleteAwayReaderSyncs: a reader who was away when a message was
// edited and another deleted sees both through im/sync from the last seq
// it saw; deleted messages are empty in im/sync, im/load and
// im/conversations; the next edits and deletes keep the seq order.
func TestEditDeleteAwayReaderSyncs(t *testing.T) {
	s := servertest.Start(t)
	ann := s.DialWS(t, "", nil)
	authLogin(t, ann, "ann", "password-ann")
	bob := s.DialTCP(t)
	bobSID, bobID := authLogin(t, bob, "bob", "password-bob")
	toBob := "user:" + strconv.FormatInt(bobID, 10)
	first := editSend(t, ann, "room:lobby", "first, to be edited")
	second := editSend(t, ann, "room:lobby", "second, to be deleted: zebra-canary")
	private := editSend(t, ann, toBob, "private, to be deleted: zebra-canary")
	var synced struct {
		Seq int64 `json:"seq"`
	}
	bob.OK("im/sync", map[string]any{"since": 0}, &synced)
	bob.Close()

	ann.OK("im/edit", map[string]any{"id": first, "text": "first, edited"}, nil)
	ann.OK("im/delete", map[string]any{"id": second}, nil)
	ann.OK("im/delete", map[string]any{"id": private}, nil)

	back := s.DialUDP(t)
	back.OK("im/resume", map[string]string{"sid": bobSID}, nil)
	var r struct {
		Messages []editMessage `json:"messages"`
		Seq      int64         `json:"seq"`
	}
	back.OK("im/sync", map[string]any{"since": synced.Seq}, &r)
	if len(r.Messages) != 3 {
		t.Fatalf("im/sync since %d gave %+v, want the 3 changes", synced.Seq, r.Messages)
	}
	if m := r.Messages[0]; m.ID != first || m.Text != "first, edited" || !m.Edited || m.Seq <= synced.Seq {
		t.Errorf("the edit synced as %+v", m)
	}
	for i, id := range []int64{second, private} {
		if m := r.Messages[i+1]; m.ID != id || !m.Deleted || m.Text != "" || m.File != nil {
			t.Errorf("deletion %d synced as %+v", i, m)
		}
	}
	if r.Seq != r.Messages[2].Seq {
		t.Errorf("im/sync seq %d, want the last change's %d", r.Seq, r.Messages[2].Seq)
	}
	for _, with := range []string{"room:lobby", "user:" + strconv.FormatInt(r.Messages[0].From.ID, 10)} {
		var loaded struct {
			Messages []editMessage `json:"messages"`
		}
		back.OK("im/load", map[string]any{"with": with}, &loaded)
		for _, m := range loaded.Messages {
			if (m.ID == second || m.ID == private) && (!m.Deleted || m.Text != "") {
				t.Errorf("im/load %s: %+v", with, m)
			}
			if strings.Contains(m.Text, "zebra-canary") {
				t.Errorf("im/load %s still shows the deleted text: %+v", with, m)
			}
		}
	}
	f := back.OK("im/conversations", nil, nil)
	if strings.Contains(string(f.Body), "zebra-canary") {
		t.Errorf("im/conversations still shows the deleted text: %s", f.Body)
	}
}

// TestEditDeleteRules: every bad input, every authorization case, the
// edit window and admins' deletions.
func TestEditDeleteRules(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.EditWindow = config.Duration{Duration: 1500 * time.Millisecond}
		c.Limits.TextMax = 100
	})
	ctx := context.Background()
	ann := s.DialWS(t, "", nil)
	_, annID := authLogin(t, ann, "ann", "password-ann")
	bob := s.DialTCP(t)
	_, bobID := authLogin(t, bob, "bob", "password-bob")
	eve := s.DialUDP(t)
	eve.Login("eve", "password-eve")
	admin := s.DialWS(t, "", nil)
	_, adminID := authLogin(t, admin, "root", "password-root")
	if err := s.Server.Store.SetAdmin(ctx, adminID, true); err != nil {
		t.Fatal(err)
	}
	annLobby := editSend(t, ann, "room:lobby", "ann in the lobby")
	bobLobby := editSend(t, bob, "room:lobby", "bob in the lobby")
	bobToEve := editSend(t, bob, "user:"+strconv.FormatInt(mustID(t, eve), 10), "between bob and eve")
	annToBob := editSend(t, ann, "user:"+strconv.FormatInt(bobID, 10), "between ann and bob")

	// Bad input.
	for _, c := range []struct {
		path string
		body any
		code string
	}{
		{"im/edit", `{}`, "bad_request"},
		{"im/edit", map[string]any{"id": annLobby}, "bad_request"},             // no text
		{"im/edit", map[string]any{"text": "x"}, "bad_request"},                // no id
		{"im/edit", map[string]any{"id": 0, "text": "x"}, "bad_request"},       // not an id
		{"im/edit", map[string]any{"id": -5, "text": "x"}, "bad_request"},      // not an id
		{"im/edit", map[string]any{"id": "7", "text": "x"}, "bad_request"},     // a string
		{"im/edit", map[string]any{"id": 1.5, "text": "x"}, "bad_request"},     // a fraction
		{"im/edit", map[string]any{"id": annLobby, "text": ""}, "bad_request"}, // empty
		{"im/edit", map[string]any{"id": annLobby, "text": 7}, "bad_request"},  // a number
		{"im/edit", map[string]any{"id": annLobby, "text": "a\x00b"}, "bad_request"},
		{"im/edit", map[string]any{"id": annLobby, "text": strings.Repeat("é", 101)}, "too_large"},
		{"im/edit", `[1]`, "bad_request"},
		{"im/delete", `{}`, "bad_request"},
		{"im/delete", map[string]any{"id": -1}, "bad_request"},
		{"im/delete", map[string]any{"id": "x"}, "bad_request"},
		{"im/delete", `"id"`, "bad_request"},
	} {
		editExpect(t, ann, c.path, c.body, c.code)
	}
	if code := editCode(t, ann, "im/edit", map[string]any{"id": annLobby, "text": strings.Repeat("é", 100)}); code != "" {
		t.Errorf("an edit of exactly text_max characters: %s", code)
	}

	// Authorization.
	for _, c := range []struct {
		who  string
		conn *servertest.Client
		path string
		id   int64
		code string
	}{
		{"ann, an unknown id", ann, "im/edit", bobToEve + 1000, "not_found"},
		{"ann, a private chat she is not in", ann, "im/edit", bobToEve, "not_found"},
		{"ann, bob's lobby message", ann, "im/edit", bobLobby, "forbidden"},
		{"bob, ann's private message to him", bob, "im/edit", annToBob, "forbidden"},
		{"admin, bob's message", admin, "im/edit", bobLobby, "forbidden"}, // admins delete, never edit
		{"ann, an unknown id", ann, "im/delete", bobToEve + 1000, "not_found"},
		{"ann, a private chat she is not in", ann, "im/delete", bobToEve, "not_found"},
		{"admin, a private chat it is not in", admin, "im/delete", bobToEve, "not_found"},
		{"ann, bob's lobby message", ann, "im/delete", bobLobby, "forbidden"},
		{"bob, ann's private message to him", bob, "im/delete", annToBob, "forbidden"},
	} {
		body := map[string]any{"id": c.id}
		if c.path == "im/edit" {
			body["text"] = "changed"
		}
		if got := editCode(t, c.conn, c.path, body); got != c.code {
			t.Errorf("%s: %s gave %q, want %q", c.who, c.path, got, c.code)
		}
	}
	anonymous := s.DialTCP(t)
	editExpect(t, anonymous, "im/edit", map[string]any{"id": annLobby, "text": "x"}, "unauthorized")
	editExpect(t, anonymous, "im/delete", map[string]any{"id": annLobby}, "unauthorized")

	// An admin deletes anyone's readable message; the others are told.
	admin.OK("im/delete", map[string]any{"id": bobLobby}, nil)
	if d := editDeletedPush(t, bob, "bob", bobLobby); d.Conv != "room:lobby" {
		t.Errorf("bob got %+v", d)
	}
	editExpect(t, bob, "im/edit", map[string]any{"id": bobLobby, "text": "back"}, "not_found") // deleted
	bob.OK("im/delete", map[string]any{"id": bobLobby}, nil)                                   // deleted already: fine

	// The edit window: inside it the author may; past it only an admin
	// deletes, and its own messages too.
	late := editSend(t, ann, "room:lobby", "soon too late")
	adminLate := editSend(t, admin, "room:lobby", "the admin's, soon too late")
	ann.OK("im/edit", map[string]any{"id": late, "text": "edited in time"}, nil)
	time.Sleep(1700 * time.Millisecond)
	editExpect(t, ann, "im/edit", map[string]any{"id": late, "text": "edited too late"}, "forbidden")
	editExpect(t, ann, "im/delete", map[string]any{"id": late}, "forbidden")
	editExpect(t, admin, "im/edit", map[string]any{"id": adminLate, "text": "too late for anyone"}, "forbidden")
	admin.OK("im/delete", map[string]any{"id": adminLate}, nil)
	admin.OK("im/delete", map[string]any{"id": late}, nil)
	editDeletedPush(t, ann, "ann", late)
	_ = annID
}

// mustID is the user id c is logged in as.
func mustID(t *testing.T, c *servertest.Client) int64 {
	t.Helper()
	var r struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	c.OK("im/signer", nil, &r)
	if r.User.ID == 0 {
		t.Fatalf("%s: not logged in", c.Request("im/signer", nil))
	}
	return r.User.ID
}

// TestEditDeleteInGroup: an edit and a deletion in a group reach its
// members and no one else; a non-member cannot find the message to change.
func TestEditDeleteInGroup(t *testing.T) {
	s := servertest.Start(t)
	ann := s.DialWS(t, "", nil)
	authLogin(t, ann, "ann", "password-ann")
	bob := s.DialTCP(t)
	_, bobID := authLogin(t, bob, "bob", "password-bob")
	eve := s.DialUDP(t)
	eve.Login("eve", "password-eve")
	group := createGroup(t, ann, "crew", false, bobID)
	conv := "group:" + strconv.FormatInt(group.ID, 10)
	id := editSend(t, ann, conv, "crew meeting at 10")
	ann.OK("im/edit", map[string]any{"id": id, "text": "crew meeting at 11"}, nil)
	if m := editEdited(t, bob, "bob", id); m.Conv != conv || m.Text != "crew meeting at 11" {
		t.Errorf("bob got %+v", m)
	}
	editExpect(t, eve, "im/edit", map[string]any{"id": id, "text": "hijacked"}, "not_found")
	editExpect(t, eve, "im/delete", map[string]any{"id": id}, "not_found")
	editExpect(t, bob, "im/edit", map[string]any{"id": id, "text": "not mine"}, "forbidden")
	ann.OK("im/delete", map[string]any{"id": id}, nil)
	if d := editDeletedPush(t, bob, "bob", id); d.Conv != conv {
		t.Errorf("bob got %+v", d)
	}
	editNone(t, eve, "eve (not a member)", "im/edited")
	editNone(t, eve, "eve (not a member)", "im/deleted")
}
