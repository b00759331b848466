// DOM builders for the chat. Every piece of text that comes from a user
// (messages, nicknames, briefs, file names, reasons) goes into the page
// through textContent or text nodes only, never as HTML. Links are built
// with createElement, and only for http: and https: URLs.

import {t, timeOf, fullTime as fullTimeOf, dayOf} from './i18n.js';

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// Text that may carry bidi overrides gets dir=auto; the CSS also gives these
// elements unicode-bidi: isolate, so nothing in them reorders what is around.
export function textEl(tag, cls, text) {
  const e = el(tag, cls, text);
  e.dir = 'auto';
  return e;
}

const PALETTE = 12;

// colorClass picks the avatar colour from the user id.
export function colorClass(id) {
  const n = Math.abs(Math.trunc(Number(id) || 0));
  return 'av-' + ((n * 7) % PALETTE);
}

const segmenter = typeof Intl !== 'undefined' && Intl.Segmenter ? new Intl.Segmenter(undefined, {granularity: 'grapheme'}) : null;

// initial is the first visible character of a nickname, upper-cased.
export function initial(name) {
  const s = String(name || '').replace(/[\p{C}\p{Z}]/gu, '');
  if (!s) return '?';
  let first;
  if (segmenter) {
    for (const seg of segmenter.segment(s)) { first = seg.segment; break; }
  } else {
    first = Array.from(s)[0];
  }
  return first.toLocaleUpperCase();
}

// fileURL returns the URL of a stored file when s names one on this server
// (/files/...), and '' for anything else.
export function fileURL(s) {
  if (typeof s !== 'string' || !s) return '';
  let u;
  try {
    u = new URL(s, location.origin);
  } catch {
    return '';
  }
  if (u.origin !== location.origin || !u.pathname.startsWith('/files/')) return '';
  return u.href;
}

// avatar is a coloured circle with the nickname's initial, or the user's
// uploaded picture.
export function avatar(user, extra = '') {
  const u = user || {};
  const span = el('span', `avatar ${colorClass(u.id)}${extra ? ' ' + extra : ''}`);
  span.setAttribute('aria-hidden', 'true');
  fillAvatar(span, u);
  return span;
}

export function fillAvatar(span, user) {
  const u = user || {};
  span.replaceChildren();
  for (const c of [...span.classList]) if (c.startsWith('av-')) span.classList.remove(c);
  span.classList.add(colorClass(u.id));
  const src = fileURL(u.avatar);
  if (src) {
    const img = el('img');
    img.alt = '';
    img.decoding = 'async';
    img.loading = 'lazy';
    img.addEventListener('error', () => { span.textContent = initial(u.nickname); }, {once: true});
    img.src = src;
    span.append(img);
  } else {
    span.textContent = initial(u.nickname);
  }
}

// URLs: a run of characters that cannot end a URL, starting with http:// or
// https://. Bidi controls end a URL so they cannot disguise one.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`\u0000-\u001f\u007f\u200e\u200f\u202a-\u202e\u2066-\u2069]+/giu;

function trimURL(s) {
  for (;;) {
    const last = s[s.length - 1];
    if (/[.,;:!?'"»\]}>*_~]/.test(last)) {
      s = s.slice(0, -1);
    } else if (last === ')' && (s.split('(').length < s.split(')').length)) {
      s = s.slice(0, -1);
    } else {
      return s;
    }
  }
}

// safeLink returns the URL object when s is an absolute http: or https: URL
// with a host, and null otherwise.
export function safeLink(s) {
  let u;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname) return null;
  return u;
}

// appendText appends text to parent as text nodes, with http(s) URLs as
// links that open in a new tab without access to this page.
export function appendText(parent, text) {
  const s = String(text ?? '');
  let at = 0;
  URL_RE.lastIndex = 0;
  for (let m = URL_RE.exec(s); m; m = URL_RE.exec(s)) {
    const cand = trimURL(m[0]);
    const u = safeLink(cand);
    if (!u || cand.length <= 'https://'.length) continue;
    if (m.index > at) parent.append(document.createTextNode(s.slice(at, m.index)));
    const a = document.createElement('a');
    a.href = u.href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.title = u.href;
    a.textContent = cand;
    parent.append(a);
    at = m.index + cand.length;
    URL_RE.lastIndex = at;
  }
  if (at < s.length) parent.append(document.createTextNode(s.slice(at)));
}

export const hhmm = (ts) => timeOf(ts);

export function dayKey(ts) {
  const d = new Date(ts);
  return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
}

export function dayLabel(ts) {
  const now = new Date();
  const key = dayKey(ts);
  if (key === dayKey(now.getTime())) return t('day.today');
  const y = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (key === dayKey(y.getTime())) return t('day.yesterday');
  return dayOf(ts, new Date(ts).getFullYear() !== now.getFullYear());
}

export const fullTime = (ts) => fullTimeOf(ts);

export function fileSize(n) {
  const v = Number(n) || 0;
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(v < 10240 ? 1 : 0)} KB`;
  return `${(v / 1024 / 1024).toFixed(1)} MB`;
}

// countChars counts characters as the server does (code points).
export function countChars(s) {
  let n = 0;
  for (const _ of String(s)) n++;
  return n;
}

export function daySep(ts) {
  const d = el('div', 'day');
  d.append(el('span', '', dayLabel(ts)));
  return d;
}

function fileBlock(kind, file) {
  const url = fileURL(file.url);
  const name = typeof file.name === 'string' && file.name ? file.name : t('file.name');
  const box = el('div', 'file');
  if (!url) {
    box.append(textEl('span', 'file-name', name));
    return box;
  }
  if (kind === 'image') {
    const a = el('a', 'file-image');
    a.href = url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    const img = el('img');
    img.alt = name;
    img.loading = 'lazy';
    img.decoding = 'async';
    const w = Number(file.width) || 0;
    const h = Number(file.height) || 0;
    if (w > 0 && h > 0) {
      const k = Math.min(1, 320 / w, 240 / h);
      img.width = Math.max(1, Math.round(w * k));
      img.height = Math.max(1, Math.round(h * k));
    }
    img.src = fileURL(file.thumb) || url;
    a.append(img);
    box.append(a);
    return box;
  }
  if (kind === 'audio' || kind === 'video') {
    const media = el(kind, 'file-media');
    media.controls = true;
    media.preload = 'none';
    media.src = url;
    box.append(media);
  }
  const a = el('a', 'file-card');
  a.href = url;
  a.download = name;
  a.rel = 'noopener noreferrer';
  // The file's type as a small text badge: no icon font, no SVG in messages.
  const ext = /\.([A-Za-z0-9]{1,4})$/.exec(name);
  a.append(el('span', 'file-icon', ext ? ext[1].toUpperCase() : 'FILE'));
  a.append(textEl('span', 'file-name', name));
  a.append(el('span', 'file-size', fileSize(file.size)));
  box.append(a);
  return box;
}

// message builds one .msg element. ctx: {own, cont, tick (see setTick),
// menu (a button for the message's actions)}.
// A pending message (not acknowledged yet) has no id; it carries its cid.
export function message(m, ctx = {}) {
  const from = m.from || {};
  const row = el('div', 'msg');
  if (ctx.own) row.classList.add('own');
  if (ctx.cont) row.classList.add('cont');
  if (m.deleted) row.classList.add('deleted');
  if (m.id) row.dataset.id = String(m.id);
  if (m.cid) row.dataset.cid = String(m.cid);
  row.dataset.from = String(from.id ?? '');

  row.append(avatar(from));
  const bubble = el('div', 'bubble');
  const meta = el('div', 'meta');
  meta.append(textEl('span', 'from', from.nickname ?? '?'));
  if (from.admin) meta.append(el('span', 'tag', 'admin'));
  bubble.append(meta);

  const text = textEl('div', 'text');
  if (m.deleted) {
    text.textContent = t('msg.deleted');
  } else {
    if (m.file && typeof m.file === 'object') bubble.append(fileBlock(m.kind, m.file));
    if (m.text) appendText(text, m.text);
  }
  bubble.append(text);

  const foot = el('div', 'foot');
  if (m.edited && !m.deleted) foot.append(el('span', 'edited', t('msg.edited')));
  const time = el('time', 'time', hhmm(m.ts));
  const d = new Date(m.ts);
  if (!Number.isNaN(d.getTime())) {
    time.dateTime = d.toISOString();
    time.title = fullTime(m.ts);
  }
  foot.append(time);
  const state = el('span', 'state');
  foot.append(state);
  bubble.append(foot);
  row.append(bubble);
  if (ctx.menu) {
    const b = el('button', 'menu-btn', '⋯');
    b.type = 'button';
    b.dataset.action = 'menu';
    b.setAttribute('aria-haspopup', 'menu');
    b.setAttribute('aria-expanded', 'false');
    b.setAttribute('aria-label', t('msg.actions'));
    b.title = t('msg.actions');
    row.append(b);
  }
  setTick(row, ctx.tick || '');
  return row;
}

// setTick shows the delivery state of an own message: '' (none), 'sent',
// 'seen', 'sending', 'failed'.
export function setTick(row, tick) {
  const state = row.querySelector('.state');
  if (!state) return;
  state.replaceChildren();
  state.dataset.tick = tick;
  if (tick === 'sent') state.textContent = '✓';
  else if (tick === 'seen') state.textContent = '✓✓';
  else if (tick === 'sending') state.textContent = t('tick.sending');
  if (tick === 'seen') state.title = t('tick.seen');
  else if (tick === 'sent') state.title = t('tick.sent');
  else state.removeAttribute('title');
}

// failed turns a pending message into a failed one with retry and discard.
export function setFailed(row, reason) {
  const state = row.querySelector('.state');
  if (!state) return;
  state.replaceChildren();
  state.dataset.tick = 'failed';
  state.append(textEl('span', 'fail-text', t('tick.failed', {why: reason})));
  const retry = el('button', 'link-btn', t('tick.retry'));
  retry.type = 'button';
  retry.dataset.action = 'retry';
  const discard = el('button', 'link-btn', t('tick.discard'));
  discard.type = 'button';
  discard.dataset.action = 'discard';
  state.append(retry, discard);
}
