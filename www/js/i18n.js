// The page's words. Every string the UI shows comes from a language file
// under i18n/ (i18n/en.js is the reference: every key is there); t looks
// one up. The language is the one the user picked on this browser
// (localStorage), else the first of the browser's languages we have, else
// English. Dates and times are formatted by Intl in the user's locale.

import en from './i18n/en.js';

// LANGUAGES lists the language files, by code, with each language's own
// name for the switch. A new language is its file plus one line here.
export const LANGUAGES = {en: 'English', zh: '简体中文'};

const KEY = 'dce.lang';
let code = 'en';
let dict = en;
let locale = 'en';
let plural = new Intl.PluralRules('en');

export const lang = () => code;

function stored() {
  try { return localStorage.getItem(KEY) || ''; } catch { return ''; }
}

// pick chooses the language: the stored choice, else the browser's.
export function pick() {
  const s = stored();
  if (Object.hasOwn(LANGUAGES, s)) return s;
  for (const tag of navigator.languages || [navigator.language || '']) {
    const primary = String(tag).toLowerCase().split('-')[0];
    if (Object.hasOwn(LANGUAGES, primary)) return primary;
  }
  return 'en';
}

// localeFor is the locale dates and numbers use: the browser's own when it
// is of the language shown (en-GB for English), else the language's.
function localeFor(c, fallback) {
  for (const tag of navigator.languages || [navigator.language || '']) {
    if (String(tag).toLowerCase().split('-')[0] === c) return tag;
  }
  return fallback || c;
}

// use loads language c (a code of LANGUAGES) and makes it current; save
// remembers the choice on this browser.
export async function use(c, save = false) {
  if (!Object.hasOwn(LANGUAGES, c)) c = 'en';
  const d = c === 'en' ? en : (await import(`./i18n/${c}.js`)).default;
  code = c;
  dict = d;
  locale = localeFor(c, d['_locale']);
  try { plural = new Intl.PluralRules(locale); } catch { plural = new Intl.PluralRules('en'); }
  document.documentElement.lang = d['_locale'] || c;
  if (save) {
    try { localStorage.setItem(KEY, c); } catch { /* storage disabled: for this page only */ }
  }
}

// t is the text of key in the current language (English when the language
// file lacks it), with {name} replaced by vars.name. With a number vars.n,
// key.one / key.other (Intl.PluralRules' categories) are tried first.
export function t(key, vars) {
  let s;
  if (vars && typeof vars.n === 'number') {
    const k = `${key}.${plural.select(vars.n)}`;
    s = dict[k] ?? dict[`${key}.other`] ?? en[`${key}.${new Intl.PluralRules('en').select(vars.n)}`] ?? en[`${key}.other`];
  }
  s = s ?? dict[key] ?? en[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (all, k) => (Object.hasOwn(vars, k) ? String(vars[k]) : all));
}

export const has = (key) => Object.hasOwn(dict, key) || Object.hasOwn(en, key);

// errText is what the page says about a failed request: the translation of
// its code (PROTOCOL.md section 4, or the client's own timeout, closed and
// offline), never the server's English message, unless the code is one
// this page does not know.
export function errText(err) {
  const c = err && typeof err.code === 'string' ? err.code : 'internal';
  if (c === 'rate_limited') {
    const ms = Number(err.retryAfter ?? err.retry_after_ms) || 1000;
    return t('error.rate_limited', {s: Math.max(1, Math.ceil(ms / 1000))});
  }
  if (has(`error.${c}`)) return t(`error.${c}`);
  return (err && err.message) || c;
}

// apply translates the static page: data-i18n sets an element's text;
// data-i18n-placeholder, -title and -label its placeholder, title and
// aria-label.
export function apply(root = document) {
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
  for (const e of root.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle);
  for (const e of root.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
}

// ---- dates and times -----------------------------------------------------

const fmts = new Map();
function fmt(opts) {
  const k = locale + JSON.stringify(opts);
  let f = fmts.get(k);
  if (!f) {
    try { f = new Intl.DateTimeFormat(locale, opts); } catch { f = new Intl.DateTimeFormat('en', opts); }
    fmts.set(k, f);
  }
  return f;
}

export const timeOf = (ts) => fmt({hour: 'numeric', minute: '2-digit'}).format(new Date(ts));
export const fullTime = (ts) => fmt({dateStyle: 'full', timeStyle: 'short'}).format(new Date(ts));

export function dayOf(ts, withYear) {
  const opts = {weekday: 'short', day: 'numeric', month: 'short'};
  if (withYear) opts.year = 'numeric';
  return fmt(opts).format(new Date(ts));
}

// dateTime is a short date and time, for search results.
export function dateTime(ts) {
  const d = new Date(ts);
  const opts = {month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit'};
  if (d.getFullYear() !== new Date().getFullYear()) opts.year = 'numeric';
  return fmt(opts).format(d);
}
