package imtest

// A10: the authorization matrix (IDOR). Every node that takes an id or an
// address, asked by every kind of caller about every kind of target, gets
// exactly the answer of PROTOCOL.md sections 3-5 and of the product's
// decisions: over WebSocket for every cell, and over TCP, UDP and HTTP for
// one target of every node. A canary written in a private chat and in a
// private group never reaches a user outside them, in anything that user
// fetches or is pushed on any of its connections, before or after it is
// edited and deleted.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/node"
	"dce/app/servertest"
	"dce/common/config"
)

// The callers, the matrix's columns. One person plays each part for every
// target; where a part means nothing for a target (the owner of the
// lobby), that person is just another logged-in user there.
const (
	azAnon      = iota // no login
	azUser             // A: logged in, in nothing but the lobby; the canary watcher
	azNonmember        // N: a member of a private group of its own, not of the target's
	azMember           // C: a member of the target, not its message's author; the other party of the private chat
	azAuthor           // B: a member of the target and the author of its message
	azOwner            // O: the owner of the groups; unrelated to the private chat
	azAdmin            // D: an admin, a member of nothing
	azActors
)

var azActorNames = [azActors]string{"anonymous", "user", "non-member", "member", "author", "owner", "admin"}

// A cell's answer: success, or the error code.
const (
	azOK = "ok"
	azU  = "unauthorized"
	azF  = "forbidden"
	azNF = "not_found"
	azBR = "bad_request"
)

// azWant is one row's answers, by caller (the azActors order).
type azWant [azActors]string

// azTarget is what a cell names.
type azTarget int

const (
	tgNone    azTarget = iota // the node names nothing
	tgLobby                   // room:lobby, and B's message there
	tgChat                    // the private chat B<->C, and B's message there
	tgOpen                    // group G: open, owner O, members B and C; B's message there
	tgClosed                  // group P: private, owner O, members B and C; B's message there
	tgNoUser                  // a user id no one has
	tgNoGroup                 // a group id no group has
	tgGone                    // group Q: dissolved; B's message there stays in the store
	tgNoMsg                   // a message id no message has
	tgDeleted                 // a lobby message B deleted
	tgForeign                 // P's message, named as if it were in the lobby
)

var azTargetNames = map[azTarget]string{tgNone: "-", tgLobby: "lobby", tgChat: "private chat B<->C",
	tgOpen: "open group", tgClosed: "private group", tgNoUser: "unknown user", tgNoGroup: "unknown group",
	tgGone: "dissolved group", tgNoMsg: "unknown message", tgDeleted: "deleted message",
	tgForeign: "private group's message via the lobby"}

// azNoID is an id no user, group or message has.
const azNoID = int64(1) << 40

// azStatus is the HTTP status of each error code (PROTOCOL.md section 4).
var azStatus = map[string]int{"bad_frame": 400, "bad_request": 400, "unauthorized": 401, "auth_failed": 401,
	"forbidden": 403, "not_found": 404, "too_large": 413, "rate_limited": 429, "internal": 500}

// azPerson is a caller with a connection on each stream transport (and its
// sid for HTTP); the anonymous one has no sid.
type azPerson struct {
	nick          string
	id            int64
	sid           string
	ws, tcp, udp  *servertest.Client
	transportConn map[string]*servertest.Client
}

// azSecret is a text that only some users may see: a message's text or a
// group's name.
type azSecret struct {
	what    string
	text    string
	readers map[int64]bool // who may be answered it now
	heard   map[int64]bool // who may have been pushed it at some time
}

type azFixture struct {
	t        *testing.T
	s        *servertest.Server
	cast     [azActors]*azPerson
	invitee  *azPerson // invited into G and P by the invite cells
	victim   *azPerson // removed from fresh groups by the remove cells
	everyone []*azPerson
	groups   map[azTarget]int64 // tgOpen, tgClosed, tgGone
	own      int64              // N's private group Z
	msgs     map[azTarget]int64
	texts    map[azTarget]string // the secret text of tg's message
	names    map[azTarget]string // tg's group name
	secrets  []*azSecret
	marker   string  // in every canary text
	canaries []int64 // B's canary in B<->C, then in P
	canaryS  []*azSecret
	methods  map[string]node.Method
}

// azBody makes a cell's request body for the caller who, and what to undo
// after the cell (nil for nothing).
type azBody func(f *azFixture, tg azTarget, who int) (map[string]any, func())

// azShape checks a success's result.
type azShape func(f *azFixture, c azCell, r map[string]json.RawMessage) error

type azRow struct {
	node       string
	tg         azTarget
	want       azWant
	body       azBody
	shape      azShape
	everywhere bool // also over TCP, UDP and HTTP
}

type azCell struct {
	row       *azRow
	who       int
	transport string
	body      map[string]any
}

func (c azCell) String() string {
	return fmt.Sprintf("%s [%s] as %s over %s %s", c.row.node, azTargetNames[c.row.tg], azActorNames[c.who],
		c.transport, azEncode(c.body))
}

// azTW is one target of a node and its answers.
type azTW struct {
	tg   azTarget
	want azWant
}

// azRows is a node's rows; the one for everywhere runs over every transport.
func azRows(path string, body azBody, shape azShape, everywhere azTarget, cells ...azTW) []azRow {
	rows := make([]azRow, 0, len(cells))
	for _, c := range cells {
		rows = append(rows, azRow{node: path, tg: c.tg, want: c.want, body: body, shape: shape, everywhere: c.tg == everywhere})
	}
	return rows
}

func azEncode(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func azHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func azUserAddr(id int64) string  { return "user:" + strconv.FormatInt(id, 10) }
func azGroupAddr(id int64) string { return "group:" + strconv.FormatInt(id, 10) }

// addr is how who names tg: the private chat is user:C for everyone but C
// (for whom it is user:B), so a third party naming it names its own chat
// with C.
func (f *azFixture) addr(tg azTarget, who int) string {
	switch tg {
	case tgChat:
		if who == azMember {
			return azUserAddr(f.cast[azAuthor].id)
		}
		return azUserAddr(f.cast[azMember].id)
	case tgOpen, tgClosed, tgGone, tgNoGroup:
		return azGroupAddr(f.group(tg))
	case tgNoUser:
		return azUserAddr(azNoID)
	}
	return "room:lobby"
}

// msg is the message tg names.
func (f *azFixture) msg(tg azTarget) int64 {
	switch tg {
	case tgNoMsg:
		return azNoID
	case tgForeign:
		return f.msgs[tgClosed]
	case tgNoUser, tgNoGroup, tgNone:
		return f.msgs[tgLobby]
	}
	return f.msgs[tg]
}

// group is the group tg names.
func (f *azFixture) group(tg azTarget) int64 {
	if tg == tgNoGroup {
		return azNoID
	}
	return f.groups[tg]
}

func (f *azFixture) ids(parts ...int) map[int64]bool {
	m := map[int64]bool{}
	for _, p := range parts {
		m[f.cast[p].id] = true
	}
	return m
}

// members is who is in G and P (and may read them).
func (f *azFixture) members() map[int64]bool {
	m := f.ids(azMember, azAuthor, azOwner)
	m[f.invitee.id] = true
	return m
}

func (f *azFixture) all() map[int64]bool {
	m := map[int64]bool{}
	for _, p := range f.everyone {
		m[p.id] = true
	}
	return m
}

func (f *azFixture) secret(what, text string, readers, heard map[int64]bool) *azSecret {
	if heard == nil {
		heard = readers
	}
	s := &azSecret{what: what, text: text, readers: readers, heard: heard}
	f.secrets = append(f.secrets, s)
	return s
}

// leaks lists the secrets in b that p may not be answered.
func (f *azFixture) leaks(p *azPerson, b []byte, heard bool) []string {
	var out []string
	for _, s := range f.secrets {
		may := s.readers[p.id]
		if heard {
			may = s.heard[p.id]
		}
		if p.id == 0 {
			may = false
		}
		if !may && strings.Contains(string(b), s.text) {
			out = append(out, s.what)
		}
	}
	return out
}

// call sends path with body as p over transport and returns the error
// code ("" for a success) and the result. Over HTTP it also checks that
// the status is the code's.
func (f *azFixture) call(p *azPerson, transport, path string, body any) (string, []byte, error) {
	if transport != "http" {
		fr, err := p.transportConn[transport].TryRequest(path, body, servertest.DefaultTimeout)
		if err != nil {
			return "", nil, err
		}
		return fr.ErrorCode(), fr.Body, nil
	}
	var hdr []string
	if p.sid != "" {
		hdr = []string{"Authorization", "Bearer " + p.sid}
	}
	resp, b := f.s.Post(f.t, path, body, hdr...)
	var e struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	switch {
	case resp.StatusCode == http.StatusOK && e.Error != nil:
		return "", b, fmt.Errorf("status 200 with an error: %s", b)
	case resp.StatusCode == http.StatusOK:
		return "", b, nil
	case e.Error == nil:
		return "", b, fmt.Errorf("status %d without an error object: %s", resp.StatusCode, b)
	case azStatus[e.Error.Code] != resp.StatusCode:
		return e.Error.Code, b, fmt.Errorf("status %d for %s, want %d: %s", resp.StatusCode, e.Error.Code, azStatus[e.Error.Code], b)
	}
	return e.Error.Code, b, nil
}

// run asks one cell and checks its answer, that it leaks nothing, and the
// shape of a success.
func (f *azFixture) run(row *azRow, who int, transport string) {
	f.t.Helper()
	body, undo := row.body(f, row.tg, who)
	if undo != nil {
		defer undo()
	}
	c := azCell{row: row, who: who, transport: transport, body: body}
	want := row.want[who]
	if f.methods[row.node]&azMethod(transport) == 0 {
		want = azNF // no such node on this transport
	}
	p := f.cast[who]
	code, res, err := f.call(p, transport, row.node, body)
	if err != nil {
		f.t.Errorf("%s: %v", c, err)
		return
	}
	got := code
	if got == "" {
		got = azOK
	}
	if got != want {
		f.t.Errorf("%s: got %s, want %s; reply %s", c, got, want, res)
		return
	}
	if leaked := f.leaks(p, res, false); len(leaked) > 0 {
		f.t.Errorf("%s: the reply carries %v: %s", c, leaked, res)
	}
	if want != azOK || row.shape == nil {
		return
	}
	var r map[string]json.RawMessage
	if err := json.Unmarshal(res, &r); err != nil {
		f.t.Errorf("%s: the result is not an object: %s", c, res)
		return
	}
	if err := row.shape(f, c, r); err != nil {
		f.t.Errorf("%s: %v; result %s", c, err, res)
	}
}

func azMethod(transport string) node.Method {
	switch transport {
	case "websocket":
		return node.WebSocket
	case "tcp":
		return node.TCP
	case "udp":
		return node.UDP
	case "http":
		return node.HTTP
	}
	return 0
}

// --- bodies ---

func azStatic(f func(f *azFixture, tg azTarget, who int) map[string]any) azBody {
	return func(fx *azFixture, tg azTarget, who int) (map[string]any, func()) { return f(fx, tg, who), nil }
}

func azEmpty(*azFixture, azTarget, int) map[string]any { return map[string]any{} }

// fresh makes a new group like tg (open or private, owned by O, with B, C
// and the victim in it) for a cell that changes membership, and returns
// its id and how to dissolve it afterwards; other targets are the
// fixture's.
func (f *azFixture) fresh(tg azTarget, who int) (int64, func()) {
	if tg != tgOpen && tg != tgClosed {
		return f.group(tg), nil
	}
	owner := f.cast[azOwner]
	var r struct {
		Group struct {
			ID int64 `json:"id"`
		} `json:"group"`
	}
	owner.ws.OK("im/group/create", map[string]any{"name": "authz fresh", "private": tg == tgClosed,
		"members": []int64{f.cast[azAuthor].id, f.cast[azMember].id, f.victim.id}}, &r)
	id := r.Group.ID
	return id, func() {
		for _, p := range []*azPerson{owner, f.cast[azAuthor], f.cast[azMember], f.victim, f.cast[who]} {
			if p.id != 0 {
				p.ws.Request("im/group/leave", map[string]any{"id": id})
			}
		}
	}
}

// doomed is a fresh message of B's in tg for a delete cell; other targets
// are the fixture's.
func (f *azFixture) doomed(tg azTarget) int64 {
	switch tg {
	case tgLobby, tgChat, tgOpen, tgClosed:
		var r struct {
			ID int64 `json:"id"`
		}
		f.cast[azAuthor].ws.OK("im/send", map[string]any{"to": f.addr(tg, azAuthor), "text": "authz doomed"}, &r)
		return r.ID
	}
	return f.msg(tg)
}

// editText is the new text of an edit cell: a secret keeps its secret.
func (f *azFixture) editText(tg azTarget) string {
	if t, ok := f.texts[tg]; ok {
		return t + " (edited)"
	}
	return "authz edit"
}

// --- shapes ---

type azMsg struct {
	ID      int64  `json:"id"`
	Seq     int64  `json:"seq"`
	Conv    string `json:"conv"`
	Text    string `json:"text"`
	Edited  bool   `json:"edited"`
	Deleted bool   `json:"deleted"`
}

type azGroup struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Owner   int64  `json:"owner"`
	Private bool   `json:"private"`
	Members int    `json:"members"`
}

func azField(r map[string]json.RawMessage, key string, v any) error {
	raw, ok := r[key]
	if !ok || string(raw) == "null" {
		return fmt.Errorf("no %q in the result", key)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%q: %v", key, err)
	}
	return nil
}

func azNothing(_ *azFixture, _ azCell, r map[string]json.RawMessage) error {
	if len(r) != 0 {
		return fmt.Errorf("want {}")
	}
	return nil
}

func azSendShape(f *azFixture, c azCell, r map[string]json.RawMessage) error {
	var id, ts int64
	var cid, conv string
	for _, e := range []error{azField(r, "id", &id), azField(r, "ts", &ts), azField(r, "cid", &cid), azField(r, "conv", &conv)} {
		if e != nil {
			return e
		}
	}
	if id <= 0 || ts <= 0 {
		return fmt.Errorf("id %d, ts %d", id, ts)
	}
	if want := f.addr(c.row.tg, c.who); conv != want {
		return fmt.Errorf("conv %q, want %q", conv, want)
	}
	return nil
}

// azMessagesShape checks {"messages":[...],"more":bool} and, when with is
// set, that every message is of that conversation as the caller sees it.
func azMessagesShape(r map[string]json.RawMessage, with string) ([]azMsg, error) {
	var msgs []azMsg
	var more bool
	if err := azField(r, "messages", &msgs); err != nil {
		return nil, err
	}
	if err := azField(r, "more", &more); err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if with != "" && m.Conv != with {
			return nil, fmt.Errorf("message %d of conv %q in a reply about %q", m.ID, m.Conv, with)
		}
	}
	return msgs, nil
}

func azLoadShape(f *azFixture, c azCell, r map[string]json.RawMessage) error {
	_, err := azMessagesShape(r, f.addr(c.row.tg, c.who))
	return err
}

func azAroundShape(f *azFixture, c azCell, r map[string]json.RawMessage) error {
	msgs, err := azMessagesShape(r, f.addr(c.row.tg, c.who))
	if err != nil {
		return err
	}
	var newer bool
	if err := azField(r, "newer", &newer); err != nil {
		return err
	}
	want := f.msg(c.row.tg)
	if !slices.ContainsFunc(msgs, func(m azMsg) bool { return m.ID == want }) {
		return fmt.Errorf("message %d is not in its own surroundings", want)
	}
	return nil
}

func azSearchShape(f *azFixture, c azCell, r map[string]json.RawMessage) error {
	with := ""
	if c.row.tg != tgNone {
		with = f.addr(c.row.tg, c.who)
	}
	_, err := azMessagesShape(r, with)
	return err
}

func azSyncShape(_ *azFixture, _ azCell, r map[string]json.RawMessage) error {
	if _, err := azMessagesShape(r, ""); err != nil {
		return err
	}
	var seq int64
	if err := azField(r, "seq", &seq); err != nil {
		return err
	}
	if seq <= 0 {
		return fmt.Errorf("seq %d after messages were stored", seq)
	}
	return nil
}

func azConversationsShape(f *azFixture, c azCell, r map[string]json.RawMessage) error {
	var convs []struct {
		Conv   string `json:"conv"`
		Last   azMsg  `json:"last"`
		Unread *int   `json:"unread"`
	}
	if err := azField(r, "conversations", &convs); err != nil {
		return err
	}
	for _, cv := range convs {
		if cv.Conv == "" || cv.Last.ID == 0 || cv.Unread == nil || cv.Last.Conv != cv.Conv {
			return fmt.Errorf("conversation %+v", cv)
		}
		if !f.mayRead(c.who, cv.Conv) {
			return fmt.Errorf("lists %s", cv.Conv)
		}
	}
	return nil
}

// mayRead tells whether who may read the group conversation conv (other
// conversations are the caller's own).
func (f *azFixture) mayRead(who int, conv string) bool {
	member := who == azMember || who == azAuthor || who == azOwner
	switch conv {
	case azGroupAddr(f.groups[tgOpen]), azGroupAddr(f.groups[tgClosed]):
		return member
	case azGroupAddr(f.groups[tgGone]):
		return false
	case azGroupAddr(f.own):
		return who == azNonmember
	}
	return true
}

func azEditShape(_ *azFixture, c azCell, r map[string]json.RawMessage) error {
	var m azMsg
	if err := azField(r, "message", &m); err != nil {
		return err
	}
	if m.ID != c.body["id"].(int64) || m.Text != c.body["text"].(string) || !m.Edited || m.Deleted {
		return fmt.Errorf("message %+v, want id %v with the new text, edited", m, c.body["id"])
	}
	return nil
}

func azGroupShape(_ *azFixture, c azCell, r map[string]json.RawMessage) error {
	var g azGroup
	if err := azField(r, "group", &g); err != nil {
		return err
	}
	if g.ID != c.body["id"].(int64) || g.Owner == 0 || g.Members < 1 {
		return fmt.Errorf("group %+v, want group %v", g, c.body["id"])
	}
	if name, ok := c.body["name"].(string); ok && g.Name != name {
		return fmt.Errorf("name %q, want %q", g.Name, name)
	}
	return nil
}

func azMembersShape(f *azFixture, _ azCell, r map[string]json.RawMessage) error {
	var users []struct {
		ID     int64 `json:"id"`
		Places *int  `json:"places"`
	}
	if err := azField(r, "users", &users); err != nil {
		return err
	}
	var ids []int64
	for _, u := range users {
		if u.Places == nil {
			return fmt.Errorf("user %d without places", u.ID)
		}
		ids = append(ids, u.ID)
	}
	for _, want := range []int64{f.cast[azOwner].id, f.cast[azAuthor].id, f.cast[azMember].id} {
		if !slices.Contains(ids, want) {
			return fmt.Errorf("members %v lack %d", ids, want)
		}
	}
	return nil
}

func azListShape(f *azFixture, c azCell, r map[string]json.RawMessage) error {
	var groups []azGroup
	if err := azField(r, "groups", &groups); err != nil {
		return err
	}
	listed := map[int64]bool{}
	for _, g := range groups {
		listed[g.ID] = true
		if g.Private && !f.mayRead(c.who, azGroupAddr(g.ID)) {
			return fmt.Errorf("lists private group %d", g.ID)
		}
	}
	for _, g := range []struct {
		id   int64
		want bool
	}{{f.groups[tgOpen], true}, {f.groups[tgClosed], f.mayRead(c.who, azGroupAddr(f.groups[tgClosed]))},
		{f.groups[tgGone], false}, {f.own, c.who == azNonmember}} {
		if listed[g.id] != g.want {
			return fmt.Errorf("group %d listed %v, want %v", g.id, listed[g.id], g.want)
		}
	}
	return nil
}

func azStatsShape(_ *azFixture, _ azCell, r map[string]json.RawMessage) error {
	for _, k := range []string{"connections", "online", "messages", "uptime_s", "goroutines", "rss_bytes"} {
		var n float64
		if err := azField(r, k, &n); err != nil {
			return err
		}
	}
	return nil
}

// --- the table ---

// azTable is the matrix: one row per node and target, one answer per
// caller, in the order anonymous, user, non-member, member, author, owner,
// admin.
func azTable() []azRow {
	all := azWant{azU, azOK, azOK, azOK, azOK, azOK, azOK}
	members := azWant{azU, azF, azF, azOK, azOK, azOK, azF}
	missing := azWant{azU, azNF, azNF, azNF, azNF, azNF, azNF}
	ownerOnly := azWant{azU, azF, azF, azF, azF, azOK, azF}
	addressed := []azTW{{tgLobby, all}, {tgChat, all}, {tgOpen, members}, {tgClosed, members},
		{tgNoUser, missing}, {tgNoGroup, missing}, {tgGone, missing}}

	var rows []azRow
	rows = append(rows, azRows("im/send", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"to": f.addr(tg, who), "text": "authz cell"}
	}), azSendShape, tgClosed, addressed...)...)
	rows = append(rows, azRows("im/load", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"with": f.addr(tg, who), "limit": 3}
	}), azLoadShape, tgClosed, addressed...)...)
	rows = append(rows, azRows("im/load", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"with": f.addr(tg, who), "around": f.msg(tg), "limit": 3}
	}), azAroundShape, tgChat,
		azTW{tgLobby, all},
		azTW{tgChat, azWant{azU, azNF, azNF, azOK, azOK, azNF, azNF}}, // a third party's user:C is its own chat
		azTW{tgOpen, members},
		azTW{tgClosed, members},
		azTW{tgNoMsg, missing},
		azTW{tgGone, missing},
		azTW{tgForeign, missing})...)
	rows = append(rows, azRows("im/sync", azStatic(func(*azFixture, azTarget, int) map[string]any {
		return map[string]any{"since": 0, "limit": 3}
	}), azSyncShape, tgNone, azTW{tgNone, all})...)
	rows = append(rows, azRows("im/read", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"with": f.addr(tg, who), "id": f.msg(tg)}
	}), azNothing, tgClosed, addressed...)...)
	rows = append(rows, azRows("im/typing", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"to": f.addr(tg, who)}
	}), azNothing, tgClosed, addressed...)...)
	rows = append(rows, azRows("im/conversations", azStatic(azEmpty), azConversationsShape, tgNone, azTW{tgNone, all})...)
	rows = append(rows, azRows("im/edit", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"id": f.msg(tg), "text": f.editText(tg)}
	}), azEditShape, tgClosed,
		azTW{tgLobby, azWant{azU, azF, azF, azF, azOK, azF, azF}},
		azTW{tgChat, azWant{azU, azNF, azNF, azF, azOK, azNF, azNF}},
		azTW{tgOpen, azWant{azU, azNF, azNF, azF, azOK, azF, azNF}},
		azTW{tgClosed, azWant{azU, azNF, azNF, azF, azOK, azF, azNF}},
		azTW{tgNoMsg, missing},
		azTW{tgGone, missing},
		azTW{tgDeleted, missing})...)
	rows = append(rows, azRows("im/delete", func(f *azFixture, tg azTarget, who int) (map[string]any, func()) {
		return map[string]any{"id": f.doomed(tg)}, nil
	}, azNothing, tgClosed,
		// An admin may delete what it can read; what it cannot read is
		// not_found to it as to anyone.
		azTW{tgLobby, azWant{azU, azF, azF, azF, azOK, azF, azOK}},
		azTW{tgChat, azWant{azU, azNF, azNF, azF, azOK, azNF, azNF}},
		azTW{tgOpen, azWant{azU, azNF, azNF, azF, azOK, azF, azNF}},
		azTW{tgClosed, azWant{azU, azNF, azNF, azF, azOK, azF, azNF}},
		azTW{tgNoMsg, missing},
		azTW{tgGone, missing},
		azTW{tgDeleted, all})...) // deleting a deleted message: {}, for anyone who can read it
	rows = append(rows, azRows("im/search", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"q": "azsecret", "with": f.addr(tg, who), "limit": 3}
	}), azSearchShape, tgClosed, addressed...)...)
	rows = append(rows, azRows("im/search", azStatic(func(*azFixture, azTarget, int) map[string]any {
		return map[string]any{"q": "azsecret", "limit": 3}
	}), azSearchShape, tgNone, azTW{tgNone, all})...)
	rows = append(rows, azRows("im/group/join", func(f *azFixture, tg azTarget, who int) (map[string]any, func()) {
		id, undo := f.fresh(tg, who)
		return map[string]any{"id": id}, undo
	}, azGroupShape, tgClosed,
		azTW{tgOpen, all},
		azTW{tgClosed, members}, // a member joining is already one: success
		azTW{tgNoGroup, missing},
		azTW{tgGone, missing})...)
	rows = append(rows, azRows("im/group/invite", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		if tg == tgNoUser {
			return map[string]any{"id": f.group(tgOpen), "user": azNoID}
		}
		return map[string]any{"id": f.group(tg), "user": f.invitee.id}
	}), azNothing, tgClosed,
		azTW{tgOpen, members},
		azTW{tgClosed, members},
		azTW{tgNoUser, azWant{azU, azF, azF, azNF, azNF, azNF, azF}}, // into G: a non-member is refused first
		azTW{tgNoGroup, missing},
		azTW{tgGone, missing})...)
	rows = append(rows, azRows("im/group/leave", func(f *azFixture, tg azTarget, who int) (map[string]any, func()) {
		id, undo := f.fresh(tg, who)
		return map[string]any{"id": id}, undo
	}, azNothing, tgClosed,
		azTW{tgOpen, all}, // leaving an open group one is not in: nothing to do
		azTW{tgClosed, members},
		azTW{tgNoGroup, missing},
		azTW{tgGone, missing})...)
	rows = append(rows, azRows("im/group/remove", func(f *azFixture, tg azTarget, who int) (map[string]any, func()) {
		id, undo := f.fresh(tg, who)
		return map[string]any{"id": id, "user": f.victim.id}, undo
	}, azNothing, tgClosed,
		azTW{tgOpen, ownerOnly},
		azTW{tgClosed, ownerOnly},
		azTW{tgNoGroup, missing},
		azTW{tgGone, missing})...)
	rows = append(rows, azRow{node: "im/group/remove", tg: tgClosed, shape: azNothing,
		want: azWant{azU, azF, azF, azF, azF, azBR, azF}, // naming oneself: the owner is told to leave
		body: func(f *azFixture, tg azTarget, who int) (map[string]any, func()) {
			id, undo := f.fresh(tg, who)
			return map[string]any{"id": id, "user": f.cast[who].id}, undo
		}})
	rows = append(rows, azRows("im/group/rename", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"id": f.group(tg), "name": f.names[tg] + " renamed"}
	}), azGroupShape, tgClosed,
		azTW{tgOpen, ownerOnly},
		azTW{tgClosed, ownerOnly},
		azTW{tgNoGroup, missing},
		azTW{tgGone, missing})...)
	rows = append(rows, azRows("im/group/members", azStatic(func(f *azFixture, tg azTarget, who int) map[string]any {
		return map[string]any{"id": f.group(tg)}
	}), azMembersShape, tgClosed,
		azTW{tgOpen, all},
		azTW{tgClosed, members},
		azTW{tgNoGroup, missing},
		azTW{tgGone, missing})...)
	rows = append(rows, azRows("im/group/list", azStatic(azEmpty), azListShape, tgNone, azTW{tgNone, all})...)
	rows = append(rows, azRows("admin/stats", azStatic(azEmpty), azStatsShape, tgNone,
		azTW{tgNone, azWant{azU, azF, azF, azF, azF, azF, azOK}})...)
	return rows
}

// --- the fixture ---

func azLogin(t *testing.T, s *servertest.Server, nick string) *azPerson {
	t.Helper()
	p := &azPerson{nick: nick, ws: s.DialWS(t, "", nil)}
	p.sid, p.id = authLogin(t, p.ws, nick, "password-1")
	p.tcp = s.DialTCP(t)
	p.tcp.OK("im/resume", map[string]string{"sid": p.sid}, nil)
	p.udp = s.DialUDP(t)
	p.udp.OK("im/resume", map[string]string{"sid": p.sid}, nil)
	p.transportConn = map[string]*servertest.Client{"websocket": p.ws, "tcp": p.tcp, "udp": p.udp}
	return p
}

func azAnonymous(t *testing.T, s *servertest.Server) *azPerson {
	p := &azPerson{nick: "anonymous", ws: s.DialWS(t, "", nil), tcp: s.DialTCP(t), udp: s.DialUDP(t)}
	// An address that has not proved itself gets at most 3 times what it
	// sent: a padded ping (no id, no reply) gives its error replies room.
	if err := p.udp.Raw("ping;{}" + strings.Repeat(" ", 1200)); err != nil {
		t.Fatal(err)
	}
	p.transportConn = map[string]*servertest.Client{"websocket": p.ws, "tcp": p.tcp, "udp": p.udp}
	return p
}

func (f *azFixture) createGroup(p *azPerson, name string, private bool, members ...int64) int64 {
	var r struct {
		Group azGroup `json:"group"`
	}
	if members == nil {
		members = []int64{}
	}
	p.ws.OK("im/group/create", map[string]any{"name": name, "private": private, "members": members}, &r)
	if r.Group.ID <= 0 || r.Group.Owner != p.id || r.Group.Private != private || r.Group.Members != len(members)+1 {
		f.t.Fatalf("im/group/create %q: %+v", name, r.Group)
	}
	return r.Group.ID
}

func (f *azFixture) send(p *azPerson, to, text string) int64 {
	var r struct {
		ID int64 `json:"id"`
	}
	p.ws.OK("im/send", map[string]any{"to": to, "text": text}, &r)
	return r.ID
}

func azSetup(t *testing.T) *azFixture {
	methods := map[string]node.Method{}
	for _, n := range boot.NodeTable(nil, nil) {
		methods[n.Path] = n.Methods
	}
	var missing []string
	for _, row := range azTable() {
		if _, ok := methods[row.node]; !ok && !slices.Contains(missing, row.node) {
			missing = append(missing, row.node)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("nodes of the matrix that the node table lacks: %v", missing)
	}
	s := servertest.Start(t, func(c *config.Config) {
		// The matrix writes hundreds of messages, groups and marks from a
		// few users in a few seconds; the limits are other tests' subject.
		c.Limits.MessagesPerSecond, c.Limits.MessageBurst = 1_000_000, 1_000_000
		c.Limits.TypingPerSecond = 1_000_000
	})
	f := &azFixture{t: t, s: s, groups: map[azTarget]int64{}, msgs: map[azTarget]int64{}, texts: map[azTarget]string{}, names: map[azTarget]string{},
		methods: methods}

	// A listens from before anything is written to the end.
	f.cast[azAnon] = azAnonymous(t, s)
	for who, nick := range map[int]string{azUser: "az-user", azNonmember: "az-nonmember", azMember: "az-member",
		azAuthor: "az-author", azOwner: "az-owner", azAdmin: "az-admin"} {
		f.cast[who] = azLogin(t, s, nick)
	}
	f.invitee, f.victim = azLogin(t, s, "az-invitee"), azLogin(t, s, "az-victim")
	f.everyone = append(slices.Clone(f.cast[1:]), f.invitee, f.victim)
	if _, err := s.Chat.GrantAdmin(t.Context(), "az-admin"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() { // a UDP peer is connected until 60 s pass without a datagram
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, p := range f.cast {
					_ = p.udp.Fire("ping", nil)
				}
				for _, p := range []*azPerson{f.invitee, f.victim} {
					_ = p.udp.Fire("ping", nil)
				}
			}
		}
	}()

	a, n, c, b, o := f.cast[azUser], f.cast[azNonmember], f.cast[azMember], f.cast[azAuthor], f.cast[azOwner]
	tag := azHex(t)
	members := f.ids(azMember, azAuthor, azOwner)
	members[f.invitee.id] = true

	f.names[tgOpen] = "authz open"
	f.groups[tgOpen] = f.createGroup(o, f.names[tgOpen], false, b.id, c.id)
	f.names[tgClosed] = "azsecret-pname-" + tag
	f.secret("private group's name", f.names[tgClosed], members, nil)
	f.groups[tgClosed] = f.createGroup(o, f.names[tgClosed], true, b.id, c.id)
	f.names[tgGone] = "azsecret-qname-" + tag
	f.secret("dissolved group's name", f.names[tgGone], map[int64]bool{}, f.ids(azAuthor, azOwner))
	f.groups[tgGone] = f.createGroup(o, f.names[tgGone], true, b.id)
	zname := "azsecret-zname-" + tag
	f.secret("non-member's own group's name", zname, f.ids(azNonmember), nil)
	f.own = f.createGroup(n, zname, true)

	for _, m := range []struct {
		tg      azTarget
		what    string
		readers map[int64]bool
		heard   map[int64]bool
	}{
		{tgLobby, "lobby", f.all(), nil},
		{tgChat, "chat", f.ids(azAuthor, azMember), nil},
		{tgOpen, "open", members, nil},
		{tgClosed, "closed", members, nil},
		{tgGone, "gone", map[int64]bool{}, f.ids(azAuthor, azOwner)},
		{tgDeleted, "deleted", map[int64]bool{}, f.all()},
	} {
		text := "azsecret-" + m.what + "-" + tag
		f.secret(m.what+" message", text, m.readers, m.heard)
		f.texts[m.tg] = text
		f.msgs[m.tg] = f.send(b, f.addr(m.tg, azAuthor), text)
	}
	b.ws.OK("im/delete", map[string]any{"id": f.msgs[tgDeleted]}, nil)

	// C writes in an open group L and leaves it: only its members may read
	// it, so not C any more, though C wrote it.
	left := f.createGroup(o, "authz left", false, c.id)
	text := "azsecret-left-" + tag
	f.secret("message of a group its author left", text, f.ids(azOwner), f.ids(azOwner, azMember))
	f.send(c, azGroupAddr(left), text)
	c.ws.OK("im/group/leave", map[string]any{"id": left}, nil)

	f.marker = "azcanary" + azHex(t)
	f.canaryS = []*azSecret{
		f.secret("canary in B<->C", f.marker+"-chat", f.ids(azAuthor, azMember), nil),
		f.secret("canary in P", f.marker+"-group", members, nil),
	}
	f.canaries = []int64{f.send(b, f.addr(tgChat, azAuthor), f.marker+"-chat"),
		f.send(b, f.addr(tgClosed, azAuthor), f.marker+"-group")}

	// Q is dissolved: its last members leave.
	b.ws.OK("im/group/leave", map[string]any{"id": f.groups[tgGone]}, nil)
	o.ws.OK("im/group/leave", map[string]any{"id": f.groups[tgGone]}, nil)

	// A's connections all hear the lobby, so hearing nothing else means
	// something.
	for _, conn := range []*servertest.Client{a.ws, a.tcp, a.udp} {
		if _, ok := conn.WaitMatch(servertest.DefaultTimeout, func(fr servertest.Frame) bool {
			return fr.Path == "im/message" && strings.Contains(string(fr.Body), f.texts[tgLobby])
		}); !ok {
			t.Fatalf("A's connection %p got no push of the lobby message", conn)
		}
	}
	// C, the other party, was pushed both canaries.
	for _, s := range f.canaryS {
		if _, ok := c.ws.WaitMatch(servertest.DefaultTimeout, func(fr servertest.Frame) bool {
			return fr.Path == "im/message" && strings.Contains(string(fr.Body), s.text)
		}); !ok {
			t.Fatalf("C got no im/message for the %s", s.what)
		}
	}
	return f
}

// search returns the ids of the messages who finds with q (and with).
func (f *azFixture) search(p *azPerson, q, with string) []int64 {
	body := map[string]any{"q": q, "limit": 100}
	if with != "" {
		body["with"] = with
	}
	var r struct {
		Messages []azMsg `json:"messages"`
	}
	p.ws.OK("im/search", body, &r)
	var ids []int64
	for _, m := range r.Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// syncAll is every change p may read, as the raw replies of im/sync from 0,
// paged, over transport.
func (f *azFixture) syncAll(p *azPerson, transport string) ([]byte, []azMsg) {
	var raw []byte
	var all []azMsg
	since := int64(0)
	for page := 0; ; page++ {
		if page == 100 {
			f.t.Fatalf("im/sync for %s over %s: over 100 pages", p.nick, transport)
		}
		code, b, err := f.call(p, transport, "im/sync", map[string]any{"since": since, "limit": 100})
		if err != nil || code != "" {
			f.t.Fatalf("im/sync for %s over %s: %s %v", p.nick, transport, b, err)
		}
		var r struct {
			Messages []azMsg `json:"messages"`
			More     bool    `json:"more"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			f.t.Fatalf("im/sync %s: %v", b, err)
		}
		raw = append(raw, b...)
		all = append(all, r.Messages...)
		if !r.More || len(r.Messages) == 0 {
			return raw, all
		}
		since = r.Messages[len(r.Messages)-1].Seq
	}
}

// visibility: for every caller, every secret message is in its full sync
// and found by its search exactly when it may read it, and a secret group
// name is in its group list exactly when it may see that group.
func (f *azFixture) visibility(when string) {
	for who := azUser; who < azActors; who++ {
		p := f.cast[who]
		raw, _ := f.syncAll(p, "websocket")
		var list []byte
		if _, b, err := f.call(p, "websocket", "im/group/list", map[string]any{}); err == nil {
			list = b
		}
		for _, s := range f.secrets {
			if strings.Contains(s.what, "name") {
				if got := strings.Contains(string(list), s.text); got != s.readers[p.id] {
					f.t.Errorf("visibility (%s): im/group/list of %s shows the %s: %v, want %v", when, azActorNames[who], s.what, got, s.readers[p.id])
				}
				continue
			}
			if got := strings.Contains(string(raw), s.text); got != s.readers[p.id] {
				f.t.Errorf("visibility (%s): im/sync from 0 of %s has the %s: %v, want %v", when, azActorNames[who], s.what, got, s.readers[p.id])
			}
			if got := len(f.search(p, s.text, "")) > 0; got != s.readers[p.id] {
				f.t.Errorf("visibility (%s): im/search by %s finds the %s: %v, want %v", when, azActorNames[who], s.what, got, s.readers[p.id])
			}
		}
	}
}

// canaryRound: everything A can ask about the canaries, over every
// transport, answers as it must and carries the canary 0 times.
func (f *azFixture) canaryRound(round string) {
	a := f.cast[azUser]
	cid, bid, p := f.cast[azMember].id, f.cast[azAuthor].id, f.groups[tgClosed]
	chat, group := f.canaries[0], f.canaries[1]
	asks := []struct {
		path string
		body map[string]any
		want string
	}{
		{"im/search", map[string]any{"q": f.marker}, azOK},
		{"im/search", map[string]any{"q": f.marker, "with": azUserAddr(cid)}, azOK},
		{"im/search", map[string]any{"q": f.marker, "with": azUserAddr(bid)}, azOK},
		{"im/search", map[string]any{"q": f.marker, "with": azGroupAddr(p)}, azF},
		{"im/load", map[string]any{"with": azUserAddr(cid)}, azOK},
		{"im/load", map[string]any{"with": azUserAddr(bid)}, azOK},
		{"im/load", map[string]any{"with": azGroupAddr(p)}, azF},
		{"im/load", map[string]any{"with": azUserAddr(cid), "around": chat}, azNF},
		{"im/load", map[string]any{"with": azUserAddr(bid), "around": chat}, azNF},
		{"im/load", map[string]any{"with": "room:lobby", "around": group}, azNF},
		{"im/load", map[string]any{"with": azGroupAddr(p), "around": group}, azF},
		{"im/conversations", map[string]any{}, azOK},
		{"im/group/list", map[string]any{}, azOK},
		{"im/group/members", map[string]any{"id": p}, azF},
		{"im/edit", map[string]any{"id": chat, "text": "authz edit"}, azNF},
		{"im/edit", map[string]any{"id": group, "text": "authz edit"}, azNF},
		{"im/delete", map[string]any{"id": chat}, azNF},
		{"im/delete", map[string]any{"id": group}, azNF},
	}
	for _, transport := range []string{"websocket", "tcp", "udp", "http"} {
		for _, q := range asks {
			code, b, err := f.call(a, transport, q.path, q.body)
			what := fmt.Sprintf("canary (%s): %s %s as user over %s", round, q.path, azEncode(q.body), transport)
			if err != nil {
				f.t.Errorf("%s: %v", what, err)
				continue
			}
			if code == "" {
				code = azOK
			}
			if code != q.want {
				f.t.Errorf("%s: got %s, want %s; reply %s", what, code, q.want, b)
			}
			if n := strings.Count(string(b), f.marker); n != 0 {
				f.t.Errorf("%s: the canary appears %d times: %s", what, n, b)
			}
		}
		if transport != "udp" { // a whole history does not fit a datagram
			raw, _ := f.syncAll(a, transport)
			if n := strings.Count(string(raw), f.marker); n != 0 {
				f.t.Errorf("canary (%s): im/sync from 0 as user over %s: the canary appears %d times", round, transport, n)
			}
		}
	}
}

// TestA10AuthorizationMatrix runs the matrix and the canary.
func TestA10AuthorizationMatrix(t *testing.T) {
	f := azSetup(t)
	a, b, c := f.cast[azUser], f.cast[azAuthor], f.cast[azMember]

	// The canary is where it must be for its readers, so 0 elsewhere
	// means something.
	if ids := f.search(c, f.marker, ""); !slices.Equal(slices.Sorted(slices.Values(ids)), f.canaries) {
		t.Fatalf("C's im/search for the canary: %v, want %v", ids, f.canaries)
	}
	f.canaryRound("written")
	f.visibility("before the matrix")

	rows := azTable()
	cells := map[string]int{}
	for i := range rows {
		row := &rows[i]
		transports := []string{"websocket"}
		if row.everywhere {
			transports = append(transports, "tcp", "udp", "http")
		}
		for _, transport := range transports {
			for who := range azActors {
				f.run(row, who, transport)
				cells[transport]++
			}
		}
	}
	// Every admin node: forbidden to everyone else, unauthorized without a
	// login, over each transport it lists.
	for _, n := range boot.NodeTable(nil, nil) {
		if !strings.HasPrefix(n.Path, "admin/") || n.Auth != node.Admin {
			continue
		}
		for _, transport := range []string{"websocket", "tcp", "udp", "http"} {
			if n.Methods&azMethod(transport) == 0 {
				continue
			}
			for who := azAnon; who < azAdmin; who++ {
				want := azF
				if who == azAnon {
					want = azU
				}
				code, body, err := f.call(f.cast[who], transport, n.Path, map[string]any{"user": f.cast[azUser].id})
				if err != nil || code != want {
					t.Errorf("%s as %s over %s: %s %v, want %s", n.Path, azActorNames[who], transport, body, err, want)
				}
				cells[transport]++
			}
		}
	}
	t.Logf("matrix: %d rows; cells asked: %v", len(rows), cells)

	f.visibility("after the matrix")

	// B edits the canaries: the new texts are canaries too.
	for i, s := range f.canaryS {
		text := s.text + "-edited"
		f.canaryS[i] = f.secret(s.what+", edited", text, s.readers, nil)
		var r struct {
			Message azMsg `json:"message"`
		}
		b.ws.OK("im/edit", map[string]any{"id": f.canaries[i], "text": text}, &r)
		if r.Message.Text != text || !r.Message.Edited {
			t.Fatalf("B's edit of the %s: %+v", s.what, r.Message)
		}
		if _, ok := c.ws.WaitMatch(servertest.DefaultTimeout, func(fr servertest.Frame) bool {
			return fr.Path == "im/edited" && strings.Contains(string(fr.Body), text)
		}); !ok {
			t.Fatalf("C got no im/edited for the %s", s.what)
		}
		if ids := f.search(c, text, ""); !slices.Equal(ids, []int64{f.canaries[i]}) {
			t.Fatalf("C's im/search for the edited %s: %v, want [%d]", s.what, ids, f.canaries[i])
		}
	}
	f.canaryRound("edited")

	// B deletes them: gone for their readers too.
	for i, s := range f.canaryS {
		b.ws.OK("im/delete", map[string]any{"id": f.canaries[i]}, nil)
		id := f.canaries[i]
		if _, ok := c.ws.WaitMatch(servertest.DefaultTimeout, func(fr servertest.Frame) bool {
			var d struct {
				ID int64 `json:"id"`
			}
			return fr.Path == "im/deleted" && json.Unmarshal(fr.Body, &d) == nil && d.ID == id
		}); !ok {
			t.Fatalf("C got no im/deleted for the %s", s.what)
		}
		for _, old := range f.secrets {
			if strings.HasPrefix(old.text, f.marker) {
				old.readers = map[int64]bool{}
			}
		}
	}
	if ids := f.search(c, f.marker, ""); len(ids) != 0 {
		t.Fatalf("C's im/search for the deleted canaries: %v, want none", ids)
	}
	f.canaryRound("deleted")

	// A's connections still hear the lobby at the end, and were pushed
	// nothing of the canaries, nor anything of the groups A is not in, in
	// the whole test; nobody was pushed what they may not read.
	final := "authz final " + azHex(t)
	f.send(b, "room:lobby", final)
	for _, conn := range []*servertest.Client{a.ws, a.tcp, a.udp} {
		if _, ok := conn.WaitMatch(servertest.DefaultTimeout, func(fr servertest.Frame) bool {
			return fr.Path == "im/message" && strings.Contains(string(fr.Body), final)
		}); !ok {
			t.Errorf("A's connection %p got no push of the last lobby message", conn)
		}
	}
	pushes := 0
	for _, conn := range []*servertest.Client{a.ws, a.tcp, a.udp} {
		for _, fr := range conn.Pushes() {
			pushes++
			body := string(fr.Body)
			if n := strings.Count(body, f.marker); n != 0 {
				t.Errorf("canary: A was pushed it %d times: %s", n, fr)
			}
			var d struct {
				ID int64 `json:"id"`
			}
			if (fr.Path == "im/edited" || fr.Path == "im/deleted") && json.Unmarshal(fr.Body, &d) == nil && slices.Contains(f.canaries, d.ID) {
				t.Errorf("canary: A was pushed %s", fr)
			}
			for _, g := range []int64{f.groups[tgClosed], f.groups[tgGone], f.own} {
				if strings.Contains(body, `"`+azGroupAddr(g)+`"`) {
					t.Errorf("A was pushed about %s: %s", azGroupAddr(g), fr)
				}
			}
		}
	}
	t.Logf("canary: 0 of %d pushes to A's WebSocket, TCP and UDP connections carry it", pushes)
	for _, p := range append(slices.Clone(f.cast[:]), f.invitee, f.victim) {
		for _, conn := range []*servertest.Client{p.ws, p.tcp, p.udp} {
			for _, fr := range conn.Pushes() {
				if leaked := f.leaks(p, fr.Body, true); len(leaked) > 0 {
					t.Errorf("%s was pushed %v: %s", p.nick, leaked, fr)
				}
			}
		}
	}
}
