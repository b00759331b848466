// Groups (PROTOCOL.md sections 3 and 5, im/group/*): creating one with its
// first members, browsing and joining open groups, the group dialog
// (members and who of them is online, invite, rename and remove for the
// owner, leave), and the im/group pushes that keep all of it current.
// A group's conversation is the open conversation's like any other.

import {LOBBY, GROUP_NAME_LIMIT, S, dom, client, remember, groupOf, ensureConv} from './state.js';
import * as R from './render.js';
import {t, errText} from './i18n.js';
import {openConv} from './conv.js';
import {renderConvList, renderHeader, scheduleConvList, closeDrawer, convTitle} from './sidebar.js';
import {showNotice, hideNotice, toast} from './screens.js';

const G = {
  shown: 0, // the group the group dialog shows
  members: [], // its members, as im/group/members gave them
  picked: new Set(), // user ids picked in the create dialog
};

const isMember = (id) => S.mine.has(id);
const isOwner = (g) => !!(g && S.me && g.owner === S.me.id);

// learnMembership records which of the listed groups the user is in:
// im/group/list says so of each (`member`).
export async function learnMembership(gen) {
  if (gen !== S.gen) return;
  const mine = new Set();
  for (const g of S.groups.values()) if (g.member) mine.add(g.id);
  S.mine = mine;
  for (const id of mine) ensureConv(`group:${id}`);
  for (const c of [...S.convs.keys()]) if (groupOf(c) && !mine.has(groupOf(c))) S.convs.delete(c);
}

function joinedLocally(g) {
  S.groups.set(g.id, g);
  S.mine.add(g.id);
  ensureConv(`group:${g.id}`);
  scheduleConvList();
}

// gone drops group id from this page: it left, was removed or dissolved.
function gone(id, why) {
  S.mine.delete(id);
  const conv = `group:${id}`;
  const g = S.groups.get(id);
  S.convs.delete(conv);
  S.stores.delete(conv);
  if (g && !g.private && g.members > 0) S.groups.set(id, g); else S.groups.delete(id);
  if (G.shown === id && dom.groupDialog.open) dom.groupDialog.close();
  if (S.conv === conv) {
    openConv(LOBBY);
    if (why) showNotice(why, t('dialog.close'), hideNotice);
  }
  scheduleConvList();
}

function onGroupPush(b) {
  const g = b && b.group;
  if (!g || typeof g.id !== 'number') return;
  const u = b.user && typeof b.user === 'object' ? b.user : null;
  if (u) remember(u);
  const aboutMe = !!(u && S.me && u.id === S.me.id);
  const name = g.name;
  switch (b.event) {
    case 'created':
      joinedLocally(g);
      if (u && !aboutMe) toast(t('group.addedYou', {name, by: u.nickname}));
      break;
    case 'joined':
    case 'invited':
      S.groups.set(g.id, g);
      if (aboutMe) {
        const was = isMember(g.id);
        joinedLocally(g);
        if (b.event === 'invited' && !was) toast(t('group.invitedYou', {name}));
      }
      break;
    case 'left':
    case 'removed':
      S.groups.set(g.id, g);
      if (aboutMe) gone(g.id, b.event === 'removed' ? t('group.removedYou', {name}) : '');
      else if (g.members <= 0) gone(g.id, '');
      break;
    case 'renamed':
      S.groups.set(g.id, g);
      break;
    default:
      S.groups.set(g.id, g);
  }
  if (G.shown === g.id && dom.groupDialog.open) refreshMembers();
  if (dom.groupBrowse.open) renderBrowse();
  renderHeader();
  scheduleConvList();
}

// ---- the user picker (create, invite) ----------------------------------------

// candidates are the users known to this page (online now, or seen)
// whose nickname contains q, the signed-in user and those in skip left out.
function candidates(q, skip) {
  const needle = q.trim().toLocaleLowerCase();
  const seen = new Map(S.people);
  for (const [id, u] of S.online) seen.set(id, {...seen.get(id), ...u});
  return [...seen.values()]
    .filter((u) => u && S.me && u.id !== S.me.id && !skip.has(u.id) &&
      String(u.nickname).toLocaleLowerCase().includes(needle))
    .sort((a, b) => (S.online.has(b.id) - S.online.has(a.id)) ||
      String(a.nickname).localeCompare(String(b.nickname), undefined, {sensitivity: 'base'}))
    .slice(0, 30);
}

function personRow(u, control) {
  const li = R.el('li', 'person');
  li.dataset.userId = String(u.id);
  const av = R.avatar(u);
  if (S.online.has(u.id)) { av.classList.add('online'); li.classList.add('online'); }
  li.append(av, R.textEl('span', 'nickname', u.nickname));
  if (control) li.append(control);
  return li;
}

function renderPick() {
  const list = candidates(dom.groupPick.value, new Set());
  dom.groupPickList.replaceChildren(...list.map((u) => {
    const box = R.el('input');
    box.type = 'checkbox';
    box.checked = G.picked.has(u.id);
    box.setAttribute('aria-label', u.nickname);
    const li = personRow(u, box);
    li.classList.add('pickable');
    return li;
  }));
  if (!list.length) dom.groupPickList.append(R.el('li', 'hint', t('group.nobody')));
}

function openCreate() {
  closeDrawer();
  G.picked.clear();
  dom.groupName.value = '';
  dom.groupPrivate.checked = false;
  dom.groupPick.value = '';
  dom.groupCreateError.textContent = '';
  renderPick();
  dom.groupCreate.showModal();
  dom.groupName.focus();
}

async function create(e) {
  e.preventDefault();
  const name = dom.groupName.value.trim();
  if (!name || R.countChars(name) > GROUP_NAME_LIMIT) {
    dom.groupCreateError.textContent = t('group.badName', {max: GROUP_NAME_LIMIT});
    return;
  }
  dom.groupCreateSave.disabled = true;
  try {
    const r = await client.request('im/group/create', {name, private: dom.groupPrivate.checked, members: [...G.picked]});
    joinedLocally(r.group);
    dom.groupCreate.close();
    openConv(`group:${r.group.id}`);
  } catch (err) {
    dom.groupCreateError.textContent = errText(err);
  } finally {
    dom.groupCreateSave.disabled = false;
  }
}

// ---- browsing and joining -------------------------------------------------------

function renderBrowse() {
  const list = [...S.groups.values()].sort((a, b) => (isMember(a.id) - isMember(b.id)) ||
    String(a.name).localeCompare(String(b.name), undefined, {sensitivity: 'base'}));
  dom.groupBrowseList.replaceChildren(...list.map((g) => {
    const li = R.el('li', 'browse-group');
    li.dataset.groupId = String(g.id);
    li.append(R.avatar({id: g.id, nickname: g.name}, 'group'));
    const main = R.el('span', 'row-main');
    main.append(R.textEl('span', 'row-name', g.name));
    main.append(R.el('span', 'row-sub', `${t(g.private ? 'group.private' : 'group.open')} · ${t('group.members.n', {n: g.members})}`));
    li.append(main);
    const b = R.el('button', 'btn small' + (isMember(g.id) ? '' : ' primary'), t(isMember(g.id) ? 'group.openIt' : 'group.join'));
    b.type = 'button';
    b.dataset.action = isMember(g.id) ? 'open' : 'join';
    li.append(b);
    return li;
  }));
  if (!list.length) dom.groupBrowseList.append(R.el('li', 'hint', t('groups.none')));
}

async function openBrowse() {
  closeDrawer();
  dom.groupBrowseError.textContent = '';
  renderBrowse();
  dom.groupBrowse.showModal();
}

async function browseClick(e) {
  const b = e.target.closest('button[data-action]');
  const li = b && b.closest('li[data-group-id]');
  if (!li) return;
  const id = Number(li.dataset.groupId);
  if (b.dataset.action === 'open') { dom.groupBrowse.close(); openConv(`group:${id}`); return; }
  b.disabled = true;
  try {
    const r = await client.request('im/group/join', {id});
    joinedLocally(r.group);
    dom.groupBrowse.close();
    openConv(`group:${id}`);
  } catch (err) {
    dom.groupBrowseError.textContent = errText(err);
    b.disabled = false;
  }
}

// ---- the group dialog ----------------------------------------------------------------

function renderGroupDialog() {
  const g = S.groups.get(G.shown);
  if (!g) return;
  const owner = isOwner(g);
  dom.groupDialogName.textContent = g.name;
  dom.groupKind.textContent = t(g.private ? 'group.privateHint' : 'group.openHint');
  dom.groupRenameRow.hidden = !owner;
  dom.groupMemberCount.textContent = String(G.members.length || g.members || '');
  const members = [...G.members].sort((a, b) => (b.id === g.owner) - (a.id === g.owner) ||
    (S.online.has(b.id) - S.online.has(a.id)) ||
    String(a.nickname).localeCompare(String(b.nickname), undefined, {sensitivity: 'base'}));
  dom.groupMembers.replaceChildren(...members.map((u) => {
    const li = personRow(u);
    li.append(R.el('span', 'presence', t(S.online.has(u.id) ? 'online' : 'offline')));
    if (u.id === g.owner) li.append(R.el('span', 'tag', t('group.owner')));
    if (owner && u.id !== g.owner) {
      const b = R.el('button', 'link-btn danger', t('group.remove'));
      b.type = 'button';
      b.dataset.action = 'remove';
      li.append(b);
    }
    return li;
  }));
  renderInvite();
}

function renderInvite() {
  const q = dom.groupInvite.value;
  if (!q.trim()) { dom.groupInviteList.replaceChildren(); return; }
  const list = candidates(q, new Set(G.members.map((u) => u.id)));
  dom.groupInviteList.replaceChildren(...list.map((u) => {
    const b = R.el('button', 'btn small', t('group.inviteOne'));
    b.type = 'button';
    b.dataset.action = 'invite';
    return personRow(u, b);
  }));
  if (!list.length) dom.groupInviteList.append(R.el('li', 'hint', t('group.nobody')));
}

async function refreshMembers() {
  const id = G.shown;
  try {
    const r = await client.request('im/group/members', {id});
    if (G.shown !== id) return;
    G.members = (Array.isArray(r.users) ? r.users : []).filter((u) => u && typeof u.id === 'number');
    for (const u of G.members) remember(u);
    const g = S.groups.get(id);
    if (g && g.members !== G.members.length) {
      S.groups.set(id, {...g, members: G.members.length});
      renderHeader();
    }
  } catch (err) {
    dom.groupError.textContent = errText(err);
  }
  renderGroupDialog();
}

export function openGroupDialog() {
  const id = groupOf(S.conv);
  if (!id || !S.groups.has(id)) return;
  G.shown = id;
  G.members = [];
  dom.groupError.textContent = '';
  dom.groupInvite.value = '';
  dom.groupRename.value = S.groups.get(id).name;
  renderGroupDialog();
  dom.groupDialog.showModal();
  refreshMembers();
}

// act runs a group request from the dialog and shows its error there.
async function act(path, body, then) {
  dom.groupError.textContent = '';
  try {
    const r = await client.request(path, body);
    if (then) then(r);
  } catch (err) {
    dom.groupError.textContent = errText(err);
  }
}

function dialogClick(e) {
  const b = e.target.closest('button[data-action]');
  const li = b && b.closest('li[data-user-id]');
  if (!li) return;
  const user = Number(li.dataset.userId);
  const id = G.shown;
  if (b.dataset.action === 'invite') {
    b.disabled = true;
    act('im/group/invite', {id, user}, () => { dom.groupInvite.value = ''; refreshMembers(); });
  } else if (b.dataset.action === 'remove') {
    b.disabled = true;
    act('im/group/remove', {id, user}, () => refreshMembers());
  }
}

function rename(e) {
  e.preventDefault();
  const name = dom.groupRename.value.trim();
  if (!name || R.countChars(name) > GROUP_NAME_LIMIT) {
    dom.groupError.textContent = t('group.badName', {max: GROUP_NAME_LIMIT});
    return;
  }
  act('im/group/rename', {id: G.shown, name}, (r) => {
    if (r.group) S.groups.set(r.group.id, r.group);
    renderGroupDialog();
    renderHeader();
    renderConvList();
  });
}

function leave() {
  const id = G.shown;
  act('im/group/leave', {id}, () => {
    const g = S.groups.get(id);
    if (g) S.groups.set(id, {...g, members: Math.max(0, g.members - 1)});
    gone(id, '');
    toast(t('group.youLeft', {name: convTitle(`group:${id}`).replace(/^# /, '')}));
  });
}

export function initGroups() {
  client.on('im/group', onGroupPush);
  client.on('im/presence', () => { if (dom.groupDialog.open) renderGroupDialog(); });
  dom.groupsNew.addEventListener('click', openCreate);
  dom.groupsBrowse.addEventListener('click', openBrowse);
  dom.groupCreateForm.addEventListener('submit', create);
  dom.groupCreateCancel.addEventListener('click', () => dom.groupCreate.close());
  dom.groupPick.addEventListener('input', renderPick);
  dom.groupPickList.addEventListener('change', (e) => {
    const li = e.target.closest('li[data-user-id]');
    if (!li) return;
    const id = Number(li.dataset.userId);
    if (e.target.checked) G.picked.add(id); else G.picked.delete(id);
  });
  dom.groupBrowseList.addEventListener('click', browseClick);
  dom.groupInfo.addEventListener('click', openGroupDialog);
  dom.groupDialogClose.addEventListener('click', () => dom.groupDialog.close());
  dom.groupDialog.addEventListener('close', () => { G.shown = 0; });
  dom.groupMembers.addEventListener('click', dialogClick);
  dom.groupInviteList.addEventListener('click', dialogClick);
  dom.groupInvite.addEventListener('input', renderInvite);
  dom.groupRenameForm.addEventListener('submit', rename);
  dom.groupLeave.addEventListener('click', leave);
}
