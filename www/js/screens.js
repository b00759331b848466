// Screens, notices and dialogs: which of boot, login and chat is shown,
// the connection status, the notice bar (kicked, banned, removed), toasts,
// and the profile dialog.

import {BRIEF_LIMIT, S, dom, client, remember} from './state.js';
import * as R from './render.js';
import {t, errText, LANGUAGES, lang, use, apply} from './i18n.js';
import {renderConv, renderTyping} from './conv.js';
import {renderConvList, renderHeader, renderMe, renderUsers, closeDrawer} from './sidebar.js';
import {upload} from './outbox.js';

export function showLogin() {
  dom.boot.hidden = true;
  dom.chat.hidden = true;
  dom.login.hidden = false;
  dom.loginSubmit.disabled = false;
  if (!dom.nickname.value) dom.nickname.focus();
  else dom.password.focus();
}

export function showChat() {
  const was = dom.chat.hidden;
  dom.boot.hidden = true;
  dom.login.hidden = true;
  dom.chat.hidden = false;
  if (was) {
    renderConvList();
    renderHeader();
    renderConv(true);
  }
}

let statusNow = 'closed';

// setStatus shows the connection's state: open, offline (closed for good),
// connecting (the catch-up) or closed (reconnecting). data-state is open
// or closed, whatever the language.
export function setStatus(state) {
  statusNow = state;
  const s = dom.status;
  s.dataset.state = state === 'open' ? 'open' : 'closed';
  s.dataset.detail = state;
  s.textContent = t(`status.${state}`);
  s.classList.toggle('busy', state === 'closed' || state === 'connecting');
}

let noticeFn = null;
export function showNotice(text, action, fn) {
  dom.noticeText.textContent = text;
  dom.noticeAction.textContent = action || '';
  dom.noticeAction.hidden = !fn;
  noticeFn = fn;
  dom.notice.hidden = false;
  if (S.me) showChat();
  else if (dom.login.hidden) { dom.boot.hidden = false; dom.bootText.textContent = text; }
}

export function hideNotice() { dom.notice.hidden = true; noticeFn = null; }

let toastTimer = 0;
export function toast(text) {
  dom.toast.textContent = text;
  dom.toast.hidden = false;
  dom.toast.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { dom.toast.classList.remove('show'); dom.toast.hidden = true; }, 5000);
}

// closeDialogs closes every open dialog (a logout, a reset).
export function closeDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

// ---- profile -----------------------------------------------------------------

export function openProfile() {
  if (!S.me) return;
  closeDrawer();
  dom.profileError.textContent = '';
  dom.profileBrief.value = S.me.brief || '';
  dom.profileName.textContent = S.me.nickname;
  R.fillAvatar(dom.profileAvatar, S.me);
  dom.profile.showModal();
  dom.profileBrief.focus();
}

function updateMe(u) {
  S.me = {...S.me, ...u};
  remember(S.me);
  renderMe();
  renderUsers();
}

async function saveProfile(e) {
  e.preventDefault();
  const brief = dom.profileBrief.value.trim();
  if (R.countChars(brief) > BRIEF_LIMIT) {
    dom.profileError.textContent = t('profile.tooLong', {max: BRIEF_LIMIT});
    return;
  }
  dom.profileSave.disabled = true;
  try {
    const r = await client.request('im/profile', {brief});
    if (r.user) updateMe(r.user);
    dom.profile.close();
  } catch (err) {
    dom.profileError.textContent = errText(err);
  } finally {
    dom.profileSave.disabled = false;
  }
}

async function saveAvatar() {
  const file = dom.profileAvatarInput.files && dom.profileAvatarInput.files[0];
  dom.profileAvatarInput.value = '';
  if (!file) return;
  dom.profileError.textContent = '';
  dom.profileAvatarBtn.disabled = true;
  try {
    const f = await upload(file);
    const r = await client.request('im/profile', {avatar: f.url});
    if (r.user) {
      updateMe(r.user);
      R.fillAvatar(dom.profileAvatar, S.me);
    }
  } catch (err) {
    dom.profileError.textContent = errText(err);
  } finally {
    dom.profileAvatarBtn.disabled = false;
  }
}

// ---- the language switch -------------------------------------------------------

function fillLanguages(select) {
  select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => {
    const o = R.el('option', '', name);
    o.value = code;
    o.lang = code;
    o.selected = code === lang();
    return o;
  }));
}

// switchLanguage makes code the language of the page, remembered on this
// browser, and shows everything again in it.
async function switchLanguage(code) {
  try {
    await use(code, true);
  } catch (err) {
    console.error('dce: the language could not load:', err);
    return;
  }
  apply();
  for (const s of [dom.lang, dom.loginLang]) if (s) s.value = lang();
  if (!dom.loginSubmit.disabled) dom.loginSubmit.textContent = t('login.submit');
  setStatus(statusNow);
  renderConvList();
  renderHeader();
  renderUsers();
  renderTyping();
  if (!dom.chat.hidden) renderConv(false);
}

export function initScreens() {
  for (const s of [dom.lang, dom.loginLang]) {
    if (!s) continue;
    fillLanguages(s);
    s.addEventListener('change', () => switchLanguage(s.value));
  }
  dom.noticeAction.addEventListener('click', () => { if (noticeFn) noticeFn(); });
  dom.profileOpen.addEventListener('click', openProfile);
  dom.profileCancel.addEventListener('click', () => dom.profile.close());
  dom.profileForm.addEventListener('submit', saveProfile);
  // Like the attach button: dormant until ui.html offers a picture upload.
  if (dom.profileAvatarBtn && dom.profileAvatarInput) {
    dom.profileAvatarBtn.addEventListener('click', () => dom.profileAvatarInput.click());
    dom.profileAvatarInput.addEventListener('change', saveAvatar);
  }
}
