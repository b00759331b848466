// The session: the handshake on every (re)connection (who am I, load the
// lists, catch up), the close handling (reconnecting, kicked, banned, over
// the connection cap), login and logout, and forgetting everything about a
// user.

import {LOBBY, S, dom, client, store, seqKey, convKey, forget, loadOutbox, remember, validConv, storeFor} from './state.js';
import {t, errText} from './i18n.js';
import {loadUsers, loadConversations, loadGroups, loadNewest, catchUp, resolveNames} from './sync.js';
import {scheduleRead, clearTyping} from './conv.js';
import {renderConvList, renderHeader, renderMe} from './sidebar.js';
import {pumpOutbox} from './outbox.js';
import {resetSearch} from './search.js';
import {showLogin, showChat, setStatus, showNotice, hideNotice, toast, closeDialogs} from './screens.js';

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
    dom.bootText.textContent = t('boot.unreachable');
  }
  if (!info.reconnect && !client.running) {
    // Kicked, banned, over the limit, or logged out.
    const code = [4001, 4503, 4509].includes(info.code) ? info.code : (kick ? 4001 : 0);
    let text = code ? t(`close.${code}`) : '';
    if (text && kick && kick.reason) text += ' ' + t('close.reason', {reason: kick.reason});
    clearTimeout(kick && kick.timer);
    kick = null;
    if (text) {
      setStatus('offline');
      showNotice(text, t('notice.reconnect'), () => {
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

// recheck asks who we are after an unauthorized reply: the session may
// have ended (logout in another tab, expiry).
export async function recheck() {
  try {
    const r = await client.request('im/signer', {});
    if (!r.user) { resetSession(); showLogin(); }
  } catch { /* the next connection sorts it out */ }
}

// failed reports a failed request: what (a key of the language files) says
// what was being done.
export function failed(err, what) {
  if (!err) return;
  if (err.code === 'unauthorized') { recheck(); return; }
  if (err.code === 'closed' || err.code === 'offline') return;
  toast(what ? t('failed', {what: t(what), why: errText(err)}) : errText(err));
}

function loginMessage(err, status) {
  if (!err) return t('login.failed', {status});
  if (err.code === 'auth_failed') return t('login.wrong');
  if (err.code === 'forbidden') return t('login.forbidden');
  if (err.code === 'bad_request') return t('login.bad');
  return errText(err);
}

async function login(e) {
  e.preventDefault();
  dom.loginError.textContent = '';
  const nickname = dom.nickname.value.trim();
  const password = dom.password.value;
  if (!nickname) { dom.loginError.textContent = t('login.needNickname'); dom.nickname.focus(); return; }
  if (!password) { dom.loginError.textContent = t('login.needPassword'); dom.password.focus(); return; }
  dom.loginSubmit.disabled = true;
  dom.loginSubmit.textContent = t('login.busy');
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
    if (data.registered) toast(t('login.welcome', {name: data.user.nickname}));
    resetSession();
    dom.login.hidden = true;
    dom.boot.hidden = false;
    dom.bootText.textContent = t('boot.signingIn');
    client.restart(); // the new connection carries the new session cookie
  } catch {
    dom.loginError.textContent = t('login.unreachable');
  } finally {
    dom.loginSubmit.disabled = false;
    dom.loginSubmit.textContent = t('login.submit');
  }
}

async function logout() {
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
  forget(uid);
  resetSession();
  showLogin();
}

// resetSession forgets everything about the signed-in user.
export function resetSession() {
  S.gen++;
  S.me = null;
  S.ready = false;
  S.conv = LOBBY;
  S.lastSeq = 0;
  S.freshSeq = false;
  S.caughtUp = false;
  S.pushSeq = 0;
  for (const k of ['online', 'people', 'groups', 'mine', 'convs', 'stores', 'els', 'readSent', 'readBy', 'resolving']) S[k].clear();
  S.outbox = [];
  clearTyping();
  dom.messages.replaceChildren();
  dom.convList.replaceChildren();
  dom.userList.replaceChildren();
  dom.me.textContent = '';
  dom.meAvatar.replaceChildren();
  document.title = dom.baseTitle;
  setStatus('closed');
  hideNotice();
  closeDialogs();
  resetSearch();
}

export function initSession() {
  client.onOpen = handshake;
  client.onClose = closed;
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
    toast(errText({...e, retryAfter: e.retry_after_ms}));
  });
  dom.loginForm.addEventListener('submit', login);
  dom.logout.addEventListener('click', logout);
}
