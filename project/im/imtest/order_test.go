package imtest

// P9: pushes of stored changes reach every connection in increasing seq
// order, whoever sent them and however many senders there are, so the
// highest seq a client has seen is a safe `since` for im/sync. Many senders
// send at once, and edit and delete some of their messages in the same
// burst; readers on WebSocket, TCP and UDP check the order of im/message,
// im/edited and im/deleted together; readers that drop their connection
// mid-burst resume with im/sync from the highest seq they saw and must end
// up with every acknowledged message, once, in its last state.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/app/wire"
	"dce/common/config"
)

const (
	orderSenders = 12
	orderEach    = 20
	orderTotal   = orderSenders * orderEach
	// Of each sender's messages, every orderEditEvery-th is edited and
	// every orderDeleteEvery-th deleted (after its edit), in the burst.
	orderEditEvery   = 2
	orderDeleteEvery = 4
	orderEdits       = orderSenders * ((orderEach + orderEditEvery - 1) / orderEditEvery)
	orderDeletes     = orderSenders * ((orderEach + orderDeleteEvery - 1) / orderDeleteEvery)
	orderChanges     = orderTotal + orderEdits + orderDeletes // pushes each reader gets
	orderDropAt      = orderTotal / 3                         // pushes a dropping reader sees before it drops
	orderSyncPage    = 25                                     // small, so that the resume pages with more
	orderWait        = 20 * time.Second
)

// orderMessage is the part of an im/message, im/edited or im/deleted push
// or an im/sync message the order tests look at.
type orderMessage struct {
	ID      int64  `json:"id"`
	Seq     int64  `json:"seq"`
	Conv    string `json:"conv"`
	Edited  bool   `json:"edited"`
	Deleted bool   `json:"deleted"` // an im/deleted push carries none: set from its path
}

// orderStream is what one connection received, in arrival order.
type orderStream struct {
	name string
	mu   sync.Mutex
	msgs []orderMessage
}

func (s *orderStream) add(t *testing.T, f servertest.Frame) {
	if f.Path != "im/message" && f.Path != "im/edited" && f.Path != "im/deleted" {
		return
	}
	var m orderMessage
	f.Decode(t, &m)
	m.Deleted = m.Deleted || f.Path == "im/deleted"
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

func (s *orderStream) list() []orderMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// orderFromFrames is the im/message pushes among frames, in order.
func orderFromFrames(t *testing.T, name string, frames []servertest.Frame) *orderStream {
	s := &orderStream{name: name}
	for _, f := range frames {
		s.add(t, f)
	}
	return s
}

// orderCheckIncreasing fails the test unless seqs strictly increase along
// msgs (which also rules out a message seen twice), and reports how many
// messages arrived after one with a higher seq.
func orderCheckIncreasing(t *testing.T, name string, msgs []orderMessage) {
	t.Helper()
	late := 0
	var first string
	var highest int64
	for i, m := range msgs {
		if m.Seq <= highest {
			late++
			if first == "" {
				first = fmt.Sprintf("message %d (id %d) has seq %d after seq %d", i, m.ID, m.Seq, highest)
			}
		}
		highest = max(highest, m.Seq)
	}
	if late > 0 {
		t.Errorf("%s: %d of %d messages arrived after one with a higher or equal seq; first: %s", name, late, len(msgs), first)
	}
}

// orderStart runs a server whose send rate limit the burst does not reach.
func orderStart(t *testing.T) *servertest.Server {
	return servertest.Start(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 100000, 100000
	})
}

// orderUDP is a UDP reader with a receive buffer big enough for a whole
// burst: the kernel's default (about 200 KiB of datagram memory) holds
// fewer than 240 pushes, and UDP drops what does not fit.
type orderUDP struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	frames  []servertest.Frame // everything that is not a reply
	replies map[string]chan servertest.Frame
}

// orderUDPLogin logs nickname in over UDP, proving the address when the
// reply asks for it (PROTOCOL.md section 1), and returns the reader.
func orderUDPLogin(t *testing.T, s *servertest.Server, nickname string) *orderUDP {
	t.Helper()
	addr, err := net.ResolveUDPAddr("udp", s.UDPAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	u := &orderUDP{conn: conn, replies: map[string]chan servertest.Frame{}}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			} else if err != nil {
				continue // ICMP unreachable and the like
			}
			f, err := wire.Parse(buf[:n], 0)
			if err != nil {
				continue
			}
			frame := servertest.Frame{Path: f.Path, ID: f.ID, Body: append(json.RawMessage(nil), f.Body...), At: time.Now()}
			u.mu.Lock()
			if w, ok := u.replies[f.Path+":"+f.ID]; ok && f.ID != "" {
				delete(u.replies, f.Path+":"+f.ID)
				w <- frame
			} else {
				u.frames = append(u.frames, frame)
			}
			u.mu.Unlock()
		}
	}()
	var r struct {
		Verify string `json:"verify"`
	}
	u.ok(t, "1", "im/login", map[string]string{"nickname": nickname, "password": "password-" + nickname}).Decode(t, &r)
	if r.Verify != "" {
		u.ok(t, "2", "im/verify", map[string]string{"token": r.Verify})
	}
	return u
}

// ok sends a request and returns its successful reply.
func (u *orderUDP) ok(t *testing.T, id, path string, body any) servertest.Frame {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	w := make(chan servertest.Frame, 1)
	u.mu.Lock()
	u.replies[path+":"+id] = w
	u.mu.Unlock()
	if _, err := u.conn.Write(wire.AppendFrame(nil, path, id, b)); err != nil {
		t.Fatalf("udp %s: %v", path, err)
	}
	select {
	case f := <-w:
		if code := f.ErrorCode(); code != "" {
			t.Fatalf("udp %s: %s", path, f.Body)
		}
		return f
	case <-time.After(orderWait):
		t.Fatalf("udp %s: no reply", path)
		return servertest.Frame{}
	}
}

// Pushes is every frame received that was not a reply.
func (u *orderUDP) Pushes() []servertest.Frame {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.frames)
}

// orderDropper is a reader that drops its connection after orderDropAt
// pushes and comes back with the same session, then catches up with
// im/sync from the highest seq it saw.
type orderDropper struct {
	name      string
	transport string // "websocket" or "tcp"
	sid       string
	before    orderStream // pushes seen before the drop
	after     orderStream // pushes on the new connection
	synced    []orderMessage
	highest   int64
	dropped   chan struct{}
	conn      *servertest.Client
	dropOnce  sync.Once
	connected chan struct{}
}

func newOrderDropper(t *testing.T, s *servertest.Server, transport, nickname string) *orderDropper {
	t.Helper()
	d := &orderDropper{name: nickname, transport: transport, dropped: make(chan struct{}), connected: make(chan struct{})}
	d.sid = s.LoginHTTP(t, nickname, "password-"+nickname)
	d.conn = d.dial(t, s, func(f servertest.Frame) {
		select {
		case <-d.dropped:
			return // it is gone: what still came in is lost, as on a dead link
		default:
		}
		d.before.add(t, f)
		if len(d.before.list()) >= orderDropAt {
			d.dropOnce.Do(func() {
				close(d.dropped)
				go func() { <-d.connected; d.conn.Close() }() // abrupt: no goodbye
			})
		}
	})
	close(d.connected)
	return d
}

// dial connects with the dropper's session; every frame that is not a
// waited-for reply goes to onPush.
func (d *orderDropper) dial(t *testing.T, s *servertest.Server, onPush func(servertest.Frame)) *servertest.Client {
	t.Helper()
	if d.transport == "websocket" {
		c, err := s.DialWSPushes(t, "sid="+d.sid, onPush)
		if err != nil {
			t.Fatalf("%s: dial: %v", d.name, err)
		}
		return c
	}
	c, err := s.DialTCPPushes(t, onPush)
	if err != nil {
		t.Fatalf("%s: dial: %v", d.name, err)
	}
	if f, err := c.Call("im/resume", map[string]string{"sid": d.sid}, orderWait); err != nil || f.ErrorCode() != "" {
		t.Fatalf("%s: im/resume: %v %s", d.name, err, f.Body)
	}
	return c
}

// resume waits for the drop, reconnects and pages through im/sync from the
// highest seq seen before the drop.
func (d *orderDropper) resume(t *testing.T, s *servertest.Server) {
	t.Helper()
	select {
	case <-d.dropped:
	case <-time.After(orderWait):
		t.Fatalf("%s: saw %d pushes, never %d", d.name, len(d.before.list()), orderDropAt)
	}
	for _, m := range d.before.list() {
		d.highest = max(d.highest, m.Seq)
	}
	c := d.dial(t, s, func(f servertest.Frame) { d.after.add(t, f) })
	since := d.highest
	for page := 0; ; page++ {
		f, err := c.Call("im/sync", map[string]any{"since": since, "limit": orderSyncPage}, orderWait)
		if err != nil || f.ErrorCode() != "" {
			t.Fatalf("%s: im/sync since %d: %v %s", d.name, since, err, f.Body)
		}
		var r struct {
			Messages []orderMessage `json:"messages"`
			Seq      int64          `json:"seq"`
			More     bool           `json:"more"`
		}
		f.Decode(t, &r)
		for _, m := range r.Messages {
			if m.Seq <= since {
				t.Errorf("%s: im/sync since %d returned seq %d", d.name, since, m.Seq)
			}
		}
		d.synced = append(d.synced, r.Messages...)
		if r.Seq < since {
			t.Fatalf("%s: im/sync since %d answered seq %d", d.name, since, r.Seq)
		}
		since = r.Seq
		if !r.More {
			return
		}
		if page > orderTotal {
			t.Fatalf("%s: im/sync keeps answering more", d.name)
		}
	}
}

// check: the pushes before and after the drop came in seq order; the sync
// returned no change seen before the drop, and nothing twice; together
// they hold every acknowledged message, and every acknowledged edit and
// deletion.
func (d *orderDropper) check(t *testing.T, acked map[int64]bool, changed orderChanged) {
	t.Helper()
	orderCheckIncreasing(t, d.name+" before its drop", d.before.list())
	orderCheckIncreasing(t, d.name+" after its resume", d.after.list())
	orderCheckIncreasing(t, d.name+"'s im/sync pages", d.synced)
	seen, seenSeq := map[int64]bool{}, map[int64]bool{}
	for _, m := range d.before.list() {
		seen[m.ID], seenSeq[m.Seq] = true, true
	}
	twice := 0
	for _, m := range d.synced {
		if seenSeq[m.Seq] {
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%s: im/sync from seq %d returned %d changes it had already seen", d.name, d.highest, twice)
	}
	everything := slices.Concat(d.before.list(), d.synced, d.after.list())
	for _, m := range everything {
		seen[m.ID] = true
	}
	changed.check(t, d.name, everything)
	var missed []int64
	for id := range acked {
		if !seen[id] {
			missed = append(missed, id)
		}
	}
	slices.Sort(missed)
	if len(missed) > 0 {
		t.Errorf("%s (%s) never saw %d of %d acknowledged messages (%d pushes before the drop, highest seq %d, %d synced, %d pushes after); ids %v",
			d.name, d.transport, len(missed), len(acked), len(d.before.list()), d.highest, len(d.synced), len(d.after.list()), missed)
	}
	t.Logf("%s (%s): %d pushes before the drop up to seq %d, %d from im/sync, %d pushes after",
		d.name, d.transport, len(d.before.list()), d.highest, len(d.synced), len(d.after.list()))
}

// orderSender is a logged-in connection that sends a burst.
type orderSender struct {
	name string
	conn *servertest.Client
}

// orderChanged is the edits and deletions acknowledged in a burst, by
// message id.
type orderChanged struct {
	edited, deleted map[int64]bool
}

// check fails the test unless changes (everything a reader received, in
// any order) hold every acknowledged edit and deletion: a version of each
// edited message that is edited, and of each deleted one that is deleted.
func (c orderChanged) check(t *testing.T, name string, changes []orderMessage) {
	t.Helper()
	edited, deleted := map[int64]bool{}, map[int64]bool{}
	for _, m := range changes {
		if m.Edited {
			edited[m.ID] = true
		}
		if m.Deleted {
			deleted[m.ID] = true
		}
	}
	missed := 0
	for id := range c.edited {
		if !edited[id] && !deleted[id] {
			missed++
		}
	}
	for id := range c.deleted {
		if !deleted[id] {
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("%s missed %d of %d acknowledged edits and deletions", name, missed, len(c.edited)+len(c.deleted))
	}
}

// burst sends orderEach messages to `to`, pipelined (ids 1..orderEach, no
// wait between them), then, pipelined as well, edits every
// orderEditEvery-th and deletes every orderDeleteEvery-th, and returns the
// ids of the messages acknowledged and the changes acknowledged.
func (snd orderSender) burst(t *testing.T, to string, changed orderChanged, mu *sync.Mutex) []int64 {
	for i := 1; i <= orderEach; i++ {
		frame := fmt.Sprintf(`im/send:%d;{"to":%q,"text":"%s says %d","cid":"%s-%d"}`, i, to, snd.name, i, snd.name, i)
		if err := snd.conn.Raw(frame); err != nil {
			t.Errorf("%s: send %d: %v", snd.name, i, err)
			return nil
		}
	}
	var ids []int64
	for range orderEach {
		f, ok := snd.conn.WaitMatch(orderWait, func(f servertest.Frame) bool { return f.Path == "im/send" && f.ID != "" })
		if !ok {
			t.Errorf("%s: %d of %d replies", snd.name, len(ids), orderEach)
			return ids
		}
		if code := f.ErrorCode(); code != "" {
			t.Errorf("%s: send %s failed: %s", snd.name, f.ID, f.Body)
			continue
		}
		var r struct {
			ID int64 `json:"id"`
		}
		f.Decode(t, &r)
		ids = append(ids, r.ID)
	}
	requests := 0
	for k, id := range ids {
		if k%orderEditEvery == 0 {
			requests++
			if err := snd.conn.Raw(fmt.Sprintf(`im/edit:e%d;{"id":%d,"text":"%s edited %d"}`, id, id, snd.name, k)); err != nil {
				t.Errorf("%s: edit %d: %v", snd.name, id, err)
				return ids
			}
		}
		if k%orderDeleteEvery == 0 {
			requests++
			if err := snd.conn.Raw(fmt.Sprintf(`im/delete:d%d;{"id":%d}`, id, id)); err != nil {
				t.Errorf("%s: delete %d: %v", snd.name, id, err)
				return ids
			}
		}
	}
	for range requests {
		f, ok := snd.conn.WaitMatch(orderWait, func(f servertest.Frame) bool {
			return (f.Path == "im/edit" || f.Path == "im/delete") && f.ID != ""
		})
		if !ok {
			t.Errorf("%s: not every edit and deletion was answered", snd.name)
			return ids
		}
		if code := f.ErrorCode(); code != "" {
			t.Errorf("%s: %s:%s failed: %s", snd.name, f.Path, f.ID, f.Body)
			continue
		}
		id, _ := strconv.ParseInt(f.ID[1:], 10, 64)
		mu.Lock()
		if f.Path == "im/edit" {
			changed.edited[id] = true
		} else {
			changed.deleted[id] = true
		}
		mu.Unlock()
	}
	return ids
}

// orderRun is P9 for one kind of conversation: senders send their bursts at
// once to `to` (given the readers' user id; 0 when readers are separate
// users), and the readers are checked.
func orderRun(t *testing.T, private bool) {
	orderRunOn(t, []*servertest.Server{orderStart(t)}, private)
}

// orderRunOn is orderRun with its connections spread over nodes, nodes of
// one server: the readers and senders round the nodes, and each dropper
// resumes on the node after its own.
func orderRunOn(t *testing.T, nodes []*servertest.Server, private bool) {
	at := func(i int) *servertest.Server { return nodes[i%len(nodes)] }
	reader := func(name string) string { // the nickname of a reader
		if private {
			return "target" // every reader is a connection of the addressee
		}
		return name
	}
	ws := at(0).DialWS(t, "", nil)
	ws.Login(reader("ws-reader"), "password-"+reader("ws-reader"))
	tcp := at(1).DialTCP(t)
	_, targetID := authLogin(t, tcp, reader("tcp-reader"), "password-"+reader("tcp-reader"))
	udp := orderUDPLogin(t, at(2), reader("udp-reader"))
	droppers := []*orderDropper{
		newOrderDropper(t, at(0), "websocket", reader("drop-ws")),
		newOrderDropper(t, at(1), "tcp", reader("drop-tcp")),
	}
	for _, d := range droppers {
		d.name = d.transport + " dropper"
	}
	to := "room:lobby"
	if private {
		to = "user:" + strconv.FormatInt(targetID, 10)
	}

	senders := make([]orderSender, orderSenders)
	for i := range senders {
		name := fmt.Sprintf("sender%d", i)
		var c *servertest.Client
		if i%2 == 0 {
			c = at(i).DialWS(t, "", nil)
		} else {
			c = at(i).DialTCP(t)
		}
		c.Login(name, "password-"+name)
		senders[i] = orderSender{name: name, conn: c}
	}
	time.Sleep(200 * time.Millisecond) // presence pushes settle

	start := make(chan struct{})
	var wait sync.WaitGroup
	var mu sync.Mutex
	acked := map[int64]bool{}
	changed := orderChanged{edited: map[int64]bool{}, deleted: map[int64]bool{}}
	for _, snd := range senders {
		wait.Go(func() {
			<-start
			for _, id := range snd.burst(t, to, changed, &mu) {
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		})
	}
	for i, d := range droppers {
		wait.Go(func() { d.resume(t, at(i+1)) })
	}
	close(start)
	wait.Wait()
	if len(acked) != orderTotal || len(changed.edited) != orderEdits || len(changed.deleted) != orderDeletes {
		t.Fatalf("%d of %d messages, %d of %d edits and %d of %d deletions acknowledged",
			len(acked), orderTotal, len(changed.edited), orderEdits, len(changed.deleted), orderDeletes)
	}

	// The readers that stayed get every message as a push, in seq order.
	readers := map[string]interface{ Pushes() []servertest.Frame }{"websocket reader": ws, "tcp reader": tcp, "udp reader": udp}
	for name, c := range readers {
		if !loadWait(5*time.Second, func() bool { return len(orderFromFrames(t, name, c.Pushes()).list()) >= orderChanges }) {
			t.Errorf("%s: %d of %d pushes", name, len(orderFromFrames(t, name, c.Pushes()).list()), orderChanges)
		}
	}
	time.Sleep(200 * time.Millisecond) // a duplicate would come now
	for name, c := range readers {
		msgs := orderFromFrames(t, name, c.Pushes()).list()
		orderCheckIncreasing(t, name, msgs)
		got := map[int64]bool{}
		for _, m := range msgs {
			got[m.ID] = true
		}
		if len(msgs) != orderChanges || len(got) != orderTotal {
			t.Errorf("%s: %d pushes of %d distinct messages, want %d of %d", name, len(msgs), len(got), orderChanges, orderTotal)
		}
		changed.check(t, name, msgs)
	}
	if !private { // the senders read each other's messages too
		for _, snd := range senders {
			orderCheckIncreasing(t, snd.name, orderFromFrames(t, snd.name, snd.conn.Pushes()).list())
		}
	}
	// The droppers' pushes after the resume are in; then they are checked.
	for _, d := range droppers {
		loadWait(5*time.Second, func() bool {
			seen, deleted := map[int64]bool{}, map[int64]bool{}
			for _, list := range [][]orderMessage{d.before.list(), d.synced, d.after.list()} {
				for _, m := range list {
					seen[m.ID] = true
					if m.Deleted {
						deleted[m.ID] = true
					}
				}
			}
			return len(seen) >= orderTotal && len(deleted) >= orderDeletes
		})
	}
	for _, d := range droppers {
		d.check(t, acked, changed)
	}
}

// TestP9PushesInSeqOrder: 12 users send 20 lobby messages each at once,
// and edit 10 and delete 5 of them in the same burst.
func TestP9PushesInSeqOrder(t *testing.T) { orderRun(t, false) }

// TestP9PrivatePushesInSeqOrder: 12 users send 20 private messages each at
// once to one user, whose connections on every transport read them.
func TestP9PrivatePushesInSeqOrder(t *testing.T) { orderRun(t, true) }
