// The entry module of the chat page. The page loads it from the assets'
// versioned path (/static/v<hash>/app.js), and every module it imports is
// named relative to it, so a page never mixes one build's modules with
// another's.

function fail(err) {
  console.error('dce: the page could not start:', err);
  const t = document.getElementById('boot-text');
  if (t) t.textContent = 'The page could not start. Reload to try again.';
}

import('./js/chat.js').then((chat) => chat.start()).catch(fail);
