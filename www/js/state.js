// The page's state: the constants, the elements the code drives, what is
// known about the signed-in user's conversations, and what each tab keeps
// in its own sessionStorage (the sync point, the outbox, the open
// conversation). Every other module reads and changes S; none keeps state
// of the chat's own.

import {Client} from './client.js';

export const LOBBY = 'room:lobby';
export const TEXT_LIMIT = 4000;
export const BRIEF_LIMIT = 128;
export const GROUP_NAME_LIMIT = 64;
export const PAGE = 50;
export const TYPING_EVERY = 2000;
export const TYPING_SHOWN = 3000;
export const SYNC_ROUNDS = 20; // 20 x 500 messages; further behind, start over
export const MAX_UPLOAD = 10 * 1024 * 1024;
export const KEEP = 1000; // messages kept per conversation once it passes KEEP_MAX
export const KEEP_MAX = 1500;

export const $ = (id) => document.getElementById(id);

// dom holds the page's elements by role, filled by bindDom once the page
// has parsed. The ids are the DOM contract the browser tests drive.
export const dom = {};

const IDS = {
  boot: 'boot', bootText: 'boot-text',
  login: 'login', loginForm: 'login-form', nickname: 'nickname', password: 'password',
  loginSubmit: 'login-submit', loginError: 'login-error',
  chat: 'chat', side: 'side', scrim: 'scrim', drawerToggle: 'drawer-toggle', drawerDot: 'drawer-dot',
  me: 'me', meAvatar: 'me-avatar', logout: 'logout', status: 'status', profileOpen: 'profile-open',
  convList: 'conv-list', userList: 'user-list', onlineCount: 'online-count',
  convTitle: 'conv-title', convSub: 'conv-sub', messages: 'messages', jump: 'jump',
  typing: 'typing', composer: 'composer', text: 'text', send: 'send', count: 'count',
  attach: 'attach', fileInput: 'file-input',
  notice: 'notice', noticeText: 'notice-text', noticeAction: 'notice-action',
  profile: 'profile-dialog', profileForm: 'profile-form', profileAvatar: 'profile-avatar',
  profileName: 'profile-name', profileBrief: 'profile-brief', profileError: 'profile-error',
  profileAvatarBtn: 'profile-avatar-btn', profileAvatarInput: 'profile-avatar-input',
  profileCancel: 'profile-cancel', profileSave: 'profile-save',
  toast: 'toast', lang: 'lang', loginLang: 'login-lang',
  groupsNew: 'groups-new', groupsBrowse: 'groups-browse', groupInfo: 'group-info',
  groupCreate: 'group-create', groupCreateForm: 'group-create-form', groupName: 'group-name', groupPrivate: 'group-private',
  groupPick: 'group-pick', groupPickList: 'group-pick-list', groupCreateError: 'group-create-error',
  groupCreateCancel: 'group-create-cancel', groupCreateSave: 'group-create-save',
  groupBrowse: 'group-browse', groupBrowseList: 'group-browse-list', groupBrowseError: 'group-browse-error',
  groupDialog: 'group-dialog', groupDialogName: 'group-dialog-name', groupKind: 'group-kind',
  groupRenameRow: 'group-rename-row', groupRenameForm: 'group-rename-form', groupRename: 'group-rename',
  groupMemberCount: 'group-member-count', groupMembers: 'group-members', groupInvite: 'group-invite',
  groupInviteList: 'group-invite-list', groupError: 'group-error', groupLeave: 'group-leave',
  groupDialogClose: 'group-dialog-close',
  searchForm: 'search-form', search: 'search', searchPanel: 'search-panel', searchTitle: 'search-title',
  searchClose: 'search-close', searchHere: 'search-here', sideScroll: 'side-scroll', searchResults: 'search-results', searchMore: 'search-more', searchEmpty: 'search-empty',
};

export function bindDom(more = {}) {
  for (const [k, id] of Object.entries({...IDS, ...more})) dom[k] = $(id);
  dom.baseTitle = document.title;
}

export const S = {
  me: null,
  ready: false, // signed in, and the catch-up after the last (re)connect is done
  gen: 0, // bumps on every connection and reset: stale async work checks it
  conv: LOBBY,
  online: new Map(), // user id -> Online
  people: new Map(), // user id -> User, everyone seen
  groups: new Map(), // group id -> Group: mine, and the open ones
  mine: new Set(), // ids of the groups the signed-in user is in
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
  typingSent: 0, // when this page last sent im/typing
  resolving: new Set(), // convs whose other party's name is being looked up
  stuck: true, // the reader is at the bottom of the open conversation
};

// client is the page's one connection; session.js sets its onOpen and
// onClose.
const wsURL = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
export const client = new Client(wsURL);

const cidPrefix = (() => {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return 'w' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
})();
let cidCounter = 0;
export const newCid = () => `${cidPrefix}-${++cidCounter}`;

// ---- storage (per tab) -----------------------------------------------

export const store = {
  get(k) { try { return sessionStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { sessionStorage.setItem(k, v); } catch { /* full or disabled */ } },
  del(k) { try { sessionStorage.removeItem(k); } catch { /* disabled */ } },
};
export const seqKey = () => `dce.seq.${S.me ? S.me.id : 0}`;
export const outboxKey = () => `dce.outbox.${S.me ? S.me.id : 0}`;
export const convKey = () => `dce.conv.${S.me ? S.me.id : 0}`;

// forget drops what this tab keeps for user uid.
export function forget(uid) {
  for (const k of ['seq', 'outbox', 'conv']) store.del(`dce.${k}.${uid}`);
}

export function trackSeq(seq) {
  if (typeof seq === 'number' && Number.isFinite(seq) && seq > S.lastSeq) {
    S.lastSeq = seq;
    if (S.me) store.set(seqKey(), String(seq));
  }
}

export function saveOutbox() {
  if (!S.me) return;
  const keep = S.outbox.filter((i) => i.state !== 'uploading').map((i) => ({
    cid: i.cid, to: i.to, text: i.text, kind: i.kind, file: i.file, ts: i.ts,
  }));
  if (keep.length) store.set(outboxKey(), JSON.stringify(keep));
  else store.del(outboxKey());
}

export function loadOutbox() {
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

// ---- what the state is made of ----------------------------------------

export function remember(u) {
  if (!u || typeof u.id !== 'number') return;
  const had = S.people.get(u.id);
  S.people.set(u.id, had ? {...had, ...u} : {...u});
}

export const isMine = (m) => !!(S.me && m && m.from && m.from.id === S.me.id);

export function validConv(c) {
  return typeof c === 'string' && (c === LOBBY || /^(user|group):[1-9][0-9]{0,18}$/.test(c));
}

export function userOf(conv) {
  const m = /^user:([1-9][0-9]*)$/.exec(conv || '');
  return m ? Number(m[1]) : 0;
}

export function groupOf(conv) {
  const m = /^group:([1-9][0-9]*)$/.exec(conv || '');
  return m ? Number(m[1]) : 0;
}

export function ensureConv(conv) {
  let c = S.convs.get(conv);
  if (!c) {
    c = {conv, last: null, unread: 0};
    S.convs.set(conv, c);
  }
  return c;
}

export function storeFor(conv) {
  let st = S.stores.get(conv);
  if (!st) {
    st = {byId: new Map(), ids: [], more: false, loaded: false, loading: false, error: ''};
    S.stores.set(conv, st);
  }
  return st;
}

export function sortedInsert(ids, id) {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid] < id) lo = mid + 1; else hi = mid;
  }
  ids.splice(lo, 0, id);
  return lo;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
