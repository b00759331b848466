package imtest

// Item 8 of the hardening issue: the failed-login limit holds when the
// wrong passwords come all at once (TESTPLAN A6's thresholds, concurrently).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"dce/app/servertest"
)

// TestA6ConcurrentWrongPasswords: 60 wrong passwords for one nickname from
// one address, all at once, get exactly the limit (5) of auth_failed and
// rate_limited for the rest: an attempt is counted before its hash is
// computed, not after. The right password then is rate_limited too, and
// from another address it still logs in.
func TestA6ConcurrentWrongPasswords(t *testing.T) {
	s := servertest.Start(t)
	const nick, right, wrong, attempts, limit = "race-owner", "right-password", "wrong-password", 60, 5
	s.DialTCP(t).Login(nick, right)

	client := servertest.HTTPClientFrom("127.0.0.1", attempts)
	body, _ := json.Marshal(map[string]string{"nickname": nick, "password": wrong})
	codes := make([]string, attempts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = postLoginCode(client, s.HTTPURL, body)
		}()
	}
	close(start)
	wg.Wait()
	count := map[string]int{}
	for _, c := range codes {
		count[c]++
	}
	if count["auth_failed"] != limit || count["rate_limited"] != attempts-limit {
		t.Fatalf("%d concurrent wrong passwords from one address: %v, want exactly %d auth_failed and %d rate_limited",
			attempts, count, limit, attempts-limit)
	}
	right1, _ := json.Marshal(map[string]string{"nickname": nick, "password": right})
	if code := postLoginCode(client, s.HTTPURL, right1); code != "rate_limited" {
		t.Fatalf("the right password after the lockout: %q, want rate_limited", code)
	}
	if code := postLoginCode(servertest.HTTPClientFrom("127.0.0.2", 1), s.HTTPURL, right1); code != "" {
		t.Fatalf("the right password from another address: %q, want a login", code)
	}
}

// TestA6CorrectPasswordsLeaveNoFailure: correct logins at once never count
// as failures: after 20 of them, 5 wrong ones are still all auth_failed.
func TestA6CorrectPasswordsLeaveNoFailure(t *testing.T) {
	s := servertest.Start(t)
	const nick, right, wrong = "race-right", "right-password", "wrong-password"
	s.DialTCP(t).Login(nick, right)
	client := servertest.HTTPClientFrom("127.0.0.1", 20)
	body, _ := json.Marshal(map[string]string{"nickname": nick, "password": right})
	codes := make([]string, 20)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i] = postLoginCode(client, s.HTTPURL, body) }()
	}
	wg.Wait()
	for i, c := range codes {
		// A right password may meet the others' attempts still being
		// hashed (rate_limited, with a short wait); it never fails.
		if c != "" && c != "rate_limited" {
			t.Fatalf("correct login %d: %q", i, c)
		}
	}
	bad, _ := json.Marshal(map[string]string{"nickname": nick, "password": wrong})
	for i := 1; i <= 5; i++ {
		if code := postLoginCode(client, s.HTTPURL, bad); code != "auth_failed" {
			t.Fatalf("wrong password %d after the correct ones: %q, want auth_failed", i, code)
		}
	}
	if code := postLoginCode(client, s.HTTPURL, bad); code != "rate_limited" {
		t.Fatalf("6th wrong password: %q, want rate_limited", code)
	}
}

// postLoginCode posts im/login and returns the error code ("" for a
// login, "transport: ..." when the request itself failed).
func postLoginCode(client *http.Client, base string, body []byte) string {
	req, _ := http.NewRequest(http.MethodPost, base+"/im/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("transport: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		return ""
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return fmt.Sprintf("status %d: %s", resp.StatusCode, b)
	}
	return e.Error.Code
}
