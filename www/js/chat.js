// The chat page: login, the conversation list, the online list, the open
// conversation, the composer with its outbox, and recovery after a
// reconnect (im/sync). The wire protocol is PROTOCOL.md; the element ids
// are the DOM contract the browser tests drive.

const LOBBY = 'room:lobby';
const TEXT_LIMIT = 4000;
const BRIEF_LIMIT = 128;
const PAGE = 50;
const TYPING_EVERY = 2000;
const TYPING_SHOWN = 3000;
const SYNC_ROUNDS = 20; // 20 x 500 messages; further behind, start over
const MAX_UPLOAD = 10 * 1024 * 1024;
const KEEP = 1000; // messages kept per conversation once it passes KEEP_MAX
const KEEP_MAX = 1500;
const CLOSE_TEXT = {
  4001: 'You were disconnected by an administrator.',
  4503: 'You are banned from this server.',
  4509: 'Too many open connections: close some other tabs or devices, then reconnect.',
};

const $ = (id) => document.getElementById(id);

export function start({Client, ProtoError, R}) {
  const dom = {
    boot: $('boot'), bootText: $('boot-text'),
    login: $('login'), loginForm: $('login-form'), nickname: $('nickname'), password: $('password'),
    loginSubmit: $('login-submit'), loginError: $('login-error'),
    chat: $('chat'), side: $('side'), scrim: $('scrim'), drawerToggle: $('drawer-toggle'), drawerDot: $('drawer-dot'),
    me: $('me'), meAvatar: $('me-avatar'), logout: $('logout'), status: $('status'), profileOpen: $('profile-open'),
    convList: $('conv-list'), userList: $('user-list'), onlineCount: $('online-count'),
    convTitle: $('conv-title'), convSub: $('conv-sub'), messages: $('messages'), jump: $('jump'),
    typing: $('typing'), composer: $('composer'), text: $('text'), send: $('send'), count: $('count'),
    attach: $('attach'), fileInput: $('file-input'),
    notice: $('notice'), noticeText: $('notice-text'), noticeAction: $('notice-action'),
    profile: $('profile-dialog'), profileForm: $('profile-form'), profileAvatar: $('profile-avatar'),
    profileName: $('profile-name'), profileBrief: $('profile-brief'), profileError: $('profile-error'),
    profileAvatarBtn: $('profile-avatar-btn'), profileAvatarInput: $('profile-avatar-input'),
    profileCancel: $('profile-cancel'), profileSave: $('profile-save'),
    toast: $('toast'),
  };
  const baseTitle = document.title;
  let stuck = true; // the reader is at the bottom of the open conversation

  // ---- state ------------------------------------------------------------

  const S = {
    me: null,
    ready: false, // signed in, and the catch-up after the last (re)connect is done
    gen: 0, // bumps on every connection and reset: stale async work checks it
    conv: LOBBY,
    online: new Map(), // user id -> Online
    people: new Map(), // user id -> User, everyone seen
    groups: new Map(), // group id -> Group
    convs: new Map(), // conv -> {conv, last, unread}
    stores: new Map(), // conv -> {byId, ids (sorted), more, loaded, loading, error}
    els: new Map(), // message id -> element, for the open conversation
    outbox: [], // [{cid, to, text, kind, file, ts, state, error}]
    lastSeq: 0, // the sync point: every change up to it is here (kept in sessionStorage)
    freshSeq: false, // this tab has no sync point yet: the first loads set it
    caughtUp: false, // this connection's catch-up (im/sync) is done: pushes move lastSeq
    pushSeq: 0, // the highest seq pushed on this connection during its catch-up
    readSent: new Map(), // conv -> newest id we marked read
    readBy: new Map(), // conv -> id the other party has read up to
    typing: new Map(), // conv -> Map(user id -> {user, timer})
    resolving: new Set(), // convs whose other party's name is being looked up
  };

  const cidPrefix = (() => {
    const b = new Uint8Array(6);
    crypto.getRandomValues(b);
    return 'w' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  })();
  let cidCounter = 0;
  const newCid = () => `${cidPrefix}-${++cidCounter}`;

  // ---- storage (per tab) -----------------------------------------------

  const store = {
    get(k) { try { return sessionStorage.getItem(k); } catch { return null; } },
    set(k, v) { try { sessionStorage.setItem(k, v); } catch { /* full or disabled */ } },
    del(k) { try { sessionStorage.removeItem(k); } catch { /* disabled */ } },
  };
  const seqKey = () => `dce.seq.${S.me ? S.me.id : 0}`;
  const outboxKey = () => `dce.outbox.${S.me ? S.me.id : 0}`;
  const convKey = () => `dce.conv.${S.me ? S.me.id : 0}`;

  function trackSeq(seq) {
    if (typeof seq === 'number' && Number.isFinite(seq) && seq > S.lastSeq) {
      S.lastSeq = seq;
      if (S.me) store.set(seqKey(), String(seq));
    }
  }

  function saveOutbox() {
    if (!S.me) return;
    const keep = S.outbox.filter((i) => i.state !== 'uploading').map((i) => ({
      cid: i.cid, to: i.to, text: i.text, kind: i.kind, file: i.file, ts: i.ts,
    }));
    if (keep.length) store.set(outboxKey(), JSON.stringify(keep));
    else store.del(outboxKey());
  }

  function loadOutbox() {
    if (S.outbox.length) return;
    let list = [];
    try { list = JSON.parse(store.get(outboxKey()) || '[]'); } catch { list = []; }
    if (!Array.isArray(list)) return;
    for (const i of list) {
      if (!i || typeof i.cid !== 'string' || typeof i.to !== 'string') continue;
      S.outbox.push({cid: i.cid, to: i.to, text: String(i.text || ''), kind: i.kind || 'text',
        file: i.file || null, ts: Number(i.ts) || Date.now(), state: 'queued', error: ''});
    }
  }

  // ---- the connection ----------------------------------------------------

  const wsURL = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
  const client = new Client(wsURL, {onOpen: handshake, onClose: closed});

  let everOpened = false;

  async function handshake() {
    const gen = ++S.gen;
    // Until the catch-up below is done, pushes on this connection do not
    // move the sync point: pushes come in seq order (PROTOCOL.md section
    // 1), but the changes made while we were away come from im/sync, from
    // the sync point as it was when the connection opened.
    S.caughtUp = false;
    S.pushSeq = 0;
    everOpened = true;
    hideNotice();
    let r;
    try {
      r = await client.request('im/signer', {});
    } catch (err) {
      if (gen === S.gen && err.code === 'timeout') client.restart();
      return;
    }
    if (gen !== S.gen) return;
    if (!r || !r.user) {
      if (S.me) resetSession();
      showLogin();
      return;
    }
    if (S.me && S.me.id !== r.user.id) resetSession(); // another login in this browser
    const first = !S.me;
    S.me = r.user;
    remember(S.me);
    if (first) {
      S.lastSeq = Number(store.get(seqKey())) || 0;
      S.freshSeq = !S.lastSeq;
      const saved = store.get(convKey());
      if (saved && validConv(saved)) S.conv = saved;
      loadOutbox();
    }
    showChat();
    renderMe();
    setStatus('connecting');

    try {
      await Promise.allSettled([loadUsers(gen), loadConversations(gen), loadGroups(gen)]);
      if (gen !== S.gen) return;
      renderConvList();
      renderHeader();
      if (!storeFor(S.conv).loaded) {
        await loadNewest(S.conv, gen);
        if (gen !== S.gen) return;
      }
      // Every message stored, edited or deleted while we were away, then
      // the open conversation shown with them.
      S.freshSeq = false;
      await catchUp(gen);
      if (gen !== S.gen) return;
    } catch (err) {
      // A bug in the catch-up must not leave the page stuck: go on.
      console.error('dce: catching up failed:', err);
      if (gen !== S.gen) return;
    }
    S.freshSeq = false;
    S.ready = true;
    setStatus('open');
    pumpOutbox();
    scheduleRead();
    resolveNames();
  }

  function closed(info) {
    S.gen++;
    S.ready = false;
    S.caughtUp = false;
    for (const i of S.outbox) if (i.state === 'sending') i.state = 'queued';
    clearTyping();
    if (!S.me && !everOpened) {
      dom.bootText.textContent = 'Cannot reach the server. Retrying…';
    }
    if (!info.reconnect && !client.running) {
      // Kicked, banned, over the limit, or logged out.
      let text = CLOSE_TEXT[info.code] || (kick ? CLOSE_TEXT[4001] : '');
      if (text && kick && kick.reason) text += ` Reason: ${kick.reason}`;
      clearTimeout(kick && kick.timer);
      kick = null;
      if (text) {
        setStatus('offline');
        showNotice(text, 'Reconnect', () => {
          hideNotice();
          client.restart();
        });
      }
      return;
    }
    setStatus('closed');
  }

  // im/kicked comes just before the server closes the connection with 4001
  // (or 4503 for a ban). The close code may not survive the trip (an
  // abrupt close reads as 1006), so the push alone stops the reconnecting.
  let kick = null;
  client.on('im/kicked', (b) => {
    const reason = b && typeof b.reason === 'string' ? b.reason : '';
    if (kick) clearTimeout(kick.timer);
    kick = {reason, timer: setTimeout(() => { if (kick) client.stop(1000, 'kicked'); }, 2000)};
    client.hold();
  });

  client.on('error', (b) => {
    const e = b && b.error;
    if (!e) return;
    if (b.path === 'im/typing' || b.path === 'im/read') return;
    if (e.code === 'unauthorized') { recheck(); return; }
    toast(e.message || e.code);
  });

  // recheck asks who we are after an unauthorized reply: the session may
  // have ended (logout in another tab, expiry).
  async function recheck() {
    try {
      const r = await client.request('im/signer', {});
      if (!r.user) { resetSession(); showLogin(); }
    } catch { /* the next connection sorts it out */ }
  }

  function failed(err, what) {
    if (!err) return;
    if (err.code === 'unauthorized') { recheck(); return; }
    if (err.code === 'closed' || err.code === 'offline') return;
    toast(what ? `${what}: ${err.message}` : err.message);
  }

  // ---- loading -----------------------------------------------------------

  async function loadUsers(gen) {
    const r = await client.request('im/users', {});
    if (gen !== S.gen) return;
    S.online.clear();
    for (const u of Array.isArray(r.users) ? r.users : []) {
      if (!u || typeof u.id !== 'number') continue;
      remember(u);
      S.online.set(u.id, u);
    }
    renderUsers();
  }

  async function loadConversations(gen) {
    const r = await client.request('im/conversations', {});
    if (gen !== S.gen) return;
    for (const c of Array.isArray(r.conversations) ? r.conversations : []) {
      if (!c || !validConv(c.conv)) continue;
      const entry = ensureConv(c.conv);
      if (c.last && typeof c.last.id === 'number') {
        entry.last = c.last;
        remember(c.last.from);
        if (S.freshSeq) trackSeq(c.last.seq);
      }
      entry.unread = Math.max(0, Number(c.unread) || 0);
    }
    ensureConv(LOBBY);
  }

  async function loadGroups(gen) {
    try {
      const r = await client.request('im/group/list', {});
      if (gen !== S.gen) return;
      for (const g of Array.isArray(r.groups) ? r.groups : []) {
        if (g && typeof g.id === 'number') S.groups.set(g.id, g);
      }
    } catch { /* groups are optional here */ }
  }

  function storeFor(conv) {
    let st = S.stores.get(conv);
    if (!st) {
      st = {byId: new Map(), ids: [], more: false, loaded: false, loading: false, error: ''};
      S.stores.set(conv, st);
    }
    return st;
  }

  async function loadNewest(conv, gen) {
    const st = storeFor(conv);
    if (st.loading) return;
    st.loading = true;
    st.error = '';
    st.byId.clear();
    st.ids = [];
    if (conv === S.conv) renderConv(true);
    try {
      const r = await client.request('im/load', {with: conv, limit: PAGE});
      if (gen !== undefined && gen !== S.gen) return;
      // A tab with no sync point yet takes the newest seq it has seen: it
      // loaded the history, so nothing before it is missing.
      for (const m of Array.isArray(r.messages) ? r.messages : []) {
        ingest(m, {quiet: true, source: 'load'});
        if (S.freshSeq) trackSeq(m.seq);
      }
      st.more = !!r.more;
      st.loaded = true;
    } catch (err) {
      if (err.code === 'forbidden' || err.code === 'not_found' || err.code === 'bad_request') {
        st.loaded = true;
        st.error = err.message;
      } else {
        failed(err, 'Could not load the conversation');
      }
    } finally {
      st.loading = false;
    }
    if (conv === S.conv) {
      renderConv(true);
      scrollBottom();
    }
  }

  async function loadOlder() {
    const conv = S.conv;
    const st = storeFor(conv);
    if (!st.loaded || !st.more || st.loading || !client.open || !st.ids.length) return;
    st.loading = true;
    updateOlder();
    const gen = S.gen;
    try {
      const r = await client.request('im/load', {with: conv, before: st.ids[0], limit: PAGE});
      if (gen !== S.gen) return;
      for (const m of Array.isArray(r.messages) ? r.messages : []) ingest(m, {quiet: true, source: 'load'});
      st.more = !!r.more && Array.isArray(r.messages) && r.messages.length > 0;
    } catch (err) {
      failed(err, 'Could not load older messages');
    } finally {
      st.loading = false;
    }
    if (conv === S.conv) renderConv(false);
  }

  // catchUp brings this connection up to date: im/sync from the sync
  // point (retried while it fails and the connection stays), then the
  // pushes that came meanwhile move the sync point, and the open
  // conversation is shown with everything merged (or loaded, if it is not).
  async function catchUp(gen) {
    for (let wait = 1000; !(await syncAll(gen)); wait = Math.min(2 * wait, 30000)) {
      if (gen !== S.gen) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (gen !== S.gen) return;
    }
    if (gen !== S.gen) return;
    S.caughtUp = true;
    trackSeq(S.pushSeq);
    const st = storeFor(S.conv);
    if (!st.loaded) await loadNewest(S.conv, gen);
    else renderConv(false);
    renderConvList();
  }

  // syncAll merges every change after the sync point, paging while the
  // server has more. It reports whether it got to the end (or started over).
  async function syncAll(gen) {
    let since = S.lastSeq;
    let touched = false;
    for (let round = 0; round < SYNC_ROUNDS; round++) {
      let r;
      try {
        r = await client.request('im/sync', {since, limit: 500});
      } catch (err) {
        failed(err, 'Could not catch up');
        return false;
      }
      if (gen !== S.gen) return false;
      const latest = Number(r.seq);
      if (Number.isFinite(latest) && latest < since) {
        // The server's sequence went back: it is a new store. Start over.
        await startOver(gen, latest);
        return true;
      }
      const list = Array.isArray(r.messages) ? r.messages : [];
      for (const m of list) {
        ingest(m, {quiet: true, source: 'sync'});
        if (m && m.conv === S.conv) touched = true;
        if (typeof m.seq === 'number' && m.seq > since) since = m.seq;
      }
      if (Number.isFinite(latest) && latest > since) since = latest;
      trackSeq(since);
      if (!r.more || !list.length) {
        if (touched) renderConv(false);
        renderConvList();
        return true;
      }
    }
    // Too far behind to replay: drop the caches and load the newest again.
    await startOver(gen, since);
    return true;
  }

  async function startOver(gen, seq) {
    S.lastSeq = Math.max(0, Number(seq) || 0);
    if (S.me) store.set(seqKey(), String(S.lastSeq));
    S.stores.clear();
    S.convs.clear();
    S.readSent.clear();
    await loadConversations(gen).catch(() => {});
    if (gen !== S.gen) return;
    await loadNewest(S.conv, gen);
    renderConvList();
  }

  // resolveNames looks up the nickname of the other party of private
  // conversations whose name we have not seen yet (they are offline and the
  // last message was ours).
  async function resolveNames() {
    for (const conv of S.convs.keys()) {
      const id = userOf(conv);
      if (!id || S.people.has(id) || S.resolving.has(conv)) continue;
      S.resolving.add(conv);
      try {
        const r = await client.request('im/load', {with: conv, limit: PAGE});
        for (const m of Array.isArray(r.messages) ? r.messages : []) remember(m.from);
      } catch { /* it stays "user #ID" */ }
      if (S.people.has(id)) { renderConvList(); if (conv === S.conv) renderHeader(); }
    }
  }

  // ---- messages ----------------------------------------------------------

  function remember(u) {
    if (!u || typeof u.id !== 'number') return;
    const had = S.people.get(u.id);
    S.people.set(u.id, had ? {...had, ...u} : {...u});
  }

  const isMine = (m) => !!(S.me && m && m.from && m.from.id === S.me.id);

  function validConv(c) {
    return typeof c === 'string' && (c === LOBBY || /^(user|group):[1-9][0-9]{0,18}$/.test(c));
  }

  function userOf(conv) {
    const m = /^user:([1-9][0-9]*)$/.exec(conv || '');
    return m ? Number(m[1]) : 0;
  }

  function ensureConv(conv) {
    let c = S.convs.get(conv);
    if (!c) {
      c = {conv, last: null, unread: 0};
      S.convs.set(conv, c);
    }
    return c;
  }

  function sortedInsert(ids, id) {
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ids[mid] < id) lo = mid + 1; else hi = mid;
    }
    ids.splice(lo, 0, id);
    return lo;
  }

  // ingest merges one message from any source (push, load, sync, our own
  // acknowledgement). It reports whether the message was new. Messages are
  // kept by id, so nothing shows twice.
  function ingest(m, {quiet = false, source = 'push'} = {}) {
    if (!m || typeof m !== 'object' || typeof m.id !== 'number' || !validConv(m.conv)) return false;
    trackSeqFor(m, source);
    remember(m.from);
    if (m.cid && isMine(m)) settle(m.cid);
    const st = storeFor(m.conv);
    const had = st.byId.get(m.id);
    if (had) {
      const merged = {...had, ...m};
      if (m.seq === undefined && had.seq !== undefined) merged.seq = had.seq;
      st.byId.set(m.id, merged);
      const changed = had.text !== merged.text || had.deleted !== merged.deleted || had.edited !== merged.edited ||
        (had.file && had.file.url) !== (merged.file && merged.file.url);
      if (changed && !quiet && m.conv === S.conv) replaceEl(merged);
      bumpConv(merged, false, source);
      return false;
    }
    st.byId.set(m.id, m);
    const at = sortedInsert(st.ids, m.id);
    if (m.conv === S.conv && st.loaded && !quiet) {
      if (st.ids.length > KEEP_MAX && nearBottom()) { trim(st); renderConv(false); }
      else if (at === st.ids.length - 1) appendEl(m, at);
      else renderConv(false);
    } else if (m.conv !== S.conv && st.ids.length > KEEP_MAX) {
      trim(st);
    }
    if (source !== 'load') clearTypingOf(m.conv, m.from && m.from.id);
    bumpConv(m, true, source);
    return true;
  }

  // trim keeps a long-open conversation to its newest messages; the older
  // ones load again on scroll.
  function trim(st) {
    const drop = st.ids.splice(0, st.ids.length - KEEP);
    for (const id of drop) st.byId.delete(id);
    st.more = true;
  }

  function trackSeqFor(m, source) {
    // Sync results advance the sync point, and so do pushes once this
    // connection has caught up (before, they are kept in pushSeq); loaded
    // history only does before the tab has one (S.freshSeq).
    if (source === 'sync' || (source === 'push' && S.caughtUp)) trackSeq(m.seq);
    else if (source === 'push' && typeof m.seq === 'number' && m.seq > S.pushSeq) S.pushSeq = m.seq;
  }

  function bumpConv(m, isNew, source) {
    const c = ensureConv(m.conv);
    const newer = !c.last || m.id > c.last.id;
    if (newer) c.last = m;
    else if (c.last && c.last.id === m.id) c.last = {...c.last, ...m};
    if (isNew && newer && source !== 'load' && !isMine(m)) {
      const looking = m.conv === S.conv && document.visibilityState === 'visible' && dom.chat.hidden === false;
      if (looking) scheduleRead();
      else c.unread += 1;
    }
    if (newer || (c.last && c.last.id === m.id)) scheduleConvList();
  }

  function applyDeleted(b) {
    if (!b || typeof b.id !== 'number') return;
    for (const [conv, st] of S.stores) {
      if (b.conv && b.conv !== conv) continue;
      const had = st.byId.get(b.id);
      if (!had) continue;
      ingest({...had, deleted: true, text: '', file: null});
    }
    for (const c of S.convs.values()) {
      if (c.last && c.last.id === b.id) c.last = {...c.last, deleted: true, text: '', file: null};
    }
    scheduleConvList();
  }

  client.on('im/message', (m) => ingest(m));
  client.on('im/edited', (m) => ingest(m && m.message ? m.message : m));
  client.on('im/deleted', applyDeleted);

  // ---- the open conversation ---------------------------------------------

  const nearBottom = () => {
    const b = dom.messages;
    return b.scrollHeight - b.scrollTop - b.clientHeight < 80;
  };
  function scrollBottom() {
    dom.messages.scrollTop = dom.messages.scrollHeight;
    dom.jump.hidden = true;
    stuck = true;
  }

  function tickFor(m) {
    if (!isMine(m)) return '';
    const other = userOf(m.conv);
    if (other && (S.readBy.get(m.conv) || 0) >= m.id) return 'seen';
    return 'sent';
  }

  function isCont(prev, m) {
    return !!(prev && prev.from && m.from && prev.from.id === m.from.id && !prev.deleted &&
      m.ts - prev.ts < 5 * 60 * 1000 && R.dayKey(prev.ts) === R.dayKey(m.ts));
  }

  function msgEl(m, prev) {
    const e = R.message(m, {own: isMine(m), cont: isCont(prev, m), tick: tickFor(m)});
    S.els.set(m.id, e);
    return e;
  }

  function olderEl(st) {
    const box = R.el('div', 'older');
    box.id = 'older';
    if (st.loading && st.loaded) {
      box.textContent = 'Loading…';
    } else if (st.loaded && st.more) {
      const b = R.el('button', 'btn small', 'Load older messages');
      b.type = 'button';
      b.dataset.action = 'older';
      box.append(b);
    } else if (st.loaded && st.ids.length) {
      box.textContent = 'This is the beginning of the conversation.';
    }
    return box;
  }
  function updateOlder() {
    const old = document.getElementById('older');
    if (old) old.replaceWith(olderEl(storeFor(S.conv)));
  }

  function captureAnchor() {
    const b = dom.messages;
    if (nearBottom()) return {bottom: true};
    for (const e of b.querySelectorAll('.msg[data-id]')) {
      if (e.offsetTop + e.offsetHeight > b.scrollTop) return {id: e.dataset.id, off: e.offsetTop - b.scrollTop};
    }
    return {bottom: true};
  }
  function restoreAnchor(a) {
    const b = dom.messages;
    if (a.bottom) { scrollBottom(); return; }
    const e = b.querySelector(`.msg[data-id="${CSS.escape(a.id)}"]`);
    if (e) b.scrollTop = e.offsetTop - a.off;
  }

  // renderConv rebuilds the open conversation. reset: a different
  // conversation (start at the bottom); otherwise the view stays where the
  // reader was.
  function renderConv(reset) {
    const box = dom.messages;
    const st = storeFor(S.conv);
    const anchor = reset ? {bottom: true} : captureAnchor();
    S.els.clear();
    box.dataset.conv = S.conv;
    const nodes = [olderEl(st)];
    if (!st.loaded) {
      nodes.push(R.el('div', 'placeholder', st.loading || !client.open ? 'Loading…' : ''));
    } else if (st.error) {
      nodes.push(R.el('div', 'placeholder', st.error));
    }
    let prev = null;
    for (const id of st.ids) {
      const m = st.byId.get(id);
      if (!prev || R.dayKey(prev.ts) !== R.dayKey(m.ts)) nodes.push(R.daySep(m.ts));
      nodes.push(msgEl(m, prev));
      prev = m;
    }
    const pend = S.outbox.filter((i) => i.to === S.conv);
    if (st.loaded && !st.error && !st.ids.length && !pend.length) {
      nodes.push(R.el('div', 'placeholder', 'No messages yet. Say hello!'));
    }
    for (const i of pend) nodes.push(pendingEl(i));
    box.replaceChildren(...nodes);
    restoreAnchor(anchor);
  }

  // appendEl adds the newest message of the open conversation without a
  // rebuild: before the pending ones, after a day separator if it is a new day.
  function appendEl(m, at) {
    const box = dom.messages;
    const st = storeFor(S.conv);
    const prev = at > 0 ? st.byId.get(st.ids[at - 1]) : null;
    const stick = nearBottom() || isMine(m);
    for (const p of box.querySelectorAll(':scope > .placeholder')) p.remove();
    const before = box.querySelector(':scope > .msg.pending');
    const nodes = [];
    if (!prev || R.dayKey(prev.ts) !== R.dayKey(m.ts)) nodes.push(R.daySep(m.ts));
    nodes.push(msgEl(m, prev));
    for (const n of nodes) box.insertBefore(n, before);
    if (at === 0) updateOlder();
    if (stick) scrollBottom();
    else dom.jump.hidden = false;
  }

  function replaceEl(m) {
    const old = S.els.get(m.id);
    if (!old) return;
    const st = storeFor(m.conv);
    const i = st.ids.indexOf(m.id);
    const prev = i > 0 ? st.byId.get(st.ids[i - 1]) : null;
    old.replaceWith(msgEl(m, prev));
  }

  function updateTicks() {
    for (const [id, e] of S.els) {
      const m = storeFor(S.conv).byId.get(id);
      if (m && isMine(m)) R.setTick(e, tickFor(m));
    }
  }

  // ---- conversations -----------------------------------------------------

  function convTitle(conv) {
    if (conv === LOBBY) return 'Lobby';
    const uid = userOf(conv);
    if (uid) {
      const u = S.people.get(uid);
      return u ? u.nickname : `User #${uid}`;
    }
    const g = /^group:(\d+)$/.exec(conv);
    if (g) {
      const grp = S.groups.get(Number(g[1]));
      return grp && grp.name ? `# ${grp.name}` : `Group #${g[1]}`;
    }
    return conv;
  }

  function preview(c) {
    const m = c.last;
    if (!m) return c.conv === LOBBY ? 'Everyone is here' : '';
    let body;
    if (m.deleted) body = 'message deleted';
    else if (m.text) body = m.text;
    else if (m.kind === 'image') body = 'Picture';
    else if (m.file && m.file.name) body = `File: ${m.file.name}`;
    else body = m.kind || '';
    body = body.replace(/\s+/g, ' ');
    if (body.length > 140) body = body.slice(0, 140) + '…';
    if (isMine(m)) return `You: ${body}`;
    if (c.conv === LOBBY || c.conv.startsWith('group:')) return `${m.from ? m.from.nickname : '?'}: ${body}`;
    return body;
  }

  let convListTimer = 0;
  function scheduleConvList() {
    if (convListTimer) return;
    // A timer, not an animation frame: a hidden tab still updates its title.
    convListTimer = setTimeout(() => { convListTimer = 0; renderConvList(); }, 30);
  }

  function renderConvList() {
    ensureConv(LOBBY);
    ensureConv(S.conv);
    const list = [...S.convs.values()].filter((c) => c.conv !== LOBBY);
    const key = (c) => (c.last ? c.last.id : Number.MAX_SAFE_INTEGER);
    list.sort((a, b) => key(b) - key(a));
    list.unshift(S.convs.get(LOBBY));
    let total = 0;
    const items = list.map((c) => {
      if (c.conv === S.conv && document.visibilityState === 'visible' && S.ready) c.unread = 0;
      total += c.unread;
      const li = R.el('li', 'conv' + (c.conv === S.conv ? ' active' : ''));
      li.dataset.conv = c.conv;
      const btn = R.el('button', 'row-btn');
      btn.type = 'button';
      const uid = userOf(c.conv);
      if (c.conv === LOBBY) {
        btn.append(R.el('span', 'avatar lobby', '#'));
      } else {
        const who = uid ? (S.people.get(uid) || {id: uid, nickname: convTitle(c.conv)}) : {id: 0, nickname: convTitle(c.conv).replace(/^# /, '')};
        const av = R.avatar(who);
        if (uid && S.online.has(uid)) av.classList.add('online');
        btn.append(av);
      }
      const main = R.el('span', 'row-main');
      main.append(R.textEl('span', 'row-name', convTitle(c.conv)));
      main.append(R.textEl('span', 'row-sub', preview(c)));
      btn.append(main);
      const badge = R.el('span', 'unread', c.unread > 0 ? (c.unread > 99 ? '99+' : String(c.unread)) : '');
      badge.hidden = c.unread <= 0;
      badge.setAttribute('aria-label', `${c.unread} unread`);
      btn.append(badge);
      if (c.conv === S.conv) btn.setAttribute('aria-current', 'true');
      li.append(btn);
      return li;
    });
    dom.convList.replaceChildren(...items);
    document.title = total > 0 ? `(${total}) ${baseTitle}` : baseTitle;
    dom.drawerDot.hidden = !(total > 0);
  }

  function renderHeader() {
    dom.convTitle.textContent = convTitle(S.conv);
    const uid = userOf(S.conv);
    let sub = '';
    if (S.conv === LOBBY) {
      sub = `${S.online.size} online`;
    } else if (uid) {
      const u = S.online.get(uid) || S.people.get(uid);
      sub = S.online.has(uid) ? 'online' : 'offline';
      if (u && u.brief) sub += ` · ${u.brief}`;
    } else {
      const g = S.groups.get(Number(S.conv.split(':')[1]));
      if (g && g.members) sub = `${g.members} members`;
    }
    dom.convSub.textContent = sub;
  }

  async function openConv(conv) {
    if (!validConv(conv)) conv = LOBBY;
    const changed = conv !== S.conv;
    S.conv = conv;
    store.set(convKey(), conv);
    ensureConv(conv).unread = 0;
    lastTypingSent = 0;
    closeDrawer();
    renderHeader();
    renderConvList();
    renderTyping();
    const st = storeFor(conv);
    if (changed) renderConv(true);
    if (!st.loaded && !st.loading && client.open && S.me) await loadNewest(conv, S.gen);
    scheduleRead();
    if (!narrow()) dom.text.focus({preventScroll: true});
  }

  // ---- people ------------------------------------------------------------

  function renderUsers() {
    const list = [...S.online.values()];
    const me = S.me ? S.me.id : 0;
    list.sort((a, b) => (b.id === me) - (a.id === me) ||
      String(a.nickname).localeCompare(String(b.nickname), undefined, {sensitivity: 'base'}));
    dom.userList.replaceChildren(...list.map((u) => {
      const li = R.el('li', 'user' + (u.id === me ? ' self' : ''));
      li.dataset.userId = String(u.id);
      const btn = R.el('button', 'row-btn');
      btn.type = 'button';
      btn.title = u.id === me ? 'Your profile' : 'Open a private conversation';
      const av = R.avatar(u);
      av.classList.add('online');
      btn.append(av);
      const main = R.el('span', 'row-main');
      const name = R.el('span', 'row-name');
      name.append(R.textEl('span', 'nickname', u.nickname));
      if (u.id === me) name.append(R.el('span', 'you', ' (you)'));
      if (u.admin) name.append(R.el('span', 'tag', 'admin'));
      main.append(name);
      main.append(R.textEl('span', 'brief row-sub', u.brief || ''));
      btn.append(main);
      const places = Number(u.places) || 1;
      const p = R.el('span', 'places', String(places));
      p.title = places === 1 ? '1 connection' : `${places} connections`;
      btn.append(p);
      li.append(btn);
      return li;
    }));
    dom.onlineCount.textContent = String(list.length);
    if (S.conv === LOBBY || userOf(S.conv)) renderHeader();
  }

  client.on('im/presence', (b) => {
    const u = b && b.user;
    if (!u || typeof u.id !== 'number') return;
    remember(u);
    if (b.online) S.online.set(u.id, {...(S.online.get(u.id) || {}), ...u, places: Number(b.places) || 1});
    else S.online.delete(u.id);
    renderUsers();
    scheduleConvList();
  });

  client.on('im/user', (b) => {
    const u = b && b.user;
    if (!u || typeof u.id !== 'number') return;
    remember(u);
    if (S.online.has(u.id)) S.online.set(u.id, {...S.online.get(u.id), ...u});
    if (S.me && S.me.id === u.id) { S.me = {...S.me, ...u}; renderMe(); }
    renderUsers();
    scheduleConvList();
    // Messages already on screen show the sender's current name and picture.
    for (const row of dom.messages.querySelectorAll(`.msg[data-from="${CSS.escape(String(u.id))}"]`)) {
      const from = row.querySelector('.from');
      if (from) from.textContent = u.nickname;
      const av = row.querySelector(':scope > .avatar');
      if (av) R.fillAvatar(av, u);
    }
  });

  client.on('im/group', () => { loadGroups(S.gen).then(() => { scheduleConvList(); renderHeader(); }); });

  function renderMe() {
    if (!S.me) return;
    dom.me.textContent = S.me.nickname;
    R.fillAvatar(dom.meAvatar, S.me);
  }

  // ---- typing ------------------------------------------------------------

  let lastTypingSent = 0;

  client.on('im/typing', (b) => {
    const from = b && b.from;
    if (!from || typeof from.id !== 'number' || !validConv(b.conv) || isMine(b)) return;
    remember(from);
    let m = S.typing.get(b.conv);
    if (!m) S.typing.set(b.conv, (m = new Map()));
    const had = m.get(from.id);
    if (had) clearTimeout(had.timer);
    const timer = setTimeout(() => { clearTypingOf(b.conv, from.id); }, TYPING_SHOWN);
    m.set(from.id, {user: from, timer});
    if (b.conv === S.conv) renderTyping();
  });

  function clearTypingOf(conv, uid) {
    const m = S.typing.get(conv);
    if (!m || !m.has(uid)) return;
    clearTimeout(m.get(uid).timer);
    m.delete(uid);
    if (conv === S.conv) renderTyping();
  }
  function clearTyping() {
    for (const m of S.typing.values()) for (const t of m.values()) clearTimeout(t.timer);
    S.typing.clear();
    renderTyping();
  }
  function renderTyping() {
    const m = S.typing.get(S.conv);
    const names = m ? [...m.values()].map((t) => t.user.nickname) : [];
    let s = '';
    if (names.length === 1) s = `${names[0]} is typing…`;
    else if (names.length === 2) s = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) s = `${names.length} people are typing…`;
    dom.typing.textContent = s;
    dom.typing.classList.toggle('active', !!s);
  }

  // ---- read marks ----------------------------------------------------------

  let readTimer = 0;
  function scheduleRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(markRead, 250);
  }
  function markRead() {
    if (!S.ready || !S.me || dom.chat.hidden || document.visibilityState !== 'visible') return;
    const conv = S.conv;
    const st = storeFor(conv);
    const newest = st.ids[st.ids.length - 1];
    const c = ensureConv(conv);
    if (c.unread) { c.unread = 0; scheduleConvList(); }
    if (!newest || (S.readSent.get(conv) || 0) >= newest) return;
    S.readSent.set(conv, newest);
    client.request('im/read', {with: conv, id: newest}).catch((err) => {
      if (S.readSent.get(conv) === newest) S.readSent.delete(conv);
      if (err.code === 'unauthorized') recheck();
    });
  }

  client.on('im/read', (b) => {
    if (!b || !validConv(b.conv)) return;
    const uid = b.user && typeof b.user === 'object' ? b.user.id : Number(b.user);
    const id = Number(b.id) || 0;
    if (S.me && uid === S.me.id) {
      // Read in another tab of ours.
      const c = S.convs.get(b.conv);
      if (c && c.unread && (!c.last || c.last.id <= id)) { c.unread = 0; scheduleConvList(); }
      return;
    }
    if (userOf(b.conv) && uid === userOf(b.conv) && id > (S.readBy.get(b.conv) || 0)) {
      S.readBy.set(b.conv, id);
      if (b.conv === S.conv) updateTicks();
    }
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      scheduleRead();
      renderConvList();
      client.retryNow();
    }
  });
  window.addEventListener('online', () => client.retryNow());
  // A page kept in the back/forward cache must not keep its connection (a
  // frozen page would hold a place and let the server queue pushes for it):
  // close it, and catch up when the page comes back.
  let frozen = false;
  window.addEventListener('pagehide', (e) => {
    if (e.persisted && client.running) { frozen = true; client.stop(1000, 'page hidden'); }
  });
  window.addEventListener('pageshow', (e) => {
    if (e.persisted && frozen) { frozen = false; client.restart(); }
  });

  // ---- sending -------------------------------------------------------------

  function pendingEl(item) {
    const m = {cid: item.cid, from: S.me || {}, text: item.text, ts: item.ts, kind: item.kind, file: item.file};
    if (item.state === 'uploading') m.text = `Uploading ${item.name || 'file'}…`;
    const e = R.message(m, {own: true, tick: 'sending'});
    e.classList.add('pending');
    if (item.state === 'failed') R.setFailed(e, item.error || 'error');
    return e;
  }

  function pendingNode(cid) {
    return dom.messages.querySelector(`.msg.pending[data-cid="${CSS.escape(cid)}"]`);
  }

  function showPending(item) {
    if (item.to !== S.conv) return;
    const old = pendingNode(item.cid);
    const e = pendingEl(item);
    if (old) old.replaceWith(e);
    else {
      for (const p of dom.messages.querySelectorAll(':scope > .placeholder')) p.remove();
      dom.messages.append(e);
      scrollBottom();
    }
  }

  function enqueue(to, fields) {
    const item = {cid: newCid(), to, text: '', kind: 'text', file: null, ts: Date.now(), state: 'queued', error: '', ...fields};
    S.outbox.push(item);
    saveOutbox();
    showPending(item);
    ensureConv(to);
    pumpOutbox();
    return item;
  }

  // settle removes the outbox entry of cid: its message has arrived.
  function settle(cid) {
    const i = S.outbox.findIndex((x) => x.cid === cid);
    if (i < 0) return;
    S.outbox.splice(i, 1);
    saveOutbox();
    const e = pendingNode(cid);
    if (e) e.remove();
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let pumping = false;

  // pumpOutbox sends the queued messages one at a time, in order. A message
  // whose reply did not come (timeout, connection lost) stays queued and goes
  // again with the same cid: the server stores it once.
  async function pumpOutbox() {
    if (pumping) return;
    pumping = true;
    try {
      while (client.open && S.ready && S.me) {
        const item = S.outbox.find((x) => x.state === 'queued');
        if (!item) break;
        item.state = 'sending';
        const body = {to: item.to, cid: item.cid};
        if (item.text) body.text = item.text;
        if (item.kind && item.kind !== 'text') body.kind = item.kind;
        if (item.file) body.file = item.file.id;
        try {
          const r = await client.request('im/send', body);
          acked(item, r);
        } catch (err) {
          if (!S.outbox.includes(item)) continue; // settled by its push meanwhile
          if (err.code === 'closed' || err.code === 'offline') { item.state = 'queued'; break; }
          if (err.code === 'timeout') { item.state = 'queued'; await sleep(1000); continue; }
          if (err.code === 'rate_limited') { item.state = 'queued'; await sleep(Math.max(250, err.retryAfter || 1000)); continue; }
          if (err.code === 'unauthorized') { item.state = 'queued'; recheck(); break; }
          item.state = 'failed';
          item.error = err.message;
          showPending(item);
        }
      }
    } finally {
      pumping = false;
    }
  }

  function acked(item, r) {
    const id = Number(r && r.id);
    settle(item.cid);
    if (!Number.isFinite(id) || id <= 0) return;
    const conv = validConv(r.conv) ? r.conv : item.to;
    const st = storeFor(conv);
    if (st.byId.has(id)) return; // its push came first
    ingest({
      id, conv, from: S.me, to: item.to, kind: item.kind || 'text', text: item.text || '',
      file: item.file || null, cid: item.cid, ts: Number(r.ts) || Date.now(), edited: false, deleted: false,
    }, {source: 'ack'});
  }

  function sendComposer() {
    const text = dom.text.value.trim();
    if (!text) return;
    if (R.countChars(text) > TEXT_LIMIT) {
      toast(`A message can have at most ${TEXT_LIMIT} characters.`);
      return;
    }
    enqueue(S.conv, {text});
    dom.text.value = '';
    updateCount();
    lastTypingSent = 0;
  }

  function updateCount() {
    const n = R.countChars(dom.text.value);
    const show = n > TEXT_LIMIT - 500;
    dom.count.hidden = !show;
    if (show) dom.count.textContent = `${n}/${TEXT_LIMIT}`;
    dom.count.classList.toggle('over', n > TEXT_LIMIT);
  }

  dom.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    sendComposer();
    if (!narrow()) dom.text.focus();
  });
  // Enter sends, Shift+Enter is a newline. Some synthetic keyboards (the
  // DevTools protocol's) send the character of a key as its own event that
  // the keydown's preventDefault does not cancel: the line break that
  // follows a handled Enter is swallowed until the key comes up.
  let swallowBreak = 0;
  dom.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      swallowBreak = Date.now();
      sendComposer();
    }
  });
  dom.text.addEventListener('keyup', (e) => { if (e.key === 'Enter') swallowBreak = 0; });
  dom.text.addEventListener('beforeinput', (e) => {
    if (swallowBreak && Date.now() - swallowBreak < 1000 &&
        (e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph')) {
      e.preventDefault();
    }
  });
  dom.text.addEventListener('input', () => {
    updateCount();
    if (!dom.text.value.trim()) return;
    const now = Date.now();
    if (now - lastTypingSent >= TYPING_EVERY && S.ready) {
      if (client.send('im/typing', {to: S.conv})) lastTypingSent = now;
    }
  });

  dom.messages.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    if (b.dataset.action === 'older') { loadOlder(); return; }
    const row = b.closest('.msg.pending');
    const item = row && S.outbox.find((x) => x.cid === row.dataset.cid);
    if (!item) return;
    if (b.dataset.action === 'retry') {
      item.state = 'queued';
      item.error = '';
      showPending(item);
      pumpOutbox();
    } else if (b.dataset.action === 'discard') {
      settle(item.cid);
    }
  });

  dom.messages.addEventListener('scroll', () => {
    stuck = nearBottom();
    if (dom.messages.scrollTop < 120) loadOlder();
    if (stuck) dom.jump.hidden = true;
  }, {passive: true});
  // When the view changes size (a phone keyboard opens, the window is
  // resized), a reader who was at the bottom stays there.
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => { if (stuck) dom.messages.scrollTop = dom.messages.scrollHeight; }).observe(dom.messages);
  }
  dom.jump.addEventListener('click', scrollBottom);

  // ---- files ---------------------------------------------------------------

  async function upload(file) {
    const fd = new FormData();
    fd.append('file', file, file.name);
    let res;
    try {
      res = await fetch('/upload', {method: 'POST', body: fd, credentials: 'same-origin'});
    } catch {
      throw new ProtoError({code: 'offline', message: 'cannot reach the server'});
    }
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (!res.ok || !data || data.error || !data.file) {
      throw new ProtoError((data && data.error) || {code: 'internal', message: `upload failed (HTTP ${res.status})`});
    }
    return data.file;
  }

  function kindOf(mime) {
    const m = String(mime || '');
    if (/^image\/(png|jpeg|gif|webp|avif|bmp)$/.test(m)) return 'image';
    if (m.startsWith('audio/')) return 'audio';
    if (m.startsWith('video/')) return 'video';
    return 'file';
  }

  // Uploads (POST /upload) are not served yet, so the page has no attach
  // button and this stays dormant until ui.html offers one again.
  if (dom.attach && dom.fileInput) dom.attach.addEventListener('click', () => dom.fileInput.click());
  if (dom.fileInput) dom.fileInput.addEventListener('change', async () => {
    const file = dom.fileInput.files && dom.fileInput.files[0];
    dom.fileInput.value = '';
    if (!file) return;
    if (file.size > MAX_UPLOAD) { toast('Files can be at most 10 MB.'); return; }
    const item = {cid: newCid(), to: S.conv, text: '', kind: 'file', file: null, ts: Date.now(), state: 'uploading', error: '', name: file.name};
    S.outbox.push(item);
    showPending(item);
    try {
      const f = await upload(file);
      item.file = f;
      item.kind = kindOf(f.mime);
      item.state = 'queued';
      saveOutbox();
      showPending(item);
      pumpOutbox();
    } catch (err) {
      settle(item.cid);
      failed(err, 'Could not send the file');
    }
  });

  // ---- login and logout ------------------------------------------------------

  function loginMessage(err, status) {
    if (!err) return `Login failed (HTTP ${status}).`;
    if (err.code === 'auth_failed') return 'Wrong password.';
    if (err.code === 'rate_limited') {
      const s = Math.max(1, Math.ceil((Number(err.retry_after_ms) || 1000) / 1000));
      return `Too many attempts: try again in ${s} s.`;
    }
    return err.message || err.code || `Login failed (HTTP ${status}).`;
  }

  dom.loginForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    dom.loginError.textContent = '';
    const nickname = dom.nickname.value.trim();
    const password = dom.password.value;
    if (!nickname) { dom.loginError.textContent = 'Enter a nickname.'; dom.nickname.focus(); return; }
    if (!password) { dom.loginError.textContent = 'Enter a password.'; dom.password.focus(); return; }
    dom.loginSubmit.disabled = true;
    dom.loginSubmit.textContent = 'Logging in…';
    try {
      const res = await fetch('/im/login', {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        credentials: 'same-origin',
        cache: 'no-store',
        body: JSON.stringify({nickname, password}),
      });
      let data = null;
      try { data = await res.json(); } catch { data = null; }
      if (!res.ok || !data || data.error || !data.user) {
        dom.loginError.textContent = loginMessage(data && data.error, res.status);
        return;
      }
      dom.password.value = '';
      if (data.registered) toast(`Welcome, ${data.user.nickname}! Your nickname is registered.`);
      resetSession();
      dom.login.hidden = true;
      dom.boot.hidden = false;
      dom.bootText.textContent = 'Signing in…';
      client.restart(); // the new connection carries the new session cookie
    } catch {
      dom.loginError.textContent = 'Cannot reach the server. Check the connection and try again.';
    } finally {
      dom.loginSubmit.disabled = false;
      dom.loginSubmit.textContent = 'Log in';
    }
  });

  dom.logout.addEventListener('click', async () => {
    dom.logout.disabled = true;
    const uid = S.me ? S.me.id : 0;
    if (S.me) dom.nickname.value = S.me.nickname;
    try {
      await fetch('/im/logout', {
        method: 'POST', headers: {'Content-Type': 'application/json'}, credentials: 'same-origin', body: '{}',
      });
    } catch { /* the session ends on the server when it can */ }
    dom.logout.disabled = false;
    client.stop(1000, 'logout');
    for (const k of ['seq', 'outbox', 'conv']) store.del(`dce.${k}.${uid}`);
    resetSession();
    showLogin();
  });

  // resetSession forgets everything about the signed-in user.
  function resetSession() {
    S.gen++;
    S.me = null;
    S.ready = false;
    S.conv = LOBBY;
    S.lastSeq = 0;
    S.freshSeq = false;
    S.caughtUp = false;
    S.pushSeq = 0;
    S.online.clear();
    S.people.clear();
    S.groups.clear();
    S.convs.clear();
    S.stores.clear();
    S.els.clear();
    S.outbox = [];
    S.readSent.clear();
    S.readBy.clear();
    S.resolving.clear();
    clearTyping();
    dom.messages.replaceChildren();
    dom.convList.replaceChildren();
    dom.userList.replaceChildren();
    dom.me.textContent = '';
    dom.meAvatar.replaceChildren();
    document.title = baseTitle;
    setStatus('closed');
    hideNotice();
    if (dom.profile.open) dom.profile.close();
  }

  // ---- screens ---------------------------------------------------------------

  function showLogin() {
    dom.boot.hidden = true;
    dom.chat.hidden = true;
    dom.login.hidden = false;
    dom.loginSubmit.disabled = false;
    if (!dom.nickname.value) dom.nickname.focus();
    else dom.password.focus();
  }

  function showChat() {
    const was = dom.chat.hidden;
    dom.boot.hidden = true;
    dom.login.hidden = true;
    dom.chat.hidden = false;
    if (was) {
      renderConvList();
      renderHeader();
      renderConv(true);
    }
  }

  function setStatus(state) {
    const s = dom.status;
    if (state === 'open') { s.dataset.state = 'open'; s.textContent = 'online'; }
    else if (state === 'offline') { s.dataset.state = 'closed'; s.textContent = 'disconnected'; }
    else if (state === 'connecting') { s.dataset.state = 'closed'; s.textContent = 'connecting…'; }
    else { s.dataset.state = 'closed'; s.textContent = 'reconnecting…'; }
    s.classList.toggle('busy', state === 'closed' || state === 'connecting');
  }

  let noticeFn = null;
  function showNotice(text, action, fn) {
    dom.noticeText.textContent = text;
    dom.noticeAction.textContent = action;
    dom.noticeAction.hidden = !fn;
    noticeFn = fn;
    dom.notice.hidden = false;
    if (S.me) showChat();
    else if (dom.login.hidden) { dom.boot.hidden = false; dom.bootText.textContent = text; }
  }
  function hideNotice() { dom.notice.hidden = true; noticeFn = null; }
  dom.noticeAction.addEventListener('click', () => { if (noticeFn) noticeFn(); });

  let toastTimer = 0;
  function toast(text) {
    dom.toast.textContent = text;
    dom.toast.hidden = false;
    dom.toast.classList.add('show');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { dom.toast.classList.remove('show'); dom.toast.hidden = true; }, 5000);
  }

  // ---- the drawer (phones) -----------------------------------------------------

  const narrowQuery = window.matchMedia('(max-width: 700px)');
  const narrow = () => narrowQuery.matches;
  function openDrawer() {
    dom.chat.classList.add('drawer-open');
    dom.scrim.hidden = false;
    dom.drawerToggle.setAttribute('aria-expanded', 'true');
  }
  function closeDrawer() {
    dom.chat.classList.remove('drawer-open');
    dom.scrim.hidden = true;
    dom.drawerToggle.setAttribute('aria-expanded', 'false');
  }
  dom.drawerToggle.addEventListener('click', () => {
    if (dom.chat.classList.contains('drawer-open')) closeDrawer(); else openDrawer();
  });
  dom.scrim.addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && dom.chat.classList.contains('drawer-open')) closeDrawer();
  });

  dom.convList.addEventListener('click', (e) => {
    const li = e.target.closest('li[data-conv]');
    if (li) openConv(li.dataset.conv);
  });
  dom.userList.addEventListener('click', (e) => {
    const li = e.target.closest('li[data-user-id]');
    if (!li) return;
    const id = Number(li.dataset.userId);
    if (S.me && id === S.me.id) openProfile();
    else openConv(`user:${id}`);
  });

  // ---- profile -----------------------------------------------------------------

  function openProfile() {
    if (!S.me) return;
    closeDrawer();
    dom.profileError.textContent = '';
    dom.profileBrief.value = S.me.brief || '';
    dom.profileName.textContent = S.me.nickname;
    R.fillAvatar(dom.profileAvatar, S.me);
    dom.profile.showModal();
    dom.profileBrief.focus();
  }
  dom.profileOpen.addEventListener('click', openProfile);
  dom.profileCancel.addEventListener('click', () => dom.profile.close());
  dom.profileForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const brief = dom.profileBrief.value.trim();
    if (R.countChars(brief) > BRIEF_LIMIT) {
      dom.profileError.textContent = `At most ${BRIEF_LIMIT} characters.`;
      return;
    }
    dom.profileSave.disabled = true;
    try {
      const r = await client.request('im/profile', {brief});
      if (r.user) { S.me = {...S.me, ...r.user}; remember(S.me); renderMe(); renderUsers(); }
      dom.profile.close();
    } catch (err) {
      dom.profileError.textContent = err.code === 'offline' || err.code === 'closed' ? 'Not connected; try again in a moment.' : err.message;
    } finally {
      dom.profileSave.disabled = false;
    }
  });
  // Like the attach button: dormant until ui.html offers a picture upload.
  if (dom.profileAvatarBtn && dom.profileAvatarInput) dom.profileAvatarBtn.addEventListener('click', () => dom.profileAvatarInput.click());
  if (dom.profileAvatarBtn && dom.profileAvatarInput) dom.profileAvatarInput.addEventListener('change', async () => {
    const file = dom.profileAvatarInput.files && dom.profileAvatarInput.files[0];
    dom.profileAvatarInput.value = '';
    if (!file) return;
    dom.profileError.textContent = '';
    dom.profileAvatarBtn.disabled = true;
    try {
      const f = await upload(file);
      const r = await client.request('im/profile', {avatar: f.url});
      if (r.user) {
        S.me = {...S.me, ...r.user};
        remember(S.me);
        renderMe();
        renderUsers();
        R.fillAvatar(dom.profileAvatar, S.me);
      }
    } catch (err) {
      dom.profileError.textContent = err.message;
    } finally {
      dom.profileAvatarBtn.disabled = false;
    }
  });

  // ---- start -------------------------------------------------------------------

  Object.defineProperty(window, 'dceDebug', {
    configurable: false,
    enumerable: false,
    value: Object.freeze({
      get lastSeq() { return S.lastSeq; },
      get connected() { return client.open; },
      get ready() { return S.ready; },
      get conv() { return S.conv; },
      get pending() { return S.outbox.length; },
    }),
  });

  dom.loginSubmit.disabled = false;
  client.start();
}
