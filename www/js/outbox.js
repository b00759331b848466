// The outbox and the composer: messages written but not yet acknowledged
// are kept (in this tab's sessionStorage too) and sent one at a time, in
// order, each with its cid, so a retry after a lost reply stores nothing
// twice; the composer with Enter to send and the character count; files.

import {TEXT_LIMIT, TYPING_EVERY, MAX_UPLOAD, S, dom, client, newCid, saveOutbox, validConv, ensureConv, storeFor,
  sleep} from './state.js';
import * as R from './render.js';
import {t, errText} from './i18n.js';
import {ProtoError} from './client.js';
import {ingest, loadOlder, loadNewer, loadNewest} from './sync.js';
import {scrollBottom} from './conv.js';
import {narrow} from './sidebar.js';
import {recheck, failed} from './session.js';
import {toast} from './screens.js';

export function pendingEl(item) {
  const m = {cid: item.cid, from: S.me || {}, text: item.text, ts: item.ts, kind: item.kind, file: item.file};
  if (item.state === 'uploading') m.text = t('file.uploading', {name: item.name || 'file'});
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
  // A conversation opened around a search result goes back to its newest
  // messages, where this one will be.
  if (storeFor(to).newer) loadNewest(to, S.gen);
  else showPending(item);
  ensureConv(to);
  pumpOutbox();
  return item;
}

// settle removes the outbox entry of cid: its message has arrived.
export function settle(cid) {
  const i = S.outbox.findIndex((x) => x.cid === cid);
  if (i < 0) return;
  S.outbox.splice(i, 1);
  saveOutbox();
  const e = pendingNode(cid);
  if (e) e.remove();
}

let pumping = false;

// pumpOutbox sends the queued messages one at a time, in order. A message
// whose reply did not come (timeout, connection lost) stays queued and goes
// again with the same cid: the server stores it once.
export async function pumpOutbox() {
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
        item.error = errText(err);
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
    toast(t('composer.tooLong', {max: TEXT_LIMIT}));
    return;
  }
  enqueue(S.conv, {text});
  dom.text.value = '';
  updateCount();
  S.typingSent = 0;
}

function updateCount() {
  const n = R.countChars(dom.text.value);
  const show = n > TEXT_LIMIT - 500;
  dom.count.hidden = !show;
  if (show) dom.count.textContent = `${n}/${TEXT_LIMIT}`;
  dom.count.classList.toggle('over', n > TEXT_LIMIT);
}

export async function upload(file) {
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

async function sendFile() {
  const file = dom.fileInput.files && dom.fileInput.files[0];
  dom.fileInput.value = '';
  if (!file) return;
  if (file.size > MAX_UPLOAD) { toast(t('file.tooBig')); return; }
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
    failed(err, 'what.sendFile');
  }
}

export function initOutbox() {
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
    if (now - S.typingSent >= TYPING_EVERY && S.ready) {
      if (client.send('im/typing', {to: S.conv})) S.typingSent = now;
    }
  });

  dom.messages.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    if (b.dataset.action === 'older') { loadOlder(); return; }
    if (b.dataset.action === 'newer') { loadNewer(); return; }
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

  // Uploads (POST /upload) are not served yet, so the page has no attach
  // button and this stays dormant until ui.html offers one again.
  if (dom.attach && dom.fileInput) dom.attach.addEventListener('click', () => dom.fileInput.click());
  if (dom.fileInput) dom.fileInput.addEventListener('change', sendFile);
}
