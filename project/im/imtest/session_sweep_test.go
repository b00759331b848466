package imtest

import (
	"database/sql"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// TestExpiredSessionsLeaveTheStore: with session.sweep_interval set, a
// session past its lifetime is removed from the database file, not only
// refused.
func TestExpiredSessionsLeaveTheStore(t *testing.T) {
	servertest.SQLiteOnly(t)
	s := servertest.Start(t, func(c *config.Config) {
		c.Session.Lifetime = config.Duration{Duration: time.Second}
		c.Session.SweepInterval = config.Duration{Duration: 200 * time.Millisecond}
	})
	c := s.DialTCP(t)
	sid := c.Login("sweeper", "password-1")
	c.Close()
	db, err := sql.Open("sqlite", "file:"+s.Config.StorePath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sessions`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d sessions stored after a login, want 1", n)
	}
	servertest.Eventually(t, 5*time.Second, "the expired session removed from the file", func() bool { return count() == 0 })
	if f := s.DialTCP(t).Request("im/resume", map[string]string{"sid": sid}); f.ErrorCode() != "unauthorized" {
		t.Fatalf("resume of the expired session: %s", f)
	}
}
