// Search: the search box calls im/search {"q","with"?,"before"?}; the
// results show the conversation, the sender, the time and the text with
// the match marked (built as text nodes and <mark> elements, never HTML);
// "more" pages with before (next_before when the server gives it); a result opens its conversation around the
// message (im/load {"with","around"}), scrolled to it and highlighted.

import {S, dom, client, validConv} from './state.js';
import * as R from './render.js';
import {t, errText, dateTime} from './i18n.js';
import {openConv} from './conv.js';
import {convTitle, previewText} from './sidebar.js';

const LIMIT = 20;
const SNIPPET = 160; // characters of a long text shown around its first match

const Q = {
  q: '',
  with: '', // '' for everything this user may read
  results: [],
  more: false,
  next: 0, // the server's next_before: where the next page starts
  busy: false,
  gen: 0,
};

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// marked returns a fragment of text with every occurrence of q (case
// folded, as the server matches Latin scripts) in a <mark>, cut to a
// snippet around the first one when the text is long.
export function marked(text, q) {
  const frag = document.createDocumentFragment();
  let s = String(text ?? '').replace(/\s+/g, ' ');
  let re;
  try { re = new RegExp(escapeRe(q), 'giu'); } catch { re = null; }
  const first = re ? s.search(re) : -1;
  if (s.length > SNIPPET && first > SNIPPET / 3) {
    s = '…' + s.slice(first - Math.floor(SNIPPET / 3));
  }
  if (s.length > SNIPPET + 40) s = s.slice(0, SNIPPET + 40) + '…';
  if (!re || !q) { frag.append(document.createTextNode(s)); return frag; }
  let at = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    if (!m[0]) { re.lastIndex++; continue; }
    if (m.index > at) frag.append(document.createTextNode(s.slice(at, m.index)));
    frag.append(R.el('mark', '', m[0]));
    at = m.index + m[0].length;
  }
  if (at < s.length) frag.append(document.createTextNode(s.slice(at)));
  return frag;
}

function resultEl(m) {
  const li = R.el('li', 'result');
  const b = R.el('button', 'result-btn');
  b.type = 'button';
  b.dataset.conv = m.conv;
  b.dataset.id = String(m.id);
  const head = R.el('span', 'result-head');
  head.append(R.textEl('span', 'result-conv', convTitle(m.conv)));
  head.append(R.textEl('span', 'result-from', m.from ? m.from.nickname : '?'));
  const time = R.el('time', 'result-time', dateTime(m.ts));
  time.dateTime = new Date(m.ts).toISOString();
  head.append(time);
  const text = R.textEl('span', 'result-text');
  if (m.text) text.append(marked(m.text, Q.q));
  else text.textContent = previewText(m);
  b.append(head, text);
  li.append(b);
  return li;
}

function render() {
  dom.searchTitle.textContent = Q.with ? t('search.titleIn', {q: Q.q, conv: convTitle(Q.with)}) : t('search.title', {q: Q.q});
  dom.searchResults.replaceChildren(...Q.results.map(resultEl));
  dom.searchMore.hidden = !Q.more;
  dom.searchMore.disabled = Q.busy;
  let foot = '';
  if (Q.busy) foot = t('search.searching');
  else if (!Q.results.length) foot = t('search.none');
  else if (!Q.more) foot = t('search.end');
  dom.searchEmpty.textContent = foot;
  dom.searchEmpty.hidden = !foot;
}

async function page(first) {
  if (Q.busy) return;
  Q.busy = true;
  const gen = ++Q.gen;
  const body = {q: Q.q, limit: LIMIT};
  if (Q.with) body.with = Q.with;
  if (!first && Q.next > 0) body.before = Q.next;
  else if (!first && Q.results.length) body.before = Q.results[Q.results.length - 1].id;
  render();
  try {
    const r = await client.request('im/search', body);
    if (gen !== Q.gen) return;
    const seen = new Set(Q.results.map((m) => m.id));
    for (const m of Array.isArray(r.messages) ? r.messages : []) {
      if (m && typeof m.id === 'number' && validConv(m.conv) && !seen.has(m.id)) Q.results.push(m);
    }
    // A search that stopped at its bound on the rows it examines says
    // more with next_before, with fewer results than asked (none, even).
    Q.next = typeof r.next_before === 'number' ? r.next_before : 0;
    Q.more = !!r.more && (Q.next > 0 || (Array.isArray(r.messages) && r.messages.length > 0));
  } catch (err) {
    if (gen !== Q.gen) return;
    Q.more = false;
    Q.busy = false;
    render();
    dom.searchEmpty.textContent = errText(err);
    dom.searchEmpty.hidden = false;
    return;
  } finally {
    if (gen === Q.gen) Q.busy = false;
  }
  render();
}

// search shows the results for q, in conversation within (or everywhere).
export function search(q, within = '') {
  Q.q = q;
  Q.with = within;
  Q.results = [];
  Q.more = false;
  Q.next = 0;
  Q.busy = false;
  Q.gen++;
  dom.searchHere.checked = !!within;
  dom.searchPanel.hidden = false;
  dom.sideScroll.hidden = true;
  page(true);
}

function closeSearch() {
  Q.gen++;
  dom.searchPanel.hidden = true;
  dom.sideScroll.hidden = false;
}

export function initSearch() {
  dom.searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = dom.search.value.trim();
    if (!q || !S.me) return;
    search(q, dom.searchHere.checked && !dom.searchPanel.hidden ? S.conv : '');
  });
  dom.searchHere.addEventListener('change', () => {
    if (Q.q) search(Q.q, dom.searchHere.checked ? S.conv : '');
  });
  dom.searchMore.addEventListener('click', () => page(false));
  dom.searchClose.addEventListener('click', closeSearch);
  dom.search.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeSearch(); });
  dom.searchResults.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-conv][data-id]');
    if (!b) return;
    openConv(b.dataset.conv, Number(b.dataset.id));
  });
}

// resetSearch closes the results: the user changed.
export function resetSearch() {
  Q.results = [];
  dom.search.value = '';
  closeSearch();
}
