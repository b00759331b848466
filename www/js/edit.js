// Editing and deleting messages: the menu on one's own messages (and, for
// an admin, on anyone's: delete only), editing in place, and deleting
// after a confirmation in the menu. The replies are merged like pushes
// (im/edited and im/deleted reach this user's other pages), but they do
// not move the sync point: only im/sync and pushes after the catch-up do.

import {TEXT_LIMIT, S, dom, client, isMine, storeFor} from './state.js';
import * as R from './render.js';
import {t, errText} from './i18n.js';
import {ingest, applyDeleted} from './sync.js';
import {replaceEl} from './conv.js';
import {failed} from './session.js';
import {toast} from './screens.js';

// editing: the message being edited in the open conversation, and the
// draft, so a re-render keeps both.
let editing = null; // {id, conv, draft}
let menu = null; // the open menu: {el, id, button}

const messageOf = (id) => storeFor(S.conv).byId.get(id);

function closeMenu() {
  if (!menu) return;
  menu.el.remove();
  if (menu.button.isConnected) menu.button.setAttribute('aria-expanded', 'false');
  menu = null;
}

function menuItem(text, action, cls = '') {
  const b = R.el('button', cls, text);
  b.type = 'button';
  b.dataset.menu = action;
  b.setAttribute('role', 'menuitem');
  return b;
}

function openMenu(button, m) {
  closeMenu();
  const el = R.el('div', 'msg-menu');
  el.id = 'msg-menu';
  el.setAttribute('role', 'menu');
  el.dataset.id = String(m.id);
  if (isMine(m) && m.kind === 'text') el.append(menuItem(t('msg.edit'), 'edit'));
  el.append(menuItem(t('msg.delete'), 'delete', 'danger'));
  document.body.append(el);
  const r = button.getBoundingClientRect();
  const w = el.offsetWidth;
  const h = el.offsetHeight;
  el.style.left = `${Math.max(8, Math.min(innerWidth - w - 8, r.right - w))}px`;
  el.style.top = `${r.bottom + h + 8 > innerHeight ? Math.max(8, r.top - h - 4) : r.bottom + 4}px`;
  button.setAttribute('aria-expanded', 'true');
  menu = {el, id: m.id, button};
  el.querySelector('button').focus();
}

function confirmDelete() {
  const el = menu.el;
  el.replaceChildren(R.el('p', 'menu-q', t('msg.deleteQ')), menuItem(t('msg.delete'), 'confirm-delete', 'danger'),
    menuItem(t('dialog.cancel'), 'cancel'));
  el.querySelector('[data-menu="confirm-delete"]').focus();
}

async function remove(id) {
  const m = messageOf(id);
  if (!m) return;
  try {
    await client.request('im/delete', {id});
    applyDeleted({id, conv: m.conv}, 'ack');
  } catch (err) {
    failed(err, 'what.delete');
  }
}

function startEdit(id) {
  const m = messageOf(id);
  if (!m || m.deleted) return;
  editing = {id, conv: m.conv, draft: m.text || ''};
  replaceEl(m);
}

function stopEdit() {
  if (!editing) return;
  const m = storeFor(editing.conv).byId.get(editing.id);
  editing = null;
  if (m) replaceEl(m);
}

async function saveEdit(box) {
  if (!editing) return;
  const {id} = editing;
  const text = box.querySelector('textarea').value.trim();
  const m = messageOf(id);
  if (!m) { stopEdit(); return; }
  if (!text) { toast(t('msg.editEmpty')); return; }
  if (R.countChars(text) > TEXT_LIMIT) { toast(t('composer.tooLong', {max: TEXT_LIMIT})); return; }
  if (text === m.text) { stopEdit(); return; }
  for (const b of box.querySelectorAll('button')) b.disabled = true;
  try {
    const r = await client.request('im/edit', {id, text});
    editing = null;
    if (r && r.message) ingest(r.message, {source: 'ack'});
    const now = messageOf(id);
    if (now) replaceEl(now);
  } catch (err) {
    for (const b of box.querySelectorAll('button')) b.disabled = false;
    toast(t('failed', {what: t('what.edit'), why: errText(err)}));
  }
}

// decorate puts the edit box into the element of message m when m is
// being edited (conv.js calls it for every message element it builds).
export function decorate(row, m) {
  if (!editing || editing.id !== m.id || m.deleted) return;
  const text = row.querySelector('.text');
  const box = R.el('div', 'edit-box');
  const area = R.el('textarea');
  area.value = editing.draft;
  area.rows = Math.min(8, Math.max(2, editing.draft.split('\n').length));
  area.setAttribute('aria-label', t('msg.edit'));
  area.addEventListener('input', () => { if (editing) editing.draft = area.value; });
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); saveEdit(box); }
    if (e.key === 'Escape') { e.preventDefault(); stopEdit(); }
  });
  const actions = R.el('div', 'edit-actions');
  const cancel = R.el('button', 'btn small', t('dialog.cancel'));
  cancel.type = 'button';
  cancel.dataset.edit = 'cancel';
  const save = R.el('button', 'btn small primary', t('dialog.save'));
  save.type = 'button';
  save.dataset.edit = 'save';
  actions.append(cancel, save);
  box.append(area, actions);
  text.replaceWith(box);
  row.classList.add('editing');
  requestAnimationFrame(() => { if (area.isConnected && document.activeElement !== area) area.focus(); });
}

export function initEdit() {
  dom.messages.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action="menu"]');
    if (b) {
      const row = b.closest('.msg[data-id]');
      const m = row && messageOf(Number(row.dataset.id));
      if (!m) return;
      if (menu && menu.id === m.id) closeMenu(); else openMenu(b, m);
      return;
    }
    const eb = e.target.closest('button[data-edit]');
    if (eb) {
      if (eb.dataset.edit === 'save') saveEdit(eb.closest('.edit-box'));
      else stopEdit();
    }
  });
  document.addEventListener('click', (e) => {
    if (!menu) return;
    const item = e.target.closest('#msg-menu button[data-menu]');
    if (!item) {
      if (!e.target.closest('#msg-menu') && !e.target.closest('button[data-action="menu"]')) closeMenu();
      return;
    }
    const id = menu.id;
    const what = item.dataset.menu;
    if (what === 'delete') { confirmDelete(); return; }
    closeMenu();
    if (what === 'edit') startEdit(id);
    else if (what === 'confirm-delete') remove(id);
  });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeMenu(); });
  dom.messages.addEventListener('scroll', closeMenu, {passive: true});
  // A message deleted or changed elsewhere while its menu is open or while
  // it is being edited: the menu closes; the edit box stays for an edit
  // (the draft is the user's) but goes for a deletion.
  client.on('im/deleted', (b) => {
    if (menu && b && menu.id === b.id) closeMenu();
    if (editing && b && editing.id === b.id) editing = null;
  });
}

// resetEdit forgets the menu and the edit: another conversation opened.
export function resetEdit() {
  closeMenu();
  editing = null;
}
