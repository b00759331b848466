// The chat page, put together: it picks the language, finds the page's
// elements, lets each part register its handlers, and connects. The parts,
// by what they do:
//
//   state.js    the state, the constants, per-tab storage
//   i18n.js     the words (i18n/*.js), dates and times
//   session.js  handshake, login, logout, kick
//   sync.js     history, im/sync, merging every message
//   conv.js     the open conversation: scrolling, ticks, typing, read marks
//   sidebar.js  the conversation and online lists, presence, the drawer
//   outbox.js   the outbox and the composer
//   screens.js  screens, notices, toasts, the profile dialog, the language switch
//   edit.js     the message menu: edit in place, delete
//   search.js   search, and opening a result at its message
//   groups.js   groups: create, browse and join, members, invite, rename, remove, leave
//
// The wire protocol is PROTOCOL.md; the element ids are the DOM contract
// the browser tests drive.

import {S, dom, client, bindDom} from './state.js';
import * as i18n from './i18n.js';
import {initSession} from './session.js';
import {initSync} from './sync.js';
import {initConv} from './conv.js';
import {initSidebar} from './sidebar.js';
import {initOutbox} from './outbox.js';
import {initScreens} from './screens.js';
import {initGroups} from './groups.js';
import {initEdit} from './edit.js';
import {initSearch} from './search.js';

export async function start() {
  await i18n.use(i18n.pick()).catch((err) => console.error('dce: the language could not load:', err));
  i18n.apply();
  bindDom();
  initSession();
  initSync();
  initConv();
  initSidebar();
  initOutbox();
  initScreens();
  initGroups();
  initEdit();
  initSearch();

  Object.defineProperty(window, 'dceDebug', {
    configurable: false,
    enumerable: false,
    value: Object.freeze({
      get lastSeq() { return S.lastSeq; },
      get connected() { return client.open; },
      get ready() { return S.ready; },
      get conv() { return S.conv; },
      get pending() { return S.outbox.length; },
      get lang() { return i18n.lang(); },
    }),
  });

  dom.loginSubmit.disabled = false;
  client.start();
}
