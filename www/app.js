// The entry module of the chat page. It loads the other modules with the
// same cache-busting query it was loaded with (/static/app.js?v=VERSION), so
// a new server version never runs with stale modules, and starts the page.

const v = new URL(import.meta.url).search;

function fail(err) {
  console.error('dce: the page could not start:', err);
  const t = document.getElementById('boot-text');
  if (t) t.textContent = 'The page could not start. Reload to try again.';
}

Promise.all([
  import(`./js/client.js${v}`),
  import(`./js/render.js${v}`),
  import(`./js/chat.js${v}`),
]).then(([client, render, chat]) => {
  chat.start({Client: client.Client, ProtoError: client.ProtoError, R: render});
}).catch(fail);
