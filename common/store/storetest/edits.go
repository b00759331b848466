package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"dce/common/model"
	"dce/common/store"
)

// mustEdit edits and fails the test if it cannot.
func mustEdit(tb testing.TB, db Engine, id int64, text string) model.Message {
	tb.Helper()
	msg, err := db.EditLater(context.Background(), id, text, nil)()
	if err != nil {
		tb.Fatalf("EditLater(%d, %q): %v", id, text, err)
	}
	return msg
}

// mustDelete deletes and fails the test if it cannot or if the message was
// deleted already.
func mustDelete(tb testing.TB, db Engine, id int64) model.Message {
	tb.Helper()
	msg, already, err := db.DeleteLater(context.Background(), id, nil)()
	if err != nil || already {
		tb.Fatalf("DeleteLater(%d): already %v, %v", id, already, err)
	}
	return msg
}

// testMessageForReadability: the lobby is everyone's, a private message
// its two parties', and an unknown id no one's.
func testMessageForReadability(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	eve := MustCreateUser(t, db, "Eve")
	lobby := MustAppend(t, db, LobbyMessage(ann.ID, "for everyone", ""))
	private := MustAppend(t, db, DirectMessage(ann.ID, bob.ID, "for Bob", ""))
	for _, c := range []struct {
		reader, id int64
		readable   bool
	}{
		{ann.ID, lobby.ID, true}, {eve.ID, lobby.ID, true},
		{ann.ID, private.ID, true}, {bob.ID, private.ID, true}, {eve.ID, private.ID, false},
		{ann.ID, private.ID + 1000, false},
	} {
		msg, err := db.MessageFor(ctx, c.reader, c.id)
		if !c.readable {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("MessageFor(reader %d, %d) = %+v, %v; want ErrNotFound", c.reader, c.id, msg, err)
			}
			continue
		}
		if err != nil || msg.ID != c.id || msg.From.Nickname != "Ann" || msg.Text == "" || msg.Key == "" {
			t.Errorf("MessageFor(reader %d, %d) = %+v, %v", c.reader, c.id, msg, err)
		}
	}
}

// testEditAndDelete: an edit replaces the text with a new seq; a deletion
// empties it with a new seq, everywhere a reader looks; a second deletion
// changes nothing; an edit of a deleted or unknown message is not found.
func testEditAndDelete(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	first := MustAppend(t, db, DirectMessage(ann.ID, bob.ID, "frist draft", "c-1"))
	other := MustAppend(t, db, LobbyMessage(bob.ID, "unrelated", ""))

	edited := mustEdit(t, db, first.ID, "first draft")
	if edited.ID != first.ID || edited.Seq <= other.Seq || !edited.Edited || edited.Deleted || edited.Text != "first draft" ||
		edited.From.ID != ann.ID || edited.From.Nickname != "Ann" || edited.Key != first.Key || edited.ToUser != bob.ID ||
		edited.TS != first.TS || edited.CID != "c-1" || edited.To != first.To {
		t.Errorf("EditLater = %+v, after %+v", edited, first)
	}
	if last, err := db.LastSeq(ctx); err != nil || last != edited.Seq {
		t.Errorf("LastSeq = %d, %v; want the edit's %d", last, err, edited.Seq)
	}
	msgs, _, _, err := db.Sync(ctx, bob.ID, other.Seq, 0)
	if err != nil || len(msgs) != 1 || msgs[0].ID != first.ID || msgs[0].Text != "first draft" || !msgs[0].Edited {
		t.Errorf("Sync after the edit = %+v, %v; want the edited message once", msgs, err)
	}

	deleted := mustDelete(t, db, first.ID)
	if deleted.ID != first.ID || deleted.Seq <= edited.Seq || !deleted.Deleted || deleted.Text != "" || deleted.Key != first.Key ||
		deleted.From.ID != ann.ID || deleted.ToUser != bob.ID {
		t.Errorf("DeleteLater = %+v", deleted)
	}
	loaded, _, err := db.Load(ctx, first.Key, 0, 0, 0)
	if err != nil || len(loaded) != 1 || !loaded[0].Deleted || loaded[0].Text != "" || loaded[0].ID != first.ID {
		t.Errorf("Load after the deletion = %+v, %v", loaded, err)
	}
	msgs, latest, _, err := db.Sync(ctx, bob.ID, 0, 0)
	if err != nil || len(msgs) != 2 || msgs[1].ID != first.ID || !msgs[1].Deleted || msgs[1].Text != "" || latest != deleted.Seq {
		t.Errorf("Sync after the deletion = %+v latest %d, %v", msgs, latest, err)
	}
	if got, err := db.MessageFor(ctx, bob.ID, first.ID); err != nil || !got.Deleted || got.Text != "" {
		t.Errorf("MessageFor after the deletion = %+v, %v", got, err)
	}
	if again, duplicate, err := db.Append(ctx, DirectMessage(ann.ID, bob.ID, "frist draft", "c-1")); err != nil || !duplicate ||
		again.ID != first.ID || again.Text != "" || !again.Deleted {
		t.Errorf("a retry of the deleted message's cid = %+v duplicate %v, %v; want it, deleted", again, duplicate, err)
	}

	again, already, err := db.DeleteLater(ctx, first.ID, nil)()
	if err != nil || !already || again.Seq != deleted.Seq {
		t.Errorf("a second DeleteLater = %+v already %v, %v; want already, the same seq", again, already, err)
	}
	if _, err := db.EditLater(ctx, first.ID, "undead", nil)(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EditLater of a deleted message: %v, want ErrNotFound", err)
	}
	if _, err := db.EditLater(ctx, other.ID+1000, "ghost", nil)(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EditLater of an unknown id: %v, want ErrNotFound", err)
	}
	if _, _, err := db.DeleteLater(ctx, other.ID+1000, nil)(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteLater of an unknown id: %v, want ErrNotFound", err)
	}
	if last, err := db.LastSeq(ctx); err != nil || last != deleted.Seq {
		t.Errorf("LastSeq = %d, %v; what stored nothing took a seq (want %d)", last, err, deleted.Seq)
	}
	// The next append takes up from there: no seq was lost or reused.
	if next := MustAppend(t, db, LobbyMessage(ann.ID, "next", "")); next.Seq != deleted.Seq+1 {
		t.Errorf("the next append has seq %d, want %d", next.Seq, deleted.Seq+1)
	}
	if result, err := db.IntegrityCheck(ctx); err != nil || result != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", result, err)
	}
}

// testChangesPublishedInSeqOrder: appends, edits and deletions from many
// goroutines at once have their published actions called one at a time,
// after their commits, in strictly increasing seq order, each before its
// waiter returns; nothing is published for a change that stored nothing.
func testChangesPublishedInSeqOrder(t *testing.T, db Engine) {
	ctx := context.Background()
	ann := MustCreateUser(t, db, "Ann")
	bob := MustCreateUser(t, db, "Bob")
	log := newPublishLog(t, db)
	publish := log.publish
	isPublished := func(seq int64) bool { return log.has(func(m model.Message) bool { return m.Seq == seq }) }

	const writers, each = 8, 15
	var wait sync.WaitGroup
	for w := range writers {
		wait.Go(func() {
			sender, peer := ann.ID, bob.ID
			if w%2 == 1 {
				sender, peer = bob.ID, ann.ID
			}
			for i := range each {
				m := LobbyMessage(sender, fmt.Sprint(w, "/", i), "")
				if i%3 == 1 {
					m = DirectMessage(sender, peer, fmt.Sprint(w, "/", i), "")
				}
				msg, _, err := db.AppendLater(ctx, m, publish)()
				if err != nil {
					t.Errorf("AppendLater: %v", err)
					return
				}
				// Pipelined, as a connection sends them: an edit, then
				// (for some) a deletion behind it.
				edit := db.EditLater(ctx, msg.ID, fmt.Sprint(w, "/", i, " edited"), publish)
				var deletion func() (model.Message, bool, error)
				if i%2 == 0 {
					deletion = db.DeleteLater(ctx, msg.ID, publish)
				}
				edited, err := edit()
				if err != nil || !edited.Edited || !isPublished(edited.Seq) {
					t.Errorf("EditLater: %+v, %v (published before the wait returned: %v)", edited, err, isPublished(edited.Seq))
					return
				}
				if deletion != nil {
					deleted, already, err := deletion()
					if err != nil || already || deleted.Seq <= edited.Seq || !isPublished(deleted.Seq) {
						t.Errorf("DeleteLater: %+v already %v, %v", deleted, already, err)
						return
					}
				}
			}
		})
	}
	wait.Wait()
	deletions := writers * ((each + 1) / 2)
	published := log.messages()
	if want := writers*each*2 + deletions; len(published) != want {
		t.Fatalf("published called %d times for %d changes", len(published), want)
	}
	kinds := map[string]int{}
	for i, msg := range published {
		if i > 0 && msg.Seq <= published[i-1].Seq {
			t.Fatalf("published call %d has seq %d after seq %d", i, msg.Seq, published[i-1].Seq)
		}
		switch {
		case msg.Deleted:
			kinds["deleted"]++
			if msg.Text != "" {
				t.Errorf("a deletion published text %q", msg.Text)
			}
		case msg.Edited:
			kinds["edited"]++
		default:
			kinds["appended"]++
		}
	}
	if kinds["appended"] != writers*each || kinds["edited"] != writers*each || kinds["deleted"] != deletions {
		t.Errorf("published %v", kinds)
	}

	// Nothing is published for what stores nothing.
	count := len(published)
	gone := published[count-1].ID
	if !published[count-1].Deleted {
		gone = mustDelete(t, db, published[count-1].ID).ID // published nothing: no action given
	}
	if _, already, err := db.DeleteLater(ctx, gone, publish)(); err != nil || !already {
		t.Errorf("deleting a deleted message: already %v, %v", already, err)
	}
	if _, err := db.EditLater(ctx, gone, "again", publish)(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("editing a deleted message: %v, want ErrNotFound", err)
	}
	if _, err := db.EditLater(ctx, gone+10000, "nobody", publish)(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("editing an unknown message: %v, want ErrNotFound", err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.EditLater(ended, published[0].ID, "too late", publish)(); !errors.Is(err, context.Canceled) {
		t.Errorf("an ended ctx: %v, want context.Canceled", err)
	}
	MustAppend(t, db, LobbyMessage(ann.ID, "after", "")) // one more commit: anything owed is published by now
	if published = log.messages(); len(published) != count {
		t.Errorf("published called %d more times for changes that stored nothing", len(published)-count)
	}
}
