package boot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A deleted message loses its text in the store's files too (PROTOCOL.md
// section 3): the real program stores a unique string among other
// messages (in the lobby, in a private chat, and as an edit's new text),
// deletes them, is stopped with `dce websocket stop`, and then no byte of
// dce.db, dce.db-wal or dce.db-shm, nor of the search index's
// dce-search.db and its -wal and -shm, holds the string, and both logs are
// empty; the messages that were not deleted are still in both files.
// Without secure_delete (sqlite's DSN) the string is found in dce.db.
func TestDeletedTextLeavesTheFilesAfterStop(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	dir, p := t.TempDir(), freePorts(t)
	env := []string{"DCE_LIMITS_MESSAGES_PER_SECOND=100000", "DCE_LIMITS_MESSAGE_BURST=100000"}
	proc := startProcess(t, dir, p, env)
	waitHealthy(t, proc, p, 10*time.Second)
	remote := p.remote()
	ann, _, err := dialLoggedIn(t, remote, "websocket", "ann", "")
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := dialLoggedIn(t, remote, "tcp", "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	var bobUser struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	bob.OK("im/signer", nil, &bobUser)

	const canary = "quince-canary-90d1e2"
	send := func(to, text string) int64 {
		var r struct {
			ID int64 `json:"id"`
		}
		ann.OK("im/send", map[string]string{"to": to, "text": text}, &r)
		return r.ID
	}
	// Long texts, so that the space a deleted row gives up holds more than
	// the start of the next cell can cover.
	secret := func(where string) string { return strings.Repeat("the "+canary+" "+where+"; ", 12) }
	var secrets []int64
	kept := "kept-message-5b7f"
	for i := range 400 {
		send("room:lobby", strings.Repeat("ordinary chatter ", 1+i%6))
		switch i {
		case 100:
			secrets = append(secrets, send("room:lobby", secret("in the lobby")))
		case 200:
			secrets = append(secrets, send("user:"+strconv.FormatInt(bobUser.User.ID, 10), secret("in private")))
		case 300:
			id := send("room:lobby", "a draft")
			ann.OK("im/edit", map[string]any{"id": id, "text": secret("as an edit")}, nil)
			secrets = append(secrets, id)
		case 350:
			send("room:lobby", kept)
		}
	}
	for _, id := range secrets {
		ann.OK("im/delete", map[string]any{"id": id}, nil)
	}
	var found struct {
		Messages []struct {
			ID int64 `json:"id"`
		} `json:"messages"`
	}
	ann.OK("im/search", map[string]any{"q": canary}, &found)
	if len(found.Messages) != 0 {
		t.Errorf("im/search still finds the deleted messages: %+v", found)
	}
	ann.Close()
	bob.Close()

	if out, errOut, code := runCLI(t, dir, nil, "websocket", "stop"); code != 0 {
		t.Fatalf("dce websocket stop: exit %d\n%s%s", code, out, errOut)
	}
	if !proc.waitExit(10 * time.Second) {
		t.Fatal("the server did not exit after stop")
	}
	files := 0
	for _, name := range []string{"dce.db", "dce.db-wal", "dce.db-shm", "dce-search.db", "dce-search.db-wal", "dce-search.db-shm"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files++
		if i := bytes.Index(b, []byte(canary)); i >= 0 {
			t.Errorf("%s holds the deleted text at byte %d", name, i)
		}
		if strings.HasSuffix(name, "-wal") && len(b) != 0 {
			t.Errorf("%s holds %d bytes after a clean stop, want none", name, len(b))
		}
		if (name == "dce.db" || name == "dce-search.db") && !bytes.Contains(b, []byte(kept)) {
			t.Errorf("%s does not hold a message that was not deleted: the test looks in the wrong place", name)
		}
	}
	if files < 2 {
		t.Fatalf("%d store files found, want the store's and the search index's", files)
	}
}
