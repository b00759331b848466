package imtest

// The browser UI under moderation: a kicked page says why and waits for
// the user instead of reconnecting; a banned one says so and cannot log
// back in.

import (
	"testing"
	"time"

	"dce/app/servertest"
)

const noticeText = `document.getElementById('notice-text').textContent`

// TestBrowserKickAndBan: an admin (over TCP) kicks bob, whose page shows
// the reason and stays offline until he clicks Reconnect, which resumes
// his session; then bans him: the page says he is banned, and the login
// the reconnect leads to is refused.
func TestBrowserKickAndBan(t *testing.T) {
	bob := servertest.StartBrowser(t)
	s := servertest.Start(t)
	admin := s.DialTCP(t)
	moderator(t, s, admin)
	bob.LoginUI(s.HTTPURL, "bob", "password-bob")
	bob.WaitOnline("after the login")
	bobID := selfID(t, bob)

	admin.OK("admin/kick", map[string]any{"user": bobID, "reason": "take a break"}, nil)
	bob.Wait("the kick's notice with its reason", `!document.getElementById('notice').hidden && `+
		noticeText+`.includes('administrator') && `+noticeText+`.includes('take a break')`, noticeText)
	time.Sleep(1500 * time.Millisecond) // longer than the first reconnect's delay
	if bob.True(`document.getElementById('status').dataset.state === 'open'`) {
		t.Fatal("the kicked page reconnected by itself")
	}
	bob.Click("#notice-action")
	bob.WaitOnline("after Reconnect")
	if id := selfID(t, bob); id != bobID {
		t.Fatalf("after a kick the page resumed as %d, want %d", id, bobID)
	}

	admin.OK("admin/ban", map[string]any{"user": bobID, "minutes": 60, "reason": "spam"}, nil)
	bob.Wait("the ban's notice", `!document.getElementById('notice').hidden && `+
		noticeText+`.includes('banned') && `+noticeText+`.includes('spam')`, noticeText)
	bob.Click("#notice-action")
	bob.Wait("the login screen: the ban ended the session", `!document.getElementById('login').hidden`)
	bob.SetValue("#nickname", "bob")
	bob.SetValue("#password", "password-bob")
	bob.Click("#login-submit")
	bob.Wait("the login refused", `document.getElementById('chat').hidden && document.getElementById('login-error').textContent !== ''`,
		`document.getElementById('login-error').textContent`)
	checkClean(t, bob)
}
