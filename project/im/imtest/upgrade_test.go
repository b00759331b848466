package imtest

// A store written by an earlier release upgrades in place when this one
// starts, with nothing lost. testdata/release-*.db are store files written
// by released builds (the make-release-fixture flag below wrote them, with
// that release's code), and testdata/release-*.json say what each holds.

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
	"dce/common/config"
)

var makeReleaseFixture = flag.String("make-release-fixture", "",
	"write a store file of this build's release to `NAME`.db and .json under testdata, then stop")

// releaseFixture is what a fixture's .json records about its store file.
type releaseFixture struct {
	Release  string            `json:"release"`
	Password string            `json:"password"`
	SIDs     map[string]string `json:"sids"`  // nickname -> a session made before the upgrade
	Lobby    []string          `json:"lobby"` // texts, oldest first
	Direct   []string          `json:"direct"`
	LastSeq  int64             `json:"last_seq"`
	BobRead  int64             `json:"bob_read"` // the lobby message id bob had read to
}

// fixtureUsers are the fixture's accounts: Latin, Chinese and mixed case.
var fixtureUsers = []string{"ann", "Bob", "陈静"}

// TestMakeReleaseFixture writes a fixture; it runs only when asked:
//
//	go test ./project/im/imtest -run TestMakeReleaseFixture -make-release-fixture release-YYYY-MM-DD
func TestMakeReleaseFixture(t *testing.T) {
	if *makeReleaseFixture == "" {
		t.Skip("writes a fixture only with -make-release-fixture NAME")
	}
	s := servertest.Start(t, func(c *config.Config) {
		c.Session.Lifetime = config.Duration{Duration: 50 * 365 * 24 * time.Hour} // the sessions must outlive the fixture
	})
	fx := releaseFixture{Release: *makeReleaseFixture, Password: "fixture-password-1", SIDs: map[string]string{}}
	clients := map[string]*servertest.Client{}
	ids := map[string]int64{}
	for _, nick := range fixtureUsers {
		c := s.DialWS(t, "", nil)
		var r struct {
			User struct {
				ID int64 `json:"id"`
			} `json:"user"`
			SID string `json:"sid"`
		}
		c.OK("im/login", map[string]string{"nickname": nick, "password": fx.Password}, &r)
		clients[nick], ids[nick], fx.SIDs[nick] = c, r.User.ID, r.SID
	}
	texts := []string{"The Database is down", "我们的数据库坏了", "データベースが壊れた", "mixed 中文 and English", "plain"}
	var bobRead int64
	for i := range 30 {
		from := fixtureUsers[i%len(fixtureUsers)]
		text := fmt.Sprintf("%s #%d", texts[i%len(texts)], i)
		var r struct {
			ID int64 `json:"id"`
		}
		clients[from].OK("im/send", map[string]string{"to": "room:lobby", "text": text, "cid": fmt.Sprintf("lobby-%d", i)}, &r)
		fx.Lobby = append(fx.Lobby, text)
		if i == 19 {
			bobRead = r.ID
		}
	}
	for i := range 10 {
		from, to := "ann", "Bob"
		if i%2 == 1 {
			from, to = "Bob", "ann"
		}
		text := fmt.Sprintf("private %d 私聊", i)
		clients[from].OK("im/send", map[string]any{"to": fmt.Sprintf("user:%d", ids[to]), "text": text}, nil)
		fx.Direct = append(fx.Direct, text)
	}
	clients["Bob"].OK("im/read", map[string]any{"with": "room:lobby", "id": bobRead}, nil)
	fx.BobRead = bobRead
	var sync struct {
		Seq int64 `json:"seq"`
	}
	clients["ann"].OK("im/sync", map[string]any{"since": 0}, &sync)
	fx.LastSeq = sync.Seq
	for _, c := range clients {
		c.Close()
	}
	s.Close() // a clean stop: the WAL is checkpointed into the file
	dir := filepath.Join("testdata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(s.Config.Server.RuntimeDir, "dce.db"), filepath.Join(dir, *makeReleaseFixture+".db"))
	b, err := json.MarshalIndent(fx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, *makeReleaseFixture+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromRelease starts this build on a copy of each released
// store file and checks that everything the release stored is there:
// accounts (their passwords too), sessions, history in both directions,
// read marks, sync positions, and that writing goes on from there.
func TestUpgradeFromRelease(t *testing.T) {
	servertest.SQLiteOnly(t)
	fixtures, err := filepath.Glob(filepath.Join("testdata", "release-*.json"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no release fixtures under testdata (%v)", err)
	}
	for _, path := range fixtures {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var fx releaseFixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		t.Run(fx.Release, func(t *testing.T) { checkUpgrade(t, path[:len(path)-len(".json")]+".db", fx) })
	}
}

func checkUpgrade(t *testing.T, dbPath string, fx releaseFixture) {
	cfg := servertest.Config(t)
	copyFile(t, dbPath, filepath.Join(cfg.Server.RuntimeDir, "dce.db"))
	s := servertest.StartConfig(t, cfg, boot.Options{})

	// The sessions made before the upgrade resume without a password.
	bob := s.DialTCP(t)
	var resumed struct {
		User struct {
			ID       int64  `json:"id"`
			Nickname string `json:"nickname"`
		} `json:"user"`
	}
	bob.OK("im/resume", map[string]string{"sid": fx.SIDs["Bob"]}, &resumed)
	if resumed.User.Nickname != "Bob" {
		t.Fatalf("resumed Bob's session as %+v", resumed.User)
	}
	// Passwords still verify, whatever the nickname's script or case.
	chen := s.DialWS(t, "", nil)
	var login struct {
		Registered bool `json:"registered"`
	}
	chen.OK("im/login", map[string]string{"nickname": "陈静", "password": fx.Password}, &login)
	if login.Registered {
		t.Fatal("陈静 registered anew: the account from before the upgrade was not found")
	}
	if f := s.DialWS(t, "", nil).Request("im/login", map[string]string{"nickname": "BOB", "password": "wrong-password-1"}); f.ErrorCode() != "auth_failed" {
		t.Fatalf("a wrong password for BOB: %s, want auth_failed", f)
	}

	type message struct {
		ID      int64  `json:"id"`
		Seq     int64  `json:"seq"`
		Conv    string `json:"conv"`
		Text    string `json:"text"`
		CID     string `json:"cid"`
		Deleted bool   `json:"deleted"`
	}
	texts := func(ms []message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Text)
		}
		return out
	}
	var lobby struct {
		Messages []message `json:"messages"`
		More     bool      `json:"more"`
	}
	bob.OK("im/load", map[string]any{"with": "room:lobby", "limit": 100}, &lobby)
	if got := texts(lobby.Messages); !slices.Equal(got, fx.Lobby) || lobby.More {
		t.Fatalf("the lobby after the upgrade: %q (more %v), want %q", got, lobby.More, fx.Lobby)
	}
	var sync struct {
		Messages []message `json:"messages"`
		Seq      int64     `json:"seq"`
	}
	bob.OK("im/sync", map[string]any{"since": 0}, &sync)
	if len(sync.Messages) != len(fx.Lobby)+len(fx.Direct) || sync.Seq != fx.LastSeq {
		t.Fatalf("sync from 0 after the upgrade: %d messages to seq %d, want %d to seq %d",
			len(sync.Messages), sync.Seq, len(fx.Lobby)+len(fx.Direct), fx.LastSeq)
	}
	var direct []string
	for _, m := range sync.Messages {
		if m.Conv != "room:lobby" {
			direct = append(direct, m.Text)
		}
	}
	if !slices.Equal(direct, fx.Direct) {
		t.Fatalf("Bob's private messages after the upgrade: %q, want %q", direct, fx.Direct)
	}
	var convs struct {
		Conversations []struct {
			Conv   string `json:"conv"`
			Unread int    `json:"unread"`
		} `json:"conversations"`
	}
	bob.OK("im/conversations", nil, &convs)
	unread := map[string]int{}
	for _, c := range convs.Conversations {
		unread[c.Conv] = c.Unread
	}
	// Bob read the lobby to its 20th message; of the 10 after it, the
	// ones he sent himself do not count.
	wantLobbyUnread := 0
	for i := 20; i < len(fx.Lobby); i++ {
		if fixtureUsers[i%len(fixtureUsers)] != "Bob" {
			wantLobbyUnread++
		}
	}
	if len(convs.Conversations) != 2 || unread["room:lobby"] != wantLobbyUnread {
		t.Fatalf("Bob's conversations after the upgrade: %+v, want the lobby with %d unread and one private chat",
			convs.Conversations, wantLobbyUnread)
	}

	// Writing goes on after the release's last seq and id, and the cids
	// the release stored still make a retry idempotent.
	var sent struct {
		ID int64 `json:"id"`
	}
	bob.OK("im/send", map[string]string{"to": "room:lobby", "text": "after the upgrade"}, &sent)
	if last := lobby.Messages[len(lobby.Messages)-1]; sent.ID <= last.ID {
		t.Fatalf("the first message after the upgrade got id %d, not above the release's last %d", sent.ID, last.ID)
	}
	// 陈静 sent the lobby's third message with cid lobby-2.
	var retry struct {
		ID int64 `json:"id"`
	}
	chen.OK("im/send", map[string]string{"to": "room:lobby", "text": "a retry", "cid": "lobby-2"}, &retry)
	if retry.ID != lobby.Messages[2].ID {
		t.Fatalf("a retry of the release's cid lobby-2 got id %d, want the stored %d", retry.ID, lobby.Messages[2].ID)
	}
	var after struct {
		Messages []message `json:"messages"`
		Seq      int64     `json:"seq"`
	}
	bob.OK("im/sync", map[string]any{"since": fx.LastSeq}, &after)
	if got := texts(after.Messages); !slices.Equal(got, []string{"after the upgrade"}) || after.Seq <= fx.LastSeq {
		t.Fatalf("sync since the release's last seq: %q to seq %d, want only the new message above %d", got, after.Seq, fx.LastSeq)
	}
}

// copyFile copies src to dst, mode 0600.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
