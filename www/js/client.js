// The Dce frame client: one WebSocket, requests with ids and timeouts,
// pushes by path, and reconnection with exponential backoff and jitter.
//
// Frames (PROTOCOL.md section 1): a request is `PATH:ID;JSON`, its reply
// `PATH:ID;RESULT` or `PATH:ID;{"error":{...}}`, a push `PATH;JSON`, and the
// failure of a request without id `error;{"path","error"}`.

// Close codes after which the client does not reconnect by itself:
// kicked, banned, over the connection limit.
export const NO_RECONNECT = new Set([4001, 4503, 4509]);

// ProtoError is a failed request: code is the protocol's error code
// (PROTOCOL.md section 4), or one of the client's own: "timeout",
// "closed" (the connection went away before the reply), "offline" (not
// connected when the request was made).
export class ProtoError extends Error {
  constructor(err) {
    const e = err && typeof err === 'object' ? err : {};
    super(typeof e.message === 'string' && e.message ? e.message : String(e.code || 'error'));
    this.name = 'ProtoError';
    this.code = typeof e.code === 'string' ? e.code : 'internal';
    this.retryAfter = Number.isFinite(e.retry_after_ms) ? e.retry_after_ms : 0;
  }
}

function isErrorReply(body) {
  return body !== null && typeof body === 'object' && !Array.isArray(body) &&
    body.error !== null && typeof body.error === 'object' && typeof body.error.code === 'string';
}

const utf8 = new TextDecoder();

export class Client {
  // url: the WebSocket URL. opts: timeout (ms per request), minDelay and
  // maxDelay (reconnect backoff), pingEvery (ms between liveness pings),
  // onOpen(), onClose({code, reason, wasOpen, reconnect, delay}).
  constructor(url, opts = {}) {
    this.url = url;
    this.timeout = opts.timeout ?? 10000;
    this.minDelay = opts.minDelay ?? 500;
    this.maxDelay = opts.maxDelay ?? 10000;
    this.pingEvery = opts.pingEvery ?? 25000;
    this.onOpen = opts.onOpen || (() => {});
    this.onClose = opts.onClose || (() => {});
    this.ws = null;
    this.open = false;
    this.running = false;
    this.nextId = 1;
    this.waiting = new Map(); // id -> {resolve, reject, timer}
    this.handlers = new Map(); // path -> Set of fn
    this.attempt = 0;
    this.retryTimer = 0;
    this.stableTimer = 0;
    this.pingTimer = 0;
  }

  // on subscribes fn(body, path) to pushes of path; it returns the
  // unsubscribe function.
  on(path, fn) {
    let set = this.handlers.get(path);
    if (!set) this.handlers.set(path, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  // start connects, and keeps reconnecting until stop.
  start() {
    this.running = true;
    if (!this.ws && !this.retryTimer) this.connect();
  }

  // stop closes the connection and stops reconnecting.
  stop(code = 1000, reason = 'bye') {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    this.drop(code, reason);
  }

  // restart closes the current connection (if any) and opens a new one at
  // once, e.g. after a login set a new session cookie.
  restart() {
    this.running = true;
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    this.drop(1000, 'restart', true);
    this.connect();
  }

  // hold keeps the current connection but does not reconnect once it
  // closes (the server said it is about to close it for good).
  hold() {
    this.running = false;
  }

  // retryNow skips the rest of a backoff wait (the browser came back online
  // or the page became visible).
  retryNow() {
    if (this.running && !this.ws && this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = 0;
      this.connect();
    }
  }

  // request sends PATH:ID;BODY and resolves with the result, or rejects
  // with a ProtoError.
  request(path, body = {}, timeout = this.timeout) {
    return new Promise((resolve, reject) => {
      if (!this.open || !this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new ProtoError({code: 'offline', message: 'not connected'}));
        return;
      }
      const id = String(this.nextId++);
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new ProtoError({code: 'timeout', message: 'the server did not answer in time'}));
      }, timeout);
      this.waiting.set(id, {resolve, reject, timer});
      try {
        this.ws.send(`${path}:${id};${JSON.stringify(body)}`);
      } catch (err) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(new ProtoError({code: 'closed', message: 'the connection closed'}));
      }
    });
  }

  // send sends a fire-and-forget frame PATH;BODY. It reports whether the
  // frame was handed to the socket.
  send(path, body = {}) {
    if (!this.open || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    try {
      this.ws.send(`${path};${JSON.stringify(body)}`);
      return true;
    } catch {
      return false;
    }
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.closed(1006, '', false);
      return;
    }
    this.ws = ws;
    // Binary frames are decoded at once, so that frames are handled in the
    // order they came (a Blob's text() would let later frames overtake).
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.open = true;
      // The backoff starts again from the bottom only once a connection
      // has stayed up for a while: a server that accepts and at once closes
      // does not get hammered.
      this.stableTimer = setTimeout(() => { this.attempt = 0; }, 5000);
      this.schedulePing();
      this.safe(() => this.onOpen());
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data === 'string') this.receive(ev.data);
      else if (ev.data instanceof ArrayBuffer) this.receive(utf8.decode(ev.data));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed(ev.code, ev.reason, false);
    };
    ws.onerror = () => {}; // a close event follows
  }

  // drop detaches and closes the current socket without waiting for the
  // closing handshake, and runs the close handling at once.
  drop(code, reason, noSchedule = false) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    // A page may only use 1000 and 3000-4999; anything else closes as 1000.
    const c = code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
    try { ws.close(c, reason); } catch { try { ws.close(); } catch { /* closing already */ } }
    this.closed(code, reason, true, noSchedule);
  }

  closed(code, reason, local, noSchedule = false) {
    const wasOpen = this.open;
    this.open = false;
    clearTimeout(this.stableTimer);
    clearTimeout(this.pingTimer);
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new ProtoError({code: 'closed', message: 'the connection closed'}));
      this.waiting.delete(id);
    }
    let reconnect = this.running && !noSchedule;
    if (reconnect && !local && NO_RECONNECT.has(code)) {
      reconnect = false;
      this.running = false;
    }
    let delay = 0;
    if (reconnect) {
      const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 30);
      delay = Math.round(base * (0.75 + Math.random() * 0.5));
      this.retryTimer = setTimeout(() => { this.retryTimer = 0; this.connect(); }, delay);
    }
    this.safe(() => this.onClose({code, reason, wasOpen, local, reconnect, delay}));
  }

  schedulePing() {
    clearTimeout(this.pingTimer);
    if (!this.pingEvery) return;
    this.pingTimer = setTimeout(() => {
      const ws = this.ws;
      this.request('ping', {}).then(() => {
        if (this.ws === ws) this.schedulePing();
      }, (err) => {
        // No answer: the connection is dead even if the socket has not
        // noticed (a sleeping laptop, a NAT that forgot us). Start over.
        if (err.code === 'timeout' && this.ws === ws) this.drop(4000, 'ping timeout');
      });
    }, this.pingEvery);
  }

  receive(data) {
    const semi = data.indexOf(';');
    const head = semi < 0 ? data : data.slice(0, semi);
    const raw = semi < 0 ? '' : data.slice(semi + 1);
    let body = {};
    if (raw.trim() !== '') {
      try {
        body = JSON.parse(raw);
      } catch {
        console.warn('dce: a frame with a body that is not JSON:', head);
        return;
      }
    }
    const colon = head.indexOf(':');
    if (colon >= 0) {
      const id = head.slice(colon + 1);
      const w = this.waiting.get(id);
      if (!w) return; // late reply to a request that timed out
      this.waiting.delete(id);
      clearTimeout(w.timer);
      if (isErrorReply(body)) w.reject(new ProtoError(body.error));
      else w.resolve(body);
      return;
    }
    const set = this.handlers.get(head);
    if (!set) return;
    for (const fn of [...set]) this.safe(() => fn(body, head));
  }

  safe(fn) {
    try {
      fn();
    } catch (err) {
      console.error('dce:', err);
    }
  }
}
