/* Shared by the agent console and the review pages: DOM building (text only, never
 * markup), the session, the REST helper and a protocol v1 socket that reconnects and
 * resumes by cursor (docs/protocol.md §3). */
(function () {
  'use strict';

  // Timeouts
  var PING_MS = 30000, BACKOFF_MIN_MS = 500, BACKOFF_MAX_MS = 4000;
  var SESSION_KEY = 'tactline:session';

  /** An element; string children become text nodes, `on` adds listeners. */
  function h(tag, attrs, kids) {
    var el = document.createElement(tag);
    for (var k in attrs || {}) {
      var v = attrs[k];
      if (k === 'on') for (var ev in v) el.addEventListener(ev, v[ev]);
      else if (k === 'text') el.textContent = v;
      else if (v === true) el.setAttribute(k, '');
      else if (v !== false && v != null) el.setAttribute(k, v);
    }
    (kids || []).forEach(function (c) { if (c != null) el.append(c); });
    return el;
  }

  function svg(tag, attrs, kids) {
    var el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (var k in attrs || {}) if (attrs[k] != null) el.setAttribute(k, attrs[k]);
    (kids || []).forEach(function (c) { if (c != null) el.append(c); });
    return el;
  }

  function cmpSeq(a, b) {
    var x = String(a).split('-'), y = String(b).split('-');
    return (+x[0] - +y[0]) || (+x[1] - +y[1]);
  }

  function uid(prefix) {
    var r = crypto.getRandomValues(new Uint32Array(2));
    return prefix + '-' + Date.now().toString(36) + r[0].toString(36) + r[1].toString(36);
  }

  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function clock(ts) {
    var d = new Date(ts);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  // Dates as "5 Dec 2026": day, month, year in the one order every reader takes the
  // same way, whatever their browser's locale (5/12 is May to some, December to others).
  var MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  /** A day: a Date, or a "2026-12-05" date as the review API gives days; "5 Dec 2026",
   * or "5 Dec" when `noYear`. Anything else comes back as it was. */
  function day(d, noYear) {
    var iso = typeof d === 'string' && /^(\d{4})-(\d\d)-(\d\d)$/.exec(d);
    if (iso) d = new Date(+iso[1], +iso[2] - 1, +iso[3]);
    if (!(d instanceof Date) || isNaN(d)) return d == null ? '' : String(d);
    return d.getDate() + ' ' + MONTHS[d.getMonth()] + (noYear ? '' : ' ' + d.getFullYear());
  }

  /** A moment (ms since the epoch, or an ISO 8601 string), in local time: "5 Dec 2026 14:20". */
  function when(ts) {
    if (ts == null || ts === '' || ts === 0) return '';
    var d = new Date(ts);
    return isNaN(d) ? String(ts) : day(d) + ' ' + clock(d);
  }

  /** Code-point offsets (as the coach sends them) to UTF-16 offsets (as JavaScript counts). */
  function utf16(text, cp) {
    if (!/[\uD800-\uDFFF]/.test(text)) return cp;
    return Array.from(text).slice(0, cp).join('').length;
  }

  // Words for the names the protocol uses (categories, outcomes, review states) where
  // spaces for underscores are not enough; the console and the review pages say the same.
  var WORDS = {dont_know: "don't know"};

  /** A protocol name as people read it: "dont_know" -> "don't know", "not_my_job" -> "not my job". */
  function humanize(s) { return WORDS[s] || String(s || '').replace(/_/g, ' '); }

  // ---------------------------------------------------------------- session
  // Kept in localStorage, so every tab of the browser shares one login: a new tab
  // starts logged in, and logging in or out in one tab does the same in the others.
  function stored() {
    var s = null;
    try { s = JSON.parse(localStorage.getItem(SESSION_KEY)); } catch (e) { s = null; }
    return s && s.token && s.expires_at * 1000 > Date.now() ? s : null;
  }

  var session = stored();
  try { sessionStorage.removeItem(SESSION_KEY); } catch (e) { /* where an older version kept it */ }

  function setSession(s) {
    if (s) localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    // Only the session this page holds: another tab may have logged in since.
    else if (!stored() || (session && stored().token === session.token)) localStorage.removeItem(SESSION_KEY);
    session = s;
  }

  /** Log out: the server ends this session, so its token is refused from now on,
   * and every tab of the browser starts again at the login form. */
  function logout() {
    var s = session, again = function () { location.reload(); };
    setSession(null);
    if (!s) return again();
    fetch('/api/logout', {method: 'POST', headers: {Authorization: 'Bearer ' + s.token}, keepalive: true})
      .then(again, again);
  }

  // Another tab logged in or out: start again as it left things.
  window.addEventListener('storage', function (e) {
    if (e.key !== SESSION_KEY && e.key !== null) return;
    var now = stored();
    if ((now && now.token) === (session && session.token)) return;
    session = now;
    location.reload();
  });

  function ApiError(status, code, message) {
    this.status = status; this.code = code; this.message = message || code;
  }

  /** JSON over fetch with the session's bearer token; rejects with ApiError. */
  function api(path, opts) {
    opts = opts || {};
    var headers = {'Accept': 'application/json'};
    if (session) headers.Authorization = 'Bearer ' + session.token;
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, {method: opts.method || 'GET', headers: headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body)})
      .then(function (r) {
        if (opts.raw && r.ok) return r;
        return r.text().then(function (body) {
          var data = null;
          try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
          if (!r.ok) throw new ApiError(r.status, (data && data.code) || 'http_' + r.status, data && data.message);
          return data;
        });
      });
  }

  /** Whether `err`, as api() rejected, is the network failing (the server down or out of
   * reach: fetch's own TypeError, "Failed to fetch") rather than an answer of the server. */
  function unreachable(err) { return err instanceof TypeError; }

  /** Fill `form` (#login-form) so that it logs in and then calls onDone(session). */
  function loginForm(form, onDone) {
    var err = form.querySelector('.error');
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      err.textContent = '';
      api('/api/login', {method: 'POST', body: {
        username: form.elements.username.value.trim(), password: form.elements.password.value}})
        .then(function (s) { form.elements.password.value = ''; setSession(s); onDone(s); },
          function (x) {
            err.textContent = x.code === 'login_failed' ? 'Wrong user name or password.'
              : x.code === 'rate_limited' ? 'Too many attempts; wait a minute.' : 'Login failed (' + x.code + ').';
          });
    });
  }

  /**
   * A /ws/agent connection that reconnects with backoff and resumes by cursor.
   * opts: {onFrame(frame), onState('connecting'|'online'|'offline'), cursors() -> {conv: seq}}
   * Frames sent with send(frame, true) are kept until acknowledged (ack with ref = id, or an
   * error naming it) and resent after a reconnect.
   */
  function Socket(opts) {
    var self = this;
    this.opts = opts; this.ws = null; this.ready = false; this.attempt = 0;
    this.outbox = []; this.stopped = false;
    // Back online, or the tab shown again: try now rather than at the end of the wait.
    function now() { if (self.retry && !self.stopped) { clearTimeout(self.retry); self.connect(); } }
    window.addEventListener('online', now);
    document.addEventListener('visibilitychange', function () { if (!document.hidden) now(); });
    this.connect();
  }
  Socket.prototype.connect = function () {
    var self = this;
    this.retry = null;
    if (this.stopped) return;
    this.opts.onState('connecting');
    var ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws/agent');
    this.ws = ws; this.ready = false;
    ws.onopen = function () {
      var hello = {v: 1, type: 'hello', token: session && session.token};
      var cursors = self.opts.cursors(), any = false;
      for (var c in cursors) { any = true; break; }
      if (any) hello.resume = cursors;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = function (e) {
      var f;
      try { f = JSON.parse(e.data); } catch (x) { return; }
      if (f.type === 'welcome') {
        self.ready = true; self.attempt = 0;
        self.opts.onState('online');
        self.opts.onFrame(f);
        self.outbox.forEach(function (fr) { ws.send(JSON.stringify(fr)); });
        clearInterval(self.ping);
        self.ping = setInterval(function () { self.send({type: 'ping'}); }, PING_MS);
        return;
      }
      if ((f.type === 'ack' || f.type === 'error') && f.ref) self.settle(f.ref);
      self.opts.onFrame(f);
    };
    ws.onclose = function (e) {
      if (self.ws !== ws) return;
      self.ready = false; clearInterval(self.ping);
      self.opts.onState('offline', e.code);
      if (e.code === 4001 || self.stopped) return;
      var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, self.attempt++));
      self.retry = setTimeout(function () { self.connect(); }, delay / 2 + Math.random() * delay / 2);
    };
  };
  Socket.prototype.send = function (frame, keep) {
    frame.v = 1;
    if (keep) this.outbox.push(frame);
    if (this.ws && this.ready && this.ws.readyState === 1) { this.ws.send(JSON.stringify(frame)); return true; }
    if (keep && this.retry && this.attempt > 1) { // the user is waiting: try again now
      clearTimeout(this.retry); this.retry = null; this.attempt = 1; this.connect();
    }
    return false;
  };
  Socket.prototype.settle = function (ref) {
    this.outbox = this.outbox.filter(function (f) { return f.id !== ref; });
  };
  Socket.prototype.stop = function () {
    this.stopped = true; clearTimeout(this.retry); clearInterval(this.ping);
    if (this.ws) this.ws.close(1000);
  };

  window.TL = {h: h, svg: svg, cmpSeq: cmpSeq, uid: uid, duration: duration, clock: clock, day: day, when: when, utf16: utf16,
    humanize: humanize, api: api, ApiError: ApiError, unreachable: unreachable, loginForm: loginForm, Socket: Socket,
    session: function () { return session; }, setSession: setSession, logout: logout};
})();
