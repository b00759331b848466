// The open conversation: its messages (rebuilt, appended to, replaced in
// place), scrolling and the "new messages" button, delivery ticks, who is
// typing, and the read marks this page sends and receives.

import {LOBBY, TYPING_SHOWN, S, dom, client, store, convKey, remember, isMine, validConv, userOf, ensureConv,
  storeFor} from './state.js';
import * as R from './render.js';
import {t} from './i18n.js';
import {loadNewest, loadOlder, loadNewer} from './sync.js';
import {renderConvList, renderHeader, scheduleConvList, closeDrawer, narrow} from './sidebar.js';
import {pendingEl} from './outbox.js';
import {recheck} from './session.js';
import {decorate, resetEdit} from './edit.js';

export const nearBottom = () => {
  const b = dom.messages;
  return b.scrollHeight - b.scrollTop - b.clientHeight < 80;
};

export function scrollBottom() {
  dom.messages.scrollTop = dom.messages.scrollHeight;
  dom.jump.hidden = true;
  S.stuck = true;
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
  const e = R.message(m, {own: isMine(m), cont: isCont(prev, m), tick: tickFor(m), menu: canAct(m)});
  decorate(e, m);
  S.els.set(m.id, e);
  return e;
}

// canAct says whether message m gets the menu (edit, delete): one's own,
// and any for an admin (delete only).
export function canAct(m) {
  if (!m || m.deleted || !S.me || typeof m.id !== 'number') return false;
  return isMine(m) || isAdmin();
}

// isAdmin says whether the signed-in user is an admin, by what the server
// last said of them (im/signer, im/users, im/user).
export const isAdmin = () => !!(S.me && (S.me.admin || (S.people.get(S.me.id) || {}).admin));

function olderEl(st) {
  const box = R.el('div', 'older');
  box.id = 'older';
  if (st.loading && st.loaded) {
    box.textContent = t('conv.loading');
  } else if (st.loaded && st.more) {
    const b = R.el('button', 'btn small', t('conv.older'));
    b.type = 'button';
    b.dataset.action = 'older';
    box.append(b);
  } else if (st.loaded && st.ids.length) {
    box.textContent = t('conv.beginning');
  }
  return box;
}

export function updateOlder() {
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
export function renderConv(reset) {
  const box = dom.messages;
  const st = storeFor(S.conv);
  const anchor = reset ? {bottom: true} : captureAnchor();
  S.els.clear();
  box.dataset.conv = S.conv;
  const nodes = [olderEl(st)];
  if (!st.loaded) {
    nodes.push(R.el('div', 'placeholder', st.loading || !client.open ? t('conv.loading') : ''));
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
  const pend = st.newer ? [] : S.outbox.filter((i) => i.to === S.conv);
  if (st.newer) {
    const b = R.el('button', 'btn small', t('conv.newer'));
    b.type = 'button';
    b.dataset.action = 'newer';
    const box2 = R.el('div', 'older newer');
    box2.append(b);
    nodes.push(box2);
  }
  if (st.loaded && !st.error && !st.ids.length && !pend.length) {
    nodes.push(R.el('div', 'placeholder', t('conv.empty')));
  }
  for (const i of pend) nodes.push(pendingEl(i));
  box.replaceChildren(...nodes);
  restoreAnchor(anchor);
}

// appendEl adds the newest message of the open conversation without a
// rebuild: before the pending ones, after a day separator if it is a new day.
export function appendEl(m, at) {
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

export function replaceEl(m) {
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

// openConv shows conversation conv; with around (a message id), the page
// around that message, scrolled to it and briefly highlighted.
export async function openConv(conv, around) {
  if (!validConv(conv)) conv = LOBBY;
  const changed = conv !== S.conv;
  if (changed) resetEdit();
  S.conv = conv;
  store.set(convKey(), conv);
  ensureConv(conv).unread = 0;
  S.typingSent = 0;
  closeDrawer();
  renderHeader();
  renderConvList();
  renderTyping();
  const st = storeFor(conv);
  if (around && !st.byId.has(around) && client.open && S.me) {
    await loadNewest(conv, S.gen, around);
    if (S.conv !== conv) return;
    renderConv(true);
  } else {
    if (changed) renderConv(true);
    if (!st.loaded && !st.loading && client.open && S.me) await loadNewest(conv, S.gen);
  }
  if (around) highlight(around);
  scheduleRead();
  if (!narrow() && !around) dom.text.focus({preventScroll: true});
}

// highlight scrolls message id into the middle of the view and marks it
// for a moment.
function highlight(id) {
  const e = S.els.get(id);
  if (!e) return;
  e.scrollIntoView({block: 'center'});
  S.stuck = nearBottom();
  e.classList.add('flash');
  setTimeout(() => e.classList.remove('flash'), 2500);
}

// ---- typing ------------------------------------------------------------

export function clearTypingOf(conv, uid) {
  const m = S.typing.get(conv);
  if (!m || !m.has(uid)) return;
  clearTimeout(m.get(uid).timer);
  m.delete(uid);
  if (conv === S.conv) renderTyping();
}

export function clearTyping() {
  for (const m of S.typing.values()) for (const x of m.values()) clearTimeout(x.timer);
  S.typing.clear();
  renderTyping();
}

export function renderTyping() {
  const m = S.typing.get(S.conv);
  const names = m ? [...m.values()].map((x) => x.user.nickname) : [];
  let s = '';
  if (names.length === 1) s = t('typing.one', {a: names[0]});
  else if (names.length === 2) s = t('typing.two', {a: names[0], b: names[1]});
  else if (names.length > 2) s = t('typing.many', {n: names.length});
  dom.typing.textContent = s;
  dom.typing.classList.toggle('active', !!s);
}

// ---- read marks ----------------------------------------------------------

let readTimer = 0;
export function scheduleRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 250);
}

function markRead() {
  if (!S.ready || !S.me || dom.chat.hidden || document.visibilityState !== 'visible') return;
  const conv = S.conv;
  const st = storeFor(conv);
  if (st.newer) return; // not at the newest yet
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

export function initConv() {
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

  dom.messages.addEventListener('scroll', () => {
    S.stuck = nearBottom();
    if (dom.messages.scrollTop < 120) loadOlder();
    if (S.stuck) {
      dom.jump.hidden = true;
      if (storeFor(S.conv).newer) loadNewer();
    }
  }, {passive: true});
  // When the view changes size (a phone keyboard opens, the window is
  // resized), a reader who was at the bottom stays there.
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => { if (S.stuck) dom.messages.scrollTop = dom.messages.scrollHeight; }).observe(dom.messages);
  }
  dom.jump.addEventListener('click', scrollBottom);

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
}
