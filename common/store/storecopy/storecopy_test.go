package storecopy

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dce/app/servertest/testenv"
	"dce/common/model"
	"dce/common/store/postgres"
	"dce/common/store/sqlite"
	"dce/common/store/storetest"
)

// TestCopy fills an embedded store through its API, copies it, and reads
// everything back through the PostgreSQL engine's.
func TestCopy(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dce.db")
	from, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ann := storetest.MustCreateUser(t, from, "Ann")
	bob := storetest.MustCreateUser(t, from, "Bob")
	cat := storetest.MustCreateUser(t, from, "Cat")
	if err := from.SetAdmin(ctx, ann.ID, true); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour)
	if err := from.SaveSession(ctx, "sid-hash", bob.ID, time.Now(), expires); err != nil {
		t.Fatal(err)
	}
	storetest.MustAppend(t, from, storetest.LobbyMessage(ann.ID, "hello Lobby", "c1"))
	direct := storetest.MustAppend(t, from, storetest.DirectMessage(ann.ID, bob.ID, "秘密 secret", ""))
	edited := storetest.MustAppend(t, from, storetest.LobbyMessage(bob.ID, "first draft", ""))
	if _, err := from.EditLater(ctx, edited.ID, "second Draft", nil)(); err != nil {
		t.Fatal(err)
	}
	deleted := storetest.MustAppend(t, from, storetest.LobbyMessage(bob.ID, "gone soon", ""))
	if _, _, err := from.DeleteLater(ctx, deleted.ID, nil)(); err != nil {
		t.Fatal(err)
	}
	group, err := from.CreateGroup(ctx, model.NewGroup{Name: "club", Owner: ann.ID, Private: true, Members: []int64{cat.ID}}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	to := model.Address{Kind: model.AddrGroup, ID: group.Group.ID}
	storetest.MustAppend(t, from, model.NewMessage{Key: to.Key(ann.ID), Sender: ann.ID, To: to.String(), Kind: model.KindText,
		Text: "club news", TS: time.Now().UnixMilli()})
	if err := from.MarkRead(ctx, bob.ID, direct.Key, direct.ID); err != nil {
		t.Fatal(err)
	}
	dissolved, err := from.CreateGroup(ctx, model.NewGroup{Name: "brief", Owner: cat.ID}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := from.RemoveGroupMember(ctx, dissolved.Group.ID, cat.ID, cat.ID, nil); err != nil {
		t.Fatal(err)
	}
	lastSeq, _ := from.LastSeq(ctx)
	var syncs [][]model.Message
	var conversations [][]model.Conversation
	for _, u := range []model.Account{ann, bob, cat} {
		msgs, _, _, err := from.Sync(ctx, u.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		syncs = append(syncs, msgs)
		list, err := from.Conversations(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		conversations = append(conversations, list)
	}
	groups, _ := from.Groups(ctx)
	if err := from.Close(); err != nil {
		t.Fatal(err)
	}

	counts, err := Copy(ctx, path, dsn)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	want := Counts{Users: 3, Sessions: 1, Messages: 5, DirectConversations: 2, ReadMarks: 1, Groups: 2, GroupMembers: 2, LastSeq: lastSeq}
	if counts != want {
		t.Errorf("Copy = %+v, want %+v", counts, want)
	}
	if _, err := Copy(ctx, path, dsn); err == nil {
		t.Error("a second Copy into the same database succeeded")
	}

	db, err := postgres.Open(ctx, postgres.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.UserByNickname(ctx, "ann"); err != nil || got.ID != ann.ID || !got.Admin || got.PasswordHash != ann.PasswordHash {
		t.Errorf("Ann after the copy: %+v, %v", got, err)
	}
	if user, _, _, err := db.LoadSession(ctx, "sid-hash"); err != nil || user != bob.ID {
		t.Errorf("the session after the copy: %d, %v", user, err)
	}
	if seq, _ := db.LastSeq(ctx); seq != lastSeq {
		t.Errorf("LastSeq = %d, want %d", seq, lastSeq)
	}
	for i, u := range []model.Account{ann, bob, cat} {
		msgs, _, _, err := db.Sync(ctx, u.ID, 0, 0)
		if err != nil || !reflect.DeepEqual(msgs, syncs[i]) {
			t.Errorf("Sync of %s after the copy:\n%+v, %v\nwant\n%+v", u.Nickname, msgs, err, syncs[i])
		}
		list, err := db.Conversations(ctx, u.ID)
		if err != nil || !reflect.DeepEqual(list, conversations[i]) {
			t.Errorf("Conversations of %s after the copy:\n%+v, %v\nwant\n%+v", u.Nickname, list, err, conversations[i])
		}
	}
	if got, _ := db.Groups(ctx); !reflect.DeepEqual(got, groups) {
		t.Errorf("Groups after the copy: %+v, want %+v", got, groups)
	}
	if msgs, _, _, err := db.Search(ctx, bob.ID, "秘密", "", 0, 0); err != nil || len(msgs) != 1 || msgs[0].ID != direct.ID {
		t.Errorf("Search after the copy: %+v, %v", msgs, err)
	}
	if msgs, _, _, err := db.Search(ctx, bob.ID, "DRAFT", "", 0, 0); err != nil || len(msgs) != 1 || msgs[0].Text != "second Draft" {
		t.Errorf("Search of an edited text after the copy: %+v, %v", msgs, err)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", result, err)
	}
	// New rows go on past the copied ones.
	next := storetest.MustAppend(t, db, storetest.LobbyMessage(cat.ID, "after the move", ""))
	if next.Seq != lastSeq+1 || next.ID <= deleted.ID+1 {
		t.Errorf("the first message after the copy: id %d seq %d", next.ID, next.Seq)
	}
	dan := storetest.MustCreateUser(t, db, "Dan")
	if dan.ID != cat.ID+1 {
		t.Errorf("the first user after the copy has id %d, want %d", dan.ID, cat.ID+1)
	}
	g, err := db.CreateGroup(ctx, model.NewGroup{Name: "new", Owner: dan.ID}, 0, nil)
	if err != nil || g.Group.ID != dissolved.Group.ID+1 {
		t.Errorf("the first group after the copy: %+v, %v", g, err)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck after new writes = %q, %v", result, err)
	}
}

// freshDatabase makes an empty database on DCE_TEST_POSTGRES's server,
// dropped when t ends.
func freshDatabase(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("DCE_TEST_POSTGRES")
	if dsn == "" {
		testenv.Missing(t, "DCE_TEST_POSTGRES is not set (a PostgreSQL URL whose role may create databases)")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := "dce_copy_" + time.Now().Format("150405_000000")
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, dsn)
		if err == nil {
			admin.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`)
			admin.Close(ctx)
		}
	})
	u, _ := url.Parse(dsn)
	u.Path = "/" + name
	return u.String()
}
