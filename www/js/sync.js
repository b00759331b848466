// History and sync: the lists loaded on every connection, a
// conversation's newest page and older pages, the catch-up after a
// reconnect (im/sync from the sync point), and ingest, where every message
// from any source is merged, so nothing shows twice.

import {LOBBY, PAGE, SYNC_ROUNDS, KEEP, KEEP_MAX, S, dom, client, store, seqKey, trackSeq, remember, isMine,
  validConv, userOf, ensureConv, storeFor, sortedInsert} from './state.js';
import {renderConv, appendEl, replaceEl, nearBottom, scheduleRead, clearTypingOf, updateOlder} from './conv.js';
import {renderConvList, renderHeader, renderUsers, scheduleConvList} from './sidebar.js';
import {settle} from './outbox.js';
import {failed} from './session.js';
import {errText} from './i18n.js';
import {learnMembership} from './groups.js';

export async function loadUsers(gen) {
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

export async function loadConversations(gen) {
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

export async function loadGroups(gen) {
  try {
    const r = await client.request('im/group/list', {});
    if (gen !== S.gen) return;
    S.groups.clear();
    for (const g of Array.isArray(r.groups) ? r.groups : []) {
      if (g && typeof g.id === 'number') S.groups.set(g.id, g);
    }
    await learnMembership(gen);
  } catch { /* a server without groups: none shown */ }
}

// loadNewest (re)loads the newest page of conv; with around, the page
// around that message id instead (a search result).
export async function loadNewest(conv, gen, around) {
  const st = storeFor(conv);
  if (st.loading) return;
  st.loading = true;
  st.error = '';
  st.byId.clear();
  st.ids = [];
  st.newer = false;
  if (conv === S.conv) renderConv(true);
  try {
    const body = {with: conv, limit: PAGE};
    if (around) body.around = around;
    const r = await client.request('im/load', body);
    if (gen !== undefined && gen !== S.gen) return;
    // A tab with no sync point yet takes the newest seq it has seen: it
    // loaded the history, so nothing before it is missing.
    for (const m of Array.isArray(r.messages) ? r.messages : []) {
      ingest(m, {quiet: true, source: 'load'});
      if (S.freshSeq && !around) trackSeq(m.seq);
    }
    st.more = !!r.more;
    st.newer = !!(around && r.newer);
    st.loaded = true;
  } catch (err) {
    if (err.code === 'forbidden' || err.code === 'not_found' || err.code === 'bad_request') {
      st.loaded = true;
      st.error = errText(err);
    } else {
      failed(err, 'what.loadConv');
    }
  } finally {
    st.loading = false;
  }
  if (conv === S.conv && !around) {
    renderConv(true);
  }
}

export async function loadOlder() {
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
    failed(err, 'what.loadOlder');
  } finally {
    st.loading = false;
  }
  if (conv === S.conv) renderConv(false);
}

// loadNewer pages forward in a conversation opened around a search
// result, until it meets the newest message (pushes then keep it current).
export async function loadNewer() {
  const conv = S.conv;
  const st = storeFor(conv);
  if (!st.loaded || !st.newer || st.loading || !client.open || !st.ids.length) return;
  st.loading = true;
  const gen = S.gen;
  try {
    const r = await client.request('im/load', {with: conv, after: st.ids[st.ids.length - 1], limit: PAGE});
    if (gen !== S.gen) return;
    const list = Array.isArray(r.messages) ? r.messages : [];
    for (const m of list) ingest(m, {quiet: true, source: 'load'});
    st.newer = !!r.more && list.length > 0;
  } catch (err) {
    failed(err, 'what.loadConv');
  } finally {
    st.loading = false;
  }
  if (conv === S.conv) renderConv(false);
}

// catchUp brings this connection up to date: im/sync from the sync
// point (retried while it fails and the connection stays), then the
// pushes that came meanwhile move the sync point, and the open
// conversation is shown with everything merged (or loaded, if it is not).
export async function catchUp(gen) {
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
      failed(err, 'what.catchUp');
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
export async function resolveNames() {
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

// ingest merges one message from any source (push, load, sync, our own
// acknowledgement). It reports whether the message was new. Messages are
// kept by id, so nothing shows twice; a change (edit, delete) replaces the
// message where it is shown.
export function ingest(m, {quiet = false, source = 'push'} = {}) {
  if (!m || typeof m !== 'object' || typeof m.id !== 'number' || !validConv(m.conv)) return false;
  trackSeqFor(m, source);
  remember(m.from);
  if (m.cid && isMine(m)) settle(m.cid);
  const st = storeFor(m.conv);
  const had = st.byId.get(m.id);
  if (had) {
    // A stale copy (an older seq: a page loaded before an edit came) does
    // not undo a newer one.
    if (typeof had.seq === 'number' && typeof m.seq === 'number' && m.seq < had.seq) return false;
    const merged = {...had, ...m};
    if (m.seq === undefined && had.seq !== undefined) merged.seq = had.seq;
    if (had.deleted) Object.assign(merged, {deleted: true, text: '', file: null});
    st.byId.set(m.id, merged);
    const changed = had.text !== merged.text || had.deleted !== merged.deleted || had.edited !== merged.edited ||
      (had.file && had.file.url) !== (merged.file && merged.file.url);
    if (changed && m.conv === S.conv) replaceEl(merged);
    bumpConv(merged, false, source);
    return false;
  }
  st.byId.set(m.id, m);
  // A conversation opened around a search result holds a window that may
  // not reach the newest: a new message then waits for the page forward.
  if (st.newer && source !== 'load' && m.id > st.ids[st.ids.length - 1]) {
    st.byId.delete(m.id);
    bumpConv(m, true, source);
    return true;
  }
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

// trackSeqFor moves the sync point for a change that came from source.
// Sync results advance it, and so do pushes once this connection has
// caught up (before, they are kept in pushSeq); loaded history only does
// before the tab has one (S.freshSeq).
export function trackSeqFor(m, source) {
  if (source === 'sync' || (source === 'push' && S.caughtUp)) trackSeq(m.seq);
  else if (source === 'push' && typeof m.seq === 'number' && m.seq > S.pushSeq) S.pushSeq = m.seq;
}

function bumpConv(m, isNew, source) {
  const c = ensureConv(m.conv);
  const newer = !c.last || m.id > c.last.id;
  if (newer) c.last = m;
  else if (c.last && c.last.id === m.id) c.last = {...c.last, ...m};
  if (isNew && newer && source !== 'load' && source !== 'ack' && !isMine(m)) {
    const looking = m.conv === S.conv && document.visibilityState === 'visible' && dom.chat.hidden === false;
    if (looking) scheduleRead();
    else c.unread += 1;
  }
  if (newer || (c.last && c.last.id === m.id)) scheduleConvList();
}

// applyDeleted applies im/deleted {"id","conv","seq"}: the message stays as
// "message deleted", wherever it is kept. Its seq moves the sync point as
// any push's does.
export function applyDeleted(b, source = 'push') {
  if (!b || typeof b.id !== 'number') return;
  trackSeqFor(b, source);
  for (const [conv, st] of S.stores) {
    if (b.conv && b.conv !== conv) continue;
    const had = st.byId.get(b.id);
    if (!had) continue;
    if (typeof had.seq === 'number' && typeof b.seq === 'number' && b.seq < had.seq) continue;
    const gone = {...had, deleted: true, text: '', file: null};
    if (typeof b.seq === 'number') gone.seq = b.seq;
    st.byId.set(b.id, gone);
    if (conv === S.conv) replaceEl(gone);
  }
  for (const c of S.convs.values()) {
    if (c.last && c.last.id === b.id) c.last = {...c.last, deleted: true, text: '', file: null};
  }
  scheduleConvList();
}

export function initSync() {
  client.on('im/message', (m) => ingest(m));
  client.on('im/edited', (m) => ingest(m && m.message ? m.message : m));
  client.on('im/deleted', (b) => applyDeleted(b));
}
