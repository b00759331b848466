package imtest

// The page's resume (PROTOCOL.md section 1: the highest seq seen is a safe
// `since` for im/sync): the page loses its connection while others keep
// writing, and shows everything once when it is back, without a reload.
// X6 (TestBrowserReconnectAfterRestart) does the same across a restart.

import (
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
)

// resumeSender is a TCP user who sends to `to`.
type resumeSender struct {
	name, sid string
	id        int64
	conn      *servertest.Client
	to        string
	mu        sync.Mutex
	acked     map[int64]string // id -> text
	sent      atomic.Int64
}

// run sends from resumeDepth goroutines at once, each a message after
// another as fast as they are acknowledged, until stop is closed or most
// are sent.
func (r *resumeSender) run(t *testing.T, stop <-chan struct{}, most int64) {
	var wait sync.WaitGroup
	for range resumeDepth {
		wait.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := r.sent.Add(1)
				if n > most {
					return
				}
				r.send(t, fmt.Sprintf("%s %d", r.name, n))
			}
		})
	}
	wait.Wait()
}

// resumeDepth is how many sends each sender has in flight: enough that
// pushes keep coming while the page reconnects and catches up.
const resumeDepth = 4

func (r *resumeSender) send(t *testing.T, text string) {
	f, err := r.conn.Call("im/send", map[string]string{"to": r.to, "text": text}, browserWait)
	if err != nil || f.ErrorCode() != "" {
		t.Errorf("%s: send %q: %v %s", r.name, text, err, f.Body)
		return
	}
	var reply struct {
		ID int64 `json:"id"`
	}
	f.Decode(t, &reply)
	r.mu.Lock()
	r.acked[reply.ID] = text
	r.mu.Unlock()
}

// resumeProxy stands between the page and the server, byte for byte, so
// that a test can cut the page's connections (as a dead link or a server
// that dropped them would), refuse new ones until it lets them through,
// and slow what the page sends on the connections let through.
type resumeProxy struct {
	listener net.Listener
	target   string
	mu       sync.Mutex
	open     bool
	lag      time.Duration // before each write to the server, after the first, on connections let through
	back     chan struct{} // closed when the first connection let through comes
	conns    []net.Conn
}

func startResumeProxy(t *testing.T, target string) *resumeProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &resumeProxy{listener: l, target: target, open: true}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if !p.open {
				p.mu.Unlock()
				c.Close()
				continue
			}
			lag := p.lag
			if p.back != nil {
				close(p.back)
				p.back = nil
			}
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go p.forward(c, lag)
		}
	}()
	return p
}

func (p *resumeProxy) forward(c net.Conn, lag time.Duration) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	go func() {
		buf := make([]byte, 32<<10)
		for first := true; ; first = false {
			n, err := c.Read(buf)
			if n > 0 {
				if !first {
					time.Sleep(lag)
				}
				if _, werr := s.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		s.Close()
	}()
	io.Copy(c, s)
	c.Close()
}

// cut closes every connection through the proxy and refuses new ones
// (closes them as soon as they come) until let.
func (p *resumeProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = false
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// let lets connections through again, what they send to the server slowed
// by lag; the channel is closed when the first comes.
func (p *resumeProxy) let(lag time.Duration) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open, p.lag = true, lag
	p.back = make(chan struct{})
	return p.back
}

// TestBrowserResumeMidBurst: the page is open on the lobby when its
// connection is cut, and it cannot connect again for a while; two users
// write to the lobby and one to the page's user privately, while it is
// away and on through its reconnect and catch-up. The lobby then shows
// every acknowledged message exactly once, in id order, without a reload,
// and the sidebar counts each private message once as unread, with the
// last one as its preview.
func TestBrowserResumeMidBurst(t *testing.T) {
	ann := servertest.StartBrowser(t)
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 100000, 100000
	})
	proxy := startResumeProxy(t, strings.TrimPrefix(s.HTTPURL, "http://"))
	ann.LoginUI("http://"+proxy.listener.Addr().String(), "ann", "password-ann")
	annID := selfID(t, ann)

	var senders []*resumeSender
	for _, name := range []string{"bob", "cat", "eve", "fay"} {
		senders = append(senders, &resumeSender{name: name, to: "room:lobby"})
	}
	dan := &resumeSender{name: "dan", to: "user:" + strconv.FormatInt(annID, 10)}
	senders = append(senders, dan)
	for _, r := range senders {
		r.acked = map[int64]string{}
		r.conn = s.DialTCP(t)
		r.sid, r.id = authLogin(t, r.conn, r.name, "password-"+r.name)
	}
	senders[0].send(t, "before the drop")
	ann.Wait("the message before the drop", msgCount("before the drop")+` === 1`)

	// Away: the connection is cut, and the page's retries fail.
	proxy.cut()
	ann.Wait("the page noticing its connection is gone", `!window.dceDebug.connected`)
	for i := range 5 {
		for _, r := range senders {
			r.send(t, fmt.Sprintf("%s away %d", r.name, i))
		}
	}
	// Back while the messages flow: the page retries at once when the
	// browser says it is online again, and its requests reach the server
	// late, so that pushes come in before its catch-up asks for anything.
	back := proxy.let(30 * time.Millisecond)
	servertest.Eval[bool](ann, `window.dispatchEvent(new Event('online'))`)
	select {
	case <-back:
	case <-time.After(browserWait):
		t.Fatal("the page did not reconnect")
	}
	stop := make(chan struct{})
	var wait sync.WaitGroup
	for _, r := range senders {
		wait.Go(func() { r.run(t, stop, 150) })
	}
	ann.Wait("the page online again", `document.getElementById('status').dataset.state === 'open' && document.getElementById('status').textContent === 'online'`)
	time.Sleep(100 * time.Millisecond) // and messages go on coming after the catch-up
	close(stop)
	wait.Wait()

	var lobby []int64
	for _, r := range senders[:len(senders)-1] {
		for id := range r.acked {
			lobby = append(lobby, id)
		}
	}
	slices.Sort(lobby)
	loadWait(browserWait, func() bool { return len(servertest.Eval[[]float64](ann, shownIDs)) >= len(lobby) })
	time.Sleep(200 * time.Millisecond) // a duplicate would show now
	var shown []int64
	for _, id := range servertest.Eval[[]float64](ann, shownIDs) {
		shown = append(shown, int64(id))
	}
	if !slices.Equal(shown, lobby) {
		var missing, extra []int64
		for _, id := range lobby {
			if !slices.Contains(shown, id) {
				missing = append(missing, id)
			}
		}
		for i, id := range shown {
			if !slices.Contains(lobby, id) || (i > 0 && shown[i-1] >= id) {
				extra = append(extra, id)
			}
		}
		t.Errorf("the lobby shows %d messages, want the %d acknowledged, once each in id order: missing %v; twice, out of order or unknown %v",
			len(shown), len(lobby), missing, extra)
	}

	// The sidebar: dan's private messages, each counted once.
	li := fmt.Sprintf(`#conv-list li[data-conv="user:%d"]`, dan.id)
	want := len(dan.acked)
	last := dan.acked[slices.Max(slices.Collect(maps.Keys(dan.acked)))]
	ann.Wait(fmt.Sprintf("dan's conversation with %d unread and %q as its preview", want, last),
		`document.querySelector('`+li+` .unread')?.textContent === `+js(unreadText(want))+
			` && document.querySelector('`+li+` .row-sub')?.textContent === `+js(last),
		`document.querySelector('`+li+`')?.innerText`)
	checkClean(t, ann)
	t.Logf("%d lobby and %d private messages (25 while the page was away), each shown once", len(lobby), want)
}

// unreadText is how the sidebar's badge shows n unread messages.
func unreadText(n int) string {
	if n > 99 {
		return "99+"
	}
	return strconv.Itoa(n)
}
