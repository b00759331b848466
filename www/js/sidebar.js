// The sidebar and presence: the conversation list with unread counts and
// last messages, the online list, the header of the open conversation, the
// signed-in user's own entry, and the drawer that holds the sidebar on a
// phone.

import {LOBBY, S, dom, client, remember, isMine, userOf, groupOf, ensureConv} from './state.js';
import * as R from './render.js';
import {t} from './i18n.js';
import {openConv} from './conv.js';
import {openProfile} from './screens.js';

export function convTitle(conv) {
  if (conv === LOBBY) return t('lobby');
  const uid = userOf(conv);
  if (uid) {
    const u = S.people.get(uid);
    return u ? u.nickname : t('user.unknown', {id: uid});
  }
  const gid = groupOf(conv);
  if (gid) {
    const grp = S.groups.get(gid);
    return grp && grp.name ? `# ${grp.name}` : t('group.unknown', {id: gid});
  }
  return conv;
}

// previewText is one line for message m: its text, or what it carries.
export function previewText(m) {
  let body;
  if (m.deleted) body = t('msg.deleted');
  else if (m.text) body = m.text;
  else if (m.kind === 'image') body = t('msg.picture');
  else if (m.file && m.file.name) body = t('msg.file', {name: m.file.name});
  else body = m.kind || '';
  body = body.replace(/\s+/g, ' ');
  if (body.length > 140) body = body.slice(0, 140) + '…';
  return body;
}

function preview(c) {
  const m = c.last;
  if (!m) return c.conv === LOBBY ? t('lobby.sub') : '';
  const body = previewText(m);
  if (isMine(m)) return t('preview.mine', {text: body});
  if (c.conv === LOBBY || groupOf(c.conv)) return t('preview.from', {name: m.from ? m.from.nickname : '?', text: body});
  return body;
}

let convListTimer = 0;
export function scheduleConvList() {
  if (convListTimer) return;
  // A timer, not an animation frame: a hidden tab still updates its title.
  convListTimer = setTimeout(() => { convListTimer = 0; renderConvList(); }, 30);
}

export function renderConvList() {
  ensureConv(LOBBY);
  ensureConv(S.conv);
  for (const id of S.mine) if (S.groups.has(id)) ensureConv(`group:${id}`);
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
    } else if (uid) {
      const av = R.avatar(S.people.get(uid) || {id: uid, nickname: convTitle(c.conv)});
      if (S.online.has(uid)) av.classList.add('online');
      btn.append(av);
    } else {
      const g = S.groups.get(groupOf(c.conv));
      btn.append(R.avatar({id: groupOf(c.conv), nickname: g ? g.name : '#'}, 'group'));
    }
    const main = R.el('span', 'row-main');
    main.append(R.textEl('span', 'row-name', convTitle(c.conv)));
    main.append(R.textEl('span', 'row-sub', preview(c)));
    btn.append(main);
    const badge = R.el('span', 'unread', c.unread > 0 ? (c.unread > 99 ? '99+' : String(c.unread)) : '');
    badge.hidden = c.unread <= 0;
    badge.setAttribute('aria-label', t('unread', {n: c.unread}));
    btn.append(badge);
    if (c.conv === S.conv) btn.setAttribute('aria-current', 'true');
    li.append(btn);
    return li;
  });
  dom.convList.replaceChildren(...items);
  document.title = total > 0 ? `(${total}) ${dom.baseTitle}` : dom.baseTitle;
  dom.drawerDot.hidden = !(total > 0);
}

export function renderHeader() {
  dom.convTitle.textContent = convTitle(S.conv);
  const uid = userOf(S.conv);
  const gid = groupOf(S.conv);
  let sub = '';
  if (S.conv === LOBBY) {
    sub = t('online.n', {n: S.online.size});
  } else if (uid) {
    const u = S.online.get(uid) || S.people.get(uid);
    sub = S.online.has(uid) ? t('online') : t('offline');
    if (u && u.brief) sub += ` · ${u.brief}`;
  } else if (gid) {
    const g = S.groups.get(gid);
    if (g && g.members) sub = t('group.members.n', {n: g.members});
  }
  dom.convSub.textContent = sub;
  dom.groupInfo.hidden = !(gid && S.mine.has(gid));
}

export function renderUsers() {
  const list = [...S.online.values()];
  const me = S.me ? S.me.id : 0;
  list.sort((a, b) => (b.id === me) - (a.id === me) ||
    String(a.nickname).localeCompare(String(b.nickname), undefined, {sensitivity: 'base'}));
  dom.userList.replaceChildren(...list.map((u) => {
    const li = R.el('li', 'user' + (u.id === me ? ' self' : ''));
    li.dataset.userId = String(u.id);
    const btn = R.el('button', 'row-btn');
    btn.type = 'button';
    btn.title = u.id === me ? t('user.yourProfile') : t('user.openPrivate');
    const av = R.avatar(u);
    av.classList.add('online');
    btn.append(av);
    const main = R.el('span', 'row-main');
    const name = R.el('span', 'row-name');
    name.append(R.textEl('span', 'nickname', u.nickname));
    if (u.id === me) name.append(R.el('span', 'you', ' ' + t('user.you')));
    if (u.admin) name.append(R.el('span', 'tag', t('user.admin')));
    main.append(name);
    main.append(R.textEl('span', 'brief row-sub', u.brief || ''));
    btn.append(main);
    const places = Number(u.places) || 1;
    const p = R.el('span', 'places', String(places));
    p.title = t('places', {n: places});
    btn.append(p);
    li.append(btn);
    return li;
  }));
  dom.onlineCount.textContent = String(list.length);
  if (S.conv === LOBBY || userOf(S.conv)) renderHeader();
}

export function renderMe() {
  if (!S.me) return;
  dom.me.textContent = S.me.nickname;
  R.fillAvatar(dom.meAvatar, S.me);
}

// ---- the drawer (phones) -----------------------------------------------------

const narrowQuery = window.matchMedia('(max-width: 700px)');
export const narrow = () => narrowQuery.matches;

function openDrawer() {
  dom.chat.classList.add('drawer-open');
  dom.scrim.hidden = false;
  dom.drawerToggle.setAttribute('aria-expanded', 'true');
}

export function closeDrawer() {
  dom.chat.classList.remove('drawer-open');
  dom.scrim.hidden = true;
  dom.drawerToggle.setAttribute('aria-expanded', 'false');
}

export function initSidebar() {
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
}
