/* Tactline chat widget. One tag embeds it:
 *   <script src="https://HOST/widget.js" data-site="SITE" data-lang="sr-Latn" async></script>
 * It renders into a Shadow DOM, speaks protocol v1 (docs/protocol.md) on /ws/visitor and
 * exposes window.Tactline.open(), .close() and .identify({userId, userHash, name, email}).
 * User text is only ever set as textContent (an http(s) URL in it also as a link's href). */
(function () {
  'use strict';
  if (window.Tactline && window.Tactline.version) return;

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var BASE = new URL(script.src, location.href).origin;
  var SITE = script.getAttribute('data-site') || 'demo';
  var KEY = 'tactline:' + SITE + ':';

  // Timeouts and limits
  var PING_MS = 30000, TYPING_MS = 3000, TYPING_SHOWN_MS = 6000;
  // A visitor waits a few seconds at most once the server is back (the page may look idle).
  var BACKOFF_MIN_MS = 500, BACKOFF_MAX_MS = 4000, MAX_TEXT = 4000;

  var STRINGS = {
    en: {title: 'Chat with us', open: 'Open chat', close: 'Close chat', ph: 'Write a message…',
      send: 'Send', log: 'Messages', unread: '{n} unread messages', typing: '{name} is typing…',
      agent: 'Support', queue: 'You are number {n} in line. Estimated wait: {w}.',
      min: '{n} min', lt1: 'under a minute',
      with: 'You are now chatting with {name}', picked: '{name} has picked up your message.',
      hello: 'Hi! Ask us anything: write below and an agent will answer right here.',
      moved: 'Your chat was passed to {name}, who can see everything you wrote.',
      gone: '{name} is no longer in the chat. You are waiting for the next agent, who will see everything you wrote.',
      closed: 'The chat has ended.',
      rate: 'How would you rate this chat?', comment: 'Comment (optional)', rateSend: 'Send rating',
      thanks: 'Thank you for your feedback!', newChat: 'Start a new chat',
      offline: 'No one is online right now. Leave a message and we will get back to you.',
      online: 'An agent is available now — chat instead',
      name: 'Name', email: 'Email', msg: 'Message', leave: 'Send message',
      left: 'Thank you! We will get back to you by email.', reconn: 'Reconnecting…',
      sent: 'Delivered', read: 'Read', sending: 'Sending', you: 'You', star: '{n} of 5',
      end: 'End chat', endQ: 'End this chat?', yes: 'Yes', no: 'No', skip: 'Skip',
      err: 'Something went wrong. Please try again.',
      long: 'A message stops at 4,000 characters: text beyond that is not added.'},
    'sr-Latn': {title: 'Pišite nam', open: 'Otvori ćaskanje', close: 'Zatvori ćaskanje',
      ph: 'Napišite poruku…', send: 'Pošalji', log: 'Poruke', unread: 'Nepročitanih poruka: {n}',
      typing: '{name} kuca…', agent: 'Podrška', queue: 'Vi ste {n}. u redu. Procenjeno čekanje: {w}.',
      min: '{n} min', lt1: 'manje od minuta',
      with: 'Sada razgovarate sa: {name}', picked: 'Vašom porukom se bavi: {name}',
      hello: 'Zdravo! Pišite nam ovde i operater će vam odgovoriti u ovom prozoru.',
      moved: 'Vaš razgovor je prosleđen. Sada razgovarate sa: {name}; vidi sve što ste napisali.',
      gone: '{name} više nije u razgovoru. Čekate sledećeg slobodnog operatera, koji će videti sve što ste napisali.',
      closed: 'Razgovor je završen.',
      rate: 'Kako biste ocenili razgovor?', comment: 'Komentar (nije obavezno)',
      rateSend: 'Pošalji ocenu', thanks: 'Hvala na oceni!', newChat: 'Započni novi razgovor',
      offline: 'Trenutno niko nije na vezi. Ostavite poruku i javićemo vam se.', name: 'Ime',
      online: 'Sada je neko na vezi — započnite razgovor',
      email: 'Imejl', msg: 'Poruka', leave: 'Pošalji poruku', left: 'Hvala! Javićemo vam se imejlom.',
      reconn: 'Ponovno povezivanje…', sent: 'Isporučeno', read: 'Pročitano', sending: 'Šalje se',
      you: 'Vi', star: '{n} od 5', end: 'Završi razgovor', endQ: 'Da li želite da završite razgovor?',
      yes: 'Da', no: 'Ne', skip: 'Preskoči', err: 'Nešto nije u redu. Pokušajte ponovo.',
      long: 'Poruka može imati najviše 4.000 znakova: tekst preko toga se ne dodaje.'},
    'sr-Cyrl': {title: 'Пишите нам', open: 'Отвори ћаскање', close: 'Затвори ћаскање',
      ph: 'Напишите поруку…', send: 'Пошаљи', log: 'Поруке', unread: 'Непрочитаних порука: {n}',
      typing: '{name} куца…', agent: 'Подршка', queue: 'Ви сте {n}. у реду. Процењено чекање: {w}.',
      min: '{n} мин', lt1: 'мање од минута',
      with: 'Сада разговарате са: {name}', picked: 'Вашом поруком се бави: {name}',
      hello: 'Здраво! Пишите нам овде и оператер ће вам одговорити у овом прозору.',
      moved: 'Ваш разговор је прослеђен. Сада разговарате са: {name}; види све што сте написали.',
      gone: '{name} више није у разговору. Чекате следећег слободног оператера, који ће видети све што сте написали.',
      closed: 'Разговор је завршен.',
      rate: 'Како бисте оценили разговор?', comment: 'Коментар (није обавезно)',
      rateSend: 'Пошаљи оцену', thanks: 'Хвала на оцени!', newChat: 'Започни нови разговор',
      offline: 'Тренутно нико није на вези. Оставите поруку и јавићемо вам се.', name: 'Име',
      online: 'Сада је неко на вези — започните разговор',
      email: 'Имејл', msg: 'Порука', leave: 'Пошаљи поруку', left: 'Хвала! Јавићемо вам се имејлом.',
      reconn: 'Поновно повезивање…', sent: 'Испоручено', read: 'Прочитано', sending: 'Шаље се',
      you: 'Ви', star: '{n} од 5', end: 'Заврши разговор', endQ: 'Да ли желите да завршите разговор?',
      yes: 'Да', no: 'Не', skip: 'Прескочи', err: 'Нешто није у реду. Покушајте поново.',
      long: 'Порука може имати највише 4.000 знакова: текст преко тога се не додаје.'},
    hr: {title: 'Pišite nam', open: 'Otvori razgovor', close: 'Zatvori razgovor',
      ph: 'Napišite poruku…', send: 'Pošalji', log: 'Poruke', unread: 'Nepročitanih poruka: {n}',
      typing: '{name} piše…', agent: 'Podrška', queue: 'Vi ste {n}. u redu. Procijenjeno čekanje: {w}.',
      min: '{n} min', lt1: 'manje od minute',
      with: 'Sada razgovarate s: {name}', picked: 'Vašom porukom bavi se: {name}',
      hello: 'Pozdrav! Pišite nam ovdje i operater će vam odgovoriti u ovom prozoru.',
      moved: 'Vaš razgovor je proslijeđen. Sada razgovarate s: {name}; vidi sve što ste napisali.',
      gone: '{name} više nije u razgovoru. Čekate sljedećeg slobodnog operatera, koji će vidjeti sve što ste napisali.',
      closed: 'Razgovor je završen.',
      rate: 'Kako biste ocijenili razgovor?', comment: 'Komentar (nije obavezno)',
      rateSend: 'Pošalji ocjenu', thanks: 'Hvala na ocjeni!', newChat: 'Započni novi razgovor',
      offline: 'Trenutačno nitko nije dostupan. Ostavite poruku i javit ćemo vam se.', name: 'Ime',
      online: 'Sada je netko dostupan — započnite razgovor',
      email: 'E-pošta', msg: 'Poruka', leave: 'Pošalji poruku', left: 'Hvala! Javit ćemo vam se e-poštom.',
      reconn: 'Ponovno povezivanje…', sent: 'Isporučeno', read: 'Pročitano', sending: 'Šalje se',
      you: 'Vi', star: '{n} od 5', end: 'Završi razgovor', endQ: 'Želite li završiti razgovor?',
      yes: 'Da', no: 'Ne', skip: 'Preskoči', err: 'Nešto nije u redu. Pokušajte ponovno.',
      long: 'Poruka može imati najviše 4.000 znakova: tekst preko toga se ne dodaje.'},
    sl: {title: 'Pišite nam', open: 'Odpri klepet', close: 'Zapri klepet', ph: 'Napišite sporočilo …',
      send: 'Pošlji', log: 'Sporočila', unread: 'Neprebrana sporočila: {n}', typing: '{name} piše …',
      agent: 'Podpora', queue: 'V vrsti ste {n}. Predvideno čakanje: {w}.',
      min: '{n} min', lt1: 'manj kot minuta', with: 'Zdaj se pogovarjate z: {name}',
      picked: 'Z vašim sporočilom se ukvarja: {name}',
      hello: 'Pozdravljeni! Pišite nam tukaj in operater vam bo odgovoril v tem oknu.',
      moved: 'Vaš pogovor je bil predan naprej. Zdaj se pogovarjate z: {name}, ki vidi vse, kar ste napisali.',
      gone: '{name} ni več v pogovoru. Čakate na naslednjega prostega operaterja, ki bo videl vse, kar ste napisali.',
      closed: 'Pogovor je končan.', rate: 'Kako bi ocenili pogovor?', comment: 'Komentar (neobvezno)',
      rateSend: 'Pošlji oceno', thanks: 'Hvala za oceno!', newChat: 'Začni nov pogovor',
      offline: 'Trenutno ni nikogar na voljo. Pustite sporočilo in oglasili se vam bomo.', name: 'Ime',
      online: 'Zdaj je nekdo na voljo — začnite klepet',
      email: 'E-pošta', msg: 'Sporočilo', leave: 'Pošlji sporočilo',
      left: 'Hvala! Oglasili se vam bomo po e-pošti.', reconn: 'Ponovno povezovanje …',
      sent: 'Dostavljeno', read: 'Prebrano', sending: 'Pošiljanje', you: 'Vi', star: '{n} od 5',
      end: 'Končaj pogovor', endQ: 'Želite končati pogovor?', yes: 'Da', no: 'Ne', skip: 'Preskoči',
      err: 'Nekaj je šlo narobe. Poskusite znova.',
      long: 'Sporočilo ima lahko največ 4.000 znakov: besedilo čez to se ne doda.'}
  };

  /** The UI language: data-lang, else the browser's; plain "sr" is Cyrillic (CLDR default). */
  function pickLang(wanted) {
    for (var i = 0; i < wanted.length; i++) {
      var w = String(wanted[i] || '').toLowerCase();
      if (/^sr.*latn/.test(w)) return 'sr-Latn';
      if (/^sr/.test(w)) return 'sr-Cyrl';
      if (/^(hr|bs)/.test(w)) return 'hr';
      if (/^sl/.test(w)) return 'sl';
      if (/^en/.test(w)) return 'en';
    }
    return 'en';
  }
  var LANG = pickLang([script.getAttribute('data-lang')].concat(navigator.languages || [navigator.language]));
  var T = STRINGS[LANG];
  // The language of the visitor token, so of the conversations it opens (en, sr, hr, sl).
  var TOKEN_LANG = LANG.slice(0, 2);
  function t(key, vars) {
    return T[key].replace(/\{(\w+)\}/g, function (_, k) { return vars[k]; });
  }

  // ---------------------------------------------------------------- storage
  function load(name) {
    try { return JSON.parse(localStorage.getItem(KEY + name)); } catch (e) { return null; }
  }
  function save(name, value) {
    try { localStorage.setItem(KEY + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }

  // ---------------------------------------------------------------- DOM
  /** Element with attributes; string children become text nodes, never markup. */
  function h(tag, attrs, kids) {
    var el = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'on') for (var ev in attrs.on) el.addEventListener(ev, attrs.on[ev]);
      else if (attrs[k] === true) el.setAttribute(k, '');
      else if (attrs[k] !== false && attrs[k] != null) el.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { el.append(c); });
    return el;
  }
  function icon(d) {
    var ns = 'http://www.w3.org/2000/svg', svg = document.createElementNS(ns, 'svg'), p = document.createElementNS(ns, 'path');
    svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('aria-hidden', 'true'); svg.setAttribute('focusable', 'false');
    p.setAttribute('d', d); svg.append(p);
    return svg;
  }

  var CSS = ':host{all:initial}*{box-sizing:border-box}' +
    '.tl{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330}' +
    'button,input,textarea{font:inherit;color:inherit}' +
    '.launcher{position:fixed;right:20px;bottom:20px;width:60px;height:60px;border-radius:50%;border:0;background:#1f5fbf;color:#fff;cursor:pointer;box-shadow:0 4px 14px #0004;z-index:2147483000}' +
    '.launcher svg{width:30px;height:30px;fill:currentColor}' +
    '.badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#d22;color:#fff;font-size:13px;line-height:22px}' +
    '.panel{position:fixed;right:20px;bottom:92px;width:370px;height:min(560px,calc(100vh - 112px));display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px #0005;overflow:hidden;z-index:2147483001}' +
    '[hidden]{display:none!important}' +
    'header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:#1f5fbf;color:#fff}' +
    'h2{flex:1;margin:0;font-size:17px}' +
    'header button{background:none;border:0;color:#fff;cursor:pointer;width:32px;height:32px;border-radius:6px;font-size:14px}' +
    // End chat keeps its distance from ×, and asks first (.confirm).
    'header button.x{font-size:22px;width:40px;height:40px}header button.end{width:auto;margin-right:16px;padding:0 8px;border:1px solid #fff8;font-size:12px}header button:hover{background:#fff3}' +
    '.confirm{display:flex;flex-wrap:wrap;align-items:center;gap:8px;padding:8px 14px;background:#fdecea}.confirm span{flex:1}' +
    '.notice{padding:6px 14px;background:#fff6d6;font-size:13px}.notice:empty{display:none}' +
    '.log:empty::before{content:attr(data-hello);margin:auto;padding:0 16px;text-align:center;color:#445;font-size:14px}' +
    '.log{flex:1;overflow-y:auto;margin:0;padding:12px;list-style:none;display:flex;flex-direction:column;gap:6px;background:#f5f7fa}' +
    '.m{max-width:82%;padding:7px 10px;border-radius:12px;background:#fff;box-shadow:0 1px 1px #0002;white-space:pre-wrap;overflow-wrap:anywhere}' +
    '.m.me{align-self:flex-end;background:#1f5fbf;color:#fff}' +
    '.text a{color:#1a55b0;text-decoration:underline}.me .text a{color:inherit}' +
    '.who{display:block;font-size:12px;font-weight:600;opacity:.8}' +
    '.tick{display:block;text-align:right;font-size:11px;opacity:.85}' +
    '.sys{align-self:center;font-size:12px;color:#556;text-align:center}' +
    '.typing{padding:0 14px;font-size:12px;color:#556;min-height:18px}' +
    'form{display:flex;gap:8px;padding:10px;border-top:1px solid #e3e6ea}' +
    'form.stack{flex-direction:column}.intro{margin:0}.csat:focus{outline:0}' +
    'textarea,input[type=text],input[type=email]{flex:1;border:1px solid #b9c0ca;border-radius:8px;padding:8px;resize:none;min-width:0}' +
    'textarea{max-height:120px}' +
    '.btn{border:0;border-radius:8px;background:#1f5fbf;color:#fff;padding:8px 14px;cursor:pointer}' +
    '.btn:disabled{opacity:.5}.btn.alt{background:#fff;color:#1f5fbf;box-shadow:inset 0 0 0 1px #1f5fbf}' +
    '.row{display:flex;gap:8px}.row .btn{flex:1}.again{padding:10px;border-top:1px solid #e3e6ea}.again .btn{width:100%}' +
    '.now{margin:0}.now button{border:0;padding:0;background:none;color:#1f5fbf;text-decoration:underline;cursor:pointer;text-align:left}' +
    ':focus-visible{outline:3px solid #f5a623;outline-offset:2px}' +
    'fieldset{border:0;margin:0;padding:0;display:flex;gap:6px;flex-wrap:wrap}legend{margin-bottom:6px}' +
    '.stars label{display:inline-flex;align-items:center;justify-content:center;width:40px;height:40px;border:1px solid #b9c0ca;border-radius:8px;cursor:pointer}' +
    '.stars input{position:absolute;opacity:0;width:1px;height:1px}' +
    '.stars input:checked+span{font-weight:700;color:#1f5fbf}.stars input:focus-visible+span{outline:3px solid #f5a623}' +
    '@media (max-width:480px){.panel{inset:0;width:auto;height:auto;border-radius:0}.launcher{right:12px;bottom:12px}}';

  // ---------------------------------------------------------------- state
  var state = {
    token: load('token'), tokenLang: load('lang'), conv: null, status: null, cursors: {}, outbox: load('outbox') || [],
    ws: null, attempt: 0, opened: false, unread: 0, agentsOnline: null, agentName: null, hadAgent: false,
    lastTyping: 0, lastRead: null, left: false, leftId: null, identity: null, retry: null, ping: null,
    leaveTouched: false, answered: false,
    // The closed chat on view (read-only until "Start a new chat"), kept across reloads:
    // {conv, rate} where rate says the rating is still offered. Its events come from the server.
    ended: load('ended')
  };
  var nodes = {}; // message id -> {li, tick}

  var root, ui = {};
  function build() {
    var host = h('div', {id: 'tactline-widget'});
    document.body.append(host);
    root = host.attachShadow({mode: 'open'});
    if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      var sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet];
    } else {
      root.append(h('style', {}, [CSS]));
    }
    ui.badge = h('span', {'class': 'badge', hidden: true, 'aria-hidden': 'true'});
    ui.launcher = h('button', {'class': 'launcher', type: 'button', 'aria-label': T.open, 'aria-expanded': 'false',
      'aria-controls': 'tl-panel', on: {click: function () { state.opened ? close() : open(); }}},
      [icon('M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 1-2z'), ui.badge]);
    ui.notice = h('div', {'class': 'notice', role: 'status', 'aria-live': 'polite'});
    ui.log = h('ol', {'class': 'log', role: 'log', 'aria-live': 'polite', 'aria-label': T.log, tabindex: '0'});
    ui.typing = h('div', {'class': 'typing', 'aria-live': 'polite'});
    ui.text = h('textarea', {rows: '1', maxlength: String(MAX_TEXT), placeholder: T.ph, 'aria-label': T.ph,
      on: {keydown: onKey, input: onInput}});
    ui.compose = h('form', {'class': 'compose', on: {submit: function (e) { e.preventDefault(); sendText(); }}},
      [ui.text, h('button', {'class': 'btn', type: 'submit', 'aria-label': T.send}, [T.send])]);
    ui.leave = leaveForm();
    ui.csat = csatForm();
    ui.end = h('button', {'class': 'end', type: 'button', hidden: true, on: {click: function () { askEnd(true); }}}, [T.end]);
    ui.no = h('button', {'class': 'btn alt', type: 'button', on: {click: function () { askEnd(false); }}}, [T.no]);
    ui.confirm = h('div', {'class': 'confirm', role: 'group', 'aria-label': T.endQ, hidden: true}, [h('span', {}, [T.endQ]),
      h('button', {'class': 'btn', type: 'button', on: {click: function () { askEnd(false); endChat(); }}}, [T.yes]), ui.no]);
    ui.again = h('div', {'class': 'again', hidden: true}, [h('button', {'class': 'btn', type: 'button', on: {click: newChat}}, [T.newChat])]);
    ui.panel = h('section', {'class': 'panel', id: 'tl-panel', role: 'dialog', 'aria-label': T.title, hidden: true,
      on: {keydown: function (e) {
        if (e.key !== 'Escape') return;
        if (!ui.confirm.hidden) askEnd(false); else { close(); ui.launcher.focus(); }
      }}}, [
      h('header', {}, [h('h2', {}, [T.title]), ui.end,
        h('button', {'class': 'x', type: 'button', 'aria-label': T.close, on: {click: close}}, ['×'])]),
      ui.confirm, ui.notice, ui.log, ui.typing, ui.compose, ui.leave, ui.csat, ui.again]);
    root.append(h('div', {'class': 'tl', lang: LANG}, [ui.launcher, ui.panel]));
  }

  function leaveForm() {
    var name = h('input', {type: 'text', required: true, maxlength: '100', 'aria-label': T.name, placeholder: T.name});
    var email = h('input', {type: 'email', required: true, maxlength: '200', 'aria-label': T.email, placeholder: T.email});
    var text = h('textarea', {rows: '3', required: true, maxlength: String(MAX_TEXT), 'aria-label': T.msg, placeholder: T.msg});
    ui.leaveText = text;
    // An agent came online while the visitor was writing here: their choice to chat instead.
    ui.chatNow = h('button', {type: 'button', hidden: true, on: {click: function () {
      ui.text.value = text.value.trim(); text.value = ''; state.leaveTouched = false;
      offerLeave(false); onInput(); ui.text.focus();
    }}}, [T.online]);
    return h('form', {'class': 'stack leave', hidden: true, on: {
      input: function () { state.leaveTouched = true; },
      submit: function (e) {
        e.preventDefault();
        var id = uid('lm');
        queueFrame({type: 'leave_message', id: id, name: name.value.trim(), email: email.value.trim(), text: text.value.trim()});
        offerLeave(false); ui.notice.textContent = ''; state.leaveTouched = false;
        state.leftId = id; state.left = true; // thanked below the message once it is stored
      }}}, [h('p', {'class': 'intro'}, [T.offline]), h('p', {'class': 'now', 'aria-live': 'polite'}, [ui.chatNow]),
      name, email, text, h('button', {'class': 'btn', type: 'submit'}, [T.leave])]);
  }

  /** The leave-a-message form instead of the message box, or back. */
  function offerLeave(on) {
    ui.leave.hidden = !on; ui.compose.hidden = on || !!state.ended; ui.chatNow.hidden = true;
    // An empty chat greets the visitor, unless the form says nobody is there to answer.
    ui.log.setAttribute('data-hello', on ? '' : T.hello);
  }

  /** Before a chat: the form while nobody who speaks the visitor's language is online, else the
   * message box; a visitor who started writing in the form is offered the chat, not moved. */
  function agentsChanged(n) {
    state.agentsOnline = n;
    if (state.conv || state.left || state.ended) return;
    var inForm = ui.leave.contains(root.activeElement), inBox = root.activeElement === ui.text;
    if (n && !ui.leave.hidden && state.leaveTouched) { ui.chatNow.hidden = false; return; }
    if (!n && ui.text.value.trim() && !ui.leaveText.value) { // the unsent message goes along
      ui.leaveText.value = ui.text.value.trim(); ui.text.value = ''; state.leaveTouched = true; onInput();
    }
    offerLeave(!n);
    if (inForm && n) ui.text.focus();
    else if (inBox && !n) ui.leave.querySelector('input').focus();
  }

  function csatForm() {
    var stars = [1, 2, 3, 4, 5].map(function (n) {
      return h('label', {title: t('star', {n: n})}, [
        h('input', {type: 'radio', name: 'score', value: String(n), 'aria-label': t('star', {n: n}), required: true}),
        h('span', {'aria-hidden': 'true'}, [String(n) + '★'])]);
    });
    var comment = h('textarea', {rows: '2', maxlength: '1000', 'aria-label': T.comment, placeholder: T.comment});
    // Rated or skipped: the form goes (also after a reload); "Start a new chat" stays.
    function done() {
      form.hidden = true; form.reset();
      if (state.ended) { state.ended.rate = false; save('ended', state.ended); }
      ui.again.firstChild.focus();
    }
    // Focused as a whole when the chat ends (a focused first star would look chosen).
    var form = h('form', {'class': 'stack csat', hidden: true, tabindex: '-1', 'aria-label': T.rate, on: {submit: function (e) {
      e.preventDefault();
      var picked = form.querySelector('input:checked');
      if (!picked || !state.ended) return;
      // Kept until the server has it, as messages are: a rating given offline is not lost.
      queueFrame({type: 'csat', id: uid('r'), conversation: state.ended.conv, score: +picked.value, comment: comment.value.trim()});
      done(); system(T.thanks);
    }}}, [h('fieldset', {'class': 'stars', role: 'radiogroup'}, [h('legend', {}, [T.rate])].concat(stars)), comment,
      h('div', {'class': 'row'}, [h('button', {'class': 'btn', type: 'submit'}, [T.rateSend]),
        h('button', {'class': 'btn alt', type: 'button', on: {click: done}}, [T.skip])])]);
    return form;
  }

  /** A closed chat: its transcript stays, read-only, with the rating while it is still
   * offered (never for a chat no agent answered) and "Start a new chat". */
  function showEnded(conv, rate) {
    var f = root.activeElement; // focus on what goes now goes to what comes
    state.ended = {conv: conv, rate: rate}; save('ended', state.ended);
    state.conv = null; state.status = 'closed'; state.left = false; state.hadAgent = false; state.waitingLeft = false;
    state.agentName = null; state.answered = false;
    ui.typing.textContent = ''; ui.notice.textContent = '';
    askEnd(false); ui.end.hidden = ui.leave.hidden = ui.compose.hidden = true;
    ui.csat.hidden = !rate; ui.again.hidden = false;
    if (f && !f.offsetParent) (rate ? ui.csat : ui.again.firstChild).focus();
    scroll(); // the form takes room: keep the last lines in view above it
  }

  /** Out of the closed chat, into an empty one to write in. */
  function newChat() {
    if (state.ended) delete state.cursors[state.ended.conv];
    state.ended = null; save('ended', null); state.status = null;
    nodes = {}; ui.log.textContent = '';
    ui.csat.hidden = ui.again.hidden = true;
    agentsChanged(state.agentsOnline);
    (ui.leave.hidden ? ui.text : ui.leave.querySelector('input')).focus();
  }

  /** "End this chat?" under the header, or away; No (the safe answer) has the focus. */
  function askEnd(on) {
    var was = !ui.confirm.hidden;
    ui.confirm.hidden = !on;
    if (on) ui.no.focus(); else if (was && !ui.end.hidden) ui.end.focus();
  }

  // ---------------------------------------------------------------- rendering
  function scroll() { ui.log.scrollTop = ui.log.scrollHeight; }
  function system(text) { ui.log.append(h('li', {'class': 'sys'}, [text])); scroll(); }
  function setTick(n, key) { n.tick.textContent = key === 'read' ? '✓✓' : key === 'sent' ? '✓' : '…'; n.tick.setAttribute('aria-label', T[key]); n.tick.title = T[key]; n.state = key; }

  /** Text and links: each http(s) URL a link to a new tab, built as nodes. Punctuation that
   * ends the sentence, and a ")" the URL did not open, are not part of it. */
  function linked(text) {
    var out = [], at = 0, re = /https?:\/\/[^\s<>"]+/gi, m, url;
    while ((m = re.exec(text))) {
      url = m[0];
      while (/[.,;:!?'"\u2019\u201d\u00bb\]]$/.test(url) || (/\)$/.test(url) && url.split(')').length > url.split('(').length)) url = url.slice(0, -1);
      try { new URL(url); } catch (e) { continue; }
      out.push(text.slice(at, m.index), h('a', {href: url, target: '_blank', rel: 'noopener noreferrer'}, [url]));
      at = re.lastIndex = m.index + url.length;
    }
    out.push(text.slice(at));
    return out;
  }

  function bubble(id, mine, who, text) {
    var tick = h('span', {'class': 'tick'});
    var li = h('li', {'class': 'm' + (mine ? ' me' : ''), 'data-id': id}, [
      h('span', {'class': 'who'}, [mine ? T.you : who]), h('span', {'class': 'text'}, linked(text))]);
    if (mine) li.append(tick);
    ui.log.append(li); scroll();
    var n = {li: li, tick: tick, seq: null};
    if (mine) setTick(n, 'sending');
    return (nodes[id] = n);
  }

  function cmpSeq(a, b) {
    var x = a.split('-'), y = b.split('-');
    return (+x[0] - +y[0]) || (+x[1] - +y[1]);
  }

  function onEvent(ev) {
    var c = ev.conversation, last = state.cursors[c];
    if (last && cmpSeq(ev.seq, last) <= 0) return; // already shown
    state.cursors[c] = ev.seq;
    if (ev.type === 'message') {
      var mine = ev.from.role === 'visitor';
      var n = nodes[ev.id];
      if (!n || !mine) n = bubble(ev.id, mine, ev.from.name || T.agent, ev.text);
      n.seq = ev.seq;
      if (mine) {
        if (n.state !== 'read') setTick(n, 'sent');
        dropOutbox(ev.id);
        if (ev.id === state.leftId) { state.leftId = null; system(T.left); }
        if (ev.contact) { state.waitingLeft = true; endShown(); }
      }
      else {
        ui.typing.textContent = '';
        if (!state.opened || document.hidden) { if (!state.history) { state.unread++; badge(); } } else markRead();
      }
    } else if (ev.type === 'read') {
      if (ev.by.role !== 'visitor') for (var id in nodes) {
        var m = nodes[id];
        if (m.seq && m.tick.parentNode && cmpSeq(m.seq, ev.up_to) <= 0) setTick(m, 'read');
      }
    } else if (ev.type === 'assigned' || ev.type === 'transferred') {
      if (ev.agent) {
        state.agentName = ev.agent.name; state.answered = true; offerLeave(false);
        state.waitingLeft = false; endShown();
        // A left message an agent took is not a live chat that started.
        system(t(ev.left_message ? 'picked' : ev.type === 'transferred' ? 'moved' : 'with', {name: ev.agent.name}));
      } else if (state.agentName) {
        // Back in the queue (the agent went away, or a transfer to a team): the chat stays
        // open to write in, and what is written waits for the next agent.
        system(t('gone', {name: state.agentName}));
        state.agentName = null; state.hadAgent = true;
      }
      state.status = ev.agent ? 'assigned' : 'queued';
      ui.notice.textContent = '';
    } else if (ev.type === 'closed') {
      system(T.closed);
      // Shown again after a reload, the rating is offered if it was before.
      showEnded(c, state.history ? !!(state.ended && state.ended.conv === c && state.ended.rate) : state.answered);
    }
  }

  function badge() {
    ui.badge.hidden = !state.unread;
    ui.badge.textContent = String(state.unread);
    ui.launcher.setAttribute('aria-label', state.unread ? T.open + '. ' + t('unread', {n: state.unread}) : T.open);
  }

  function markRead() {
    var c = state.conv, seq = c && state.cursors[c];
    if (!seq || seq === state.lastRead || !state.opened || document.hidden) return;
    state.lastRead = seq;
    send({type: 'read', conversation: c, seq: seq});
  }

  function showQueue(f) {
    // Nobody online speaks the visitor's language: no line to wait in, but a message to leave.
    // A chat that already had an agent waits for the next one, with its box open.
    if (!state.left && !state.agentName && !state.hadAgent) offerLeave(!f.agents_online);
    if (!f.agents_online) { ui.notice.textContent = ''; return; }
    var w = f.estimated_wait_s;
    ui.notice.textContent = t('queue', {n: f.position, w: w < 60 ? T.lt1 : t('min', {n: Math.ceil(w / 60)})});
  }

  // ---------------------------------------------------------------- connection
  function uid(prefix) {
    var r = crypto.getRandomValues(new Uint32Array(3));
    return prefix + '-' + Date.now().toString(36) + r[0].toString(36) + r[1].toString(36) + r[2].toString(36);
  }

  function send(frame) {
    frame.v = 1;
    if (state.ws && state.ws.readyState === 1 && state.ready) { state.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  /** A frame that must arrive: kept (also across reloads) until the server acknowledges it. */
  function queueFrame(frame) {
    state.outbox.push(frame); save('outbox', state.outbox);
    send(frame);
  }
  function dropOutbox(id) {
    state.outbox = state.outbox.filter(function (f) { return f.id !== id; });
    save('outbox', state.outbox);
  }

  function token(fresh) {
    // A token kept from a page in another language would open the chat in that one: a new
    // token for this language, with the old one so that the visitor stays who they were.
    if (state.token && !fresh && state.tokenLang === TOKEN_LANG) return Promise.resolve(state.token);
    var body = {site: SITE, lang: TOKEN_LANG};
    if (state.token) body.token = state.token;
    var id = state.identity;
    if (id) {
      if (id.name) body.name = String(id.name).slice(0, 100);
      if (id.email && /^[^@\s\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+@[^@\s\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+\.[^@\s\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+$/.test(id.email) && id.email.length <= 254) body.email = String(id.email);
      if (id.userId) { body.user_id = String(id.userId); body.user_hash = String(id.userHash || ''); }
    }
    // text/plain keeps this a simple request: no CORS preflight on every page load of a site.
    return fetch(BASE + '/api/visitors', {method: 'POST', headers: {'Content-Type': 'text/plain;charset=UTF-8'}, body: JSON.stringify(body)})
      .then(function (r) {
        if (r.status === 403 && id && id.userId) { // a wrong userHash: continue as an anonymous visitor
          if (window.console) console.warn('Tactline: identity verification failed for this userId');
          state.identity = null; state.token = null;
          return token(true).then(function () { return null; });
        }
        if (!r.ok) throw new Error('token ' + r.status);
        return r.json();
      })
      .then(function (j) {
        if (j) { state.token = j.token; state.tokenLang = j.lang; save('token', j.token); save('lang', j.lang); }
        return state.token;
      });
  }

  function connect(freshToken) {
    clearTimeout(state.retry); state.retry = null;
    token(freshToken).then(function (tok) {
      var ws = new WebSocket(BASE.replace(/^http/, 'ws') + '/ws/visitor');
      state.ws = ws; state.ready = false;
      ws.onopen = function () {
        var resume = {}, any = false;
        for (var c in state.cursors) { resume[c] = state.cursors[c]; any = true; }
        // After a reload, the closed chat on view: its events from the start.
        var end = state.ended && state.ended.conv;
        if (end && /^c_[0-9a-f]{16}$/.test(end) && !resume[end]) { resume[end] = '0-0'; any = true; }
        var hello = {v: 1, type: 'hello', token: tok};
        if (any) hello.resume = resume;
        ws.send(JSON.stringify(hello));
      };
      ws.onmessage = function (e) { var f; try { f = JSON.parse(e.data); } catch (x) { return; } onFrame(f); };
      ws.onclose = function (e) {
        if (state.ws !== ws) return;
        state.ready = false; clearInterval(state.ping);
        if (e.code === 4001) { state.token = null; save('token', null); }
        retry(e.code === 4001);
      };
    }, function () { retry(false); });
  }

  function retry(fresh) {
    var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempt++));
    ui.notice.textContent = T.reconn; state.fresh = fresh;
    state.retry = setTimeout(function () { connect(fresh); }, delay / 2 + Math.random() * delay / 2);
  }
  /** The page is in view again, or the browser back online: try now, not after the backoff. */
  function retryNow() {
    if (state.retry && !document.hidden) { state.attempt = 0; connect(state.fresh); }
  }

  function onFrame(f) {
    if (f.type === 'welcome') {
      state.ready = true; state.attempt = 0; ui.notice.textContent = '';
      state.agentsOnline = f.agents_online;
      var views = f.conversations, end = state.ended && state.ended.conv, seen = false;
      var open = views.some(function (v) { return v.status !== 'closed'; });
      views.forEach(function (view) {
        var c = view.conversation;
        // The closed chat kept over a reload goes once another was started (in another tab).
        if (!state.cursors[c] && view.status === 'closed' && (open || c !== end)) return;
        seen = seen || c === end;
        state.history = !state.cursors[c];
        if (view.status !== 'closed') { state.conv = c; state.status = view.status; }
        if (view.agent) { state.agentName = view.agent.name; state.answered = true; }
        view.events.forEach(onEvent);
      });
      state.history = false;
      if (end && !seen && ui.again.hidden) { state.ended = null; save('ended', null); }
      endShown();
      // agents_online counts those who speak the visitor's language: none is as nobody online.
      if (state.conv || state.left || state.ended) offerLeave(false); else agentsChanged(f.agents_online);
      state.outbox.forEach(function (fr) { send(fr); });
      clearInterval(state.ping);
      state.ping = setInterval(function () { send({type: 'ping'}); }, PING_MS);
      markRead();
    } else if (f.type === 'ack') {
      state.conv = f.conversation; endShown();
      var n = nodes[f.ref];
      if (n && n.state === 'sending') setTick(n, 'sent');
      dropOutbox(f.ref);
    } else if (f.type === 'typing') {
      if (f.from.role === 'visitor') return;
      clearTimeout(state.typingOff);
      ui.typing.textContent = f.active ? t('typing', {name: f.from.name || T.agent}) : '';
      if (f.active) state.typingOff = setTimeout(function () { ui.typing.textContent = ''; }, TYPING_SHOWN_MS);
    } else if (f.type === 'agents') {
      // A visitor in a chat keeps it whoever is online.
      state.agentsOnline = f.agents_online;
      if (!(state.conv || state.left || state.ended)) agentsChanged(f.agents_online);
    } else if (f.type === 'queue') {
      state.conv = f.conversation; state.status = 'queued'; showQueue(f);
    } else if (f.type === 'pong') {
      if (f.ref) dropOutbox(f.ref); // a rating arrived
    } else if (f.type === 'error') {
      // A rating the server will never take (already rated, say) is not sent again; one it
      // could not take now ("internal": try again) waits for the next connection.
      if (f.code !== 'internal' && state.outbox.some(function (fr) { return fr.id === f.ref && fr.type === 'csat'; })) dropOutbox(f.ref);
      if (f.code === 'agents_online') { // someone who speaks the language came online: chat instead
        var left = state.outbox.filter(function (fr) { return fr.id === f.ref; })[0];
        dropOutbox(f.ref); offerLeave(false); state.left = false; state.leftId = null;
        if (left) sendMessage(left.text);
      }
      else if (f.code === 'text_too_long' || f.code === 'invalid_frame') { dropOutbox(f.ref); ui.notice.textContent = T.err; }
      else if (f.code === 'conversation_closed' || f.code === 'no_conversation') state.conv = null;
    } else if (f.seq) {
      onEvent(f);
    }
  }

  // ---------------------------------------------------------------- input
  function onKey(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendText(); }
  }
  function onInput() {
    ui.text.style.height = 'auto';
    ui.text.style.height = ui.text.scrollHeight + 'px';
    // The box stops at the limit (a paste is cut there): say so rather than cut silently.
    if (ui.text.value.length >= MAX_TEXT) ui.notice.textContent = T.long;
    else if (ui.notice.textContent === T.long) ui.notice.textContent = '';
    var now = Date.now();
    if (state.conv && now - state.lastTyping > TYPING_MS && ui.text.value) {
      state.lastTyping = now;
      send({type: 'typing', conversation: state.conv, active: true});
    }
  }
  function sendText() {
    var text = ui.text.value.trim();
    if (!text) return;
    ui.text.value = ''; onInput();
    if (state.conv && state.lastTyping) { state.lastTyping = 0; send({type: 'typing', conversation: state.conv, active: false}); }
    sendMessage(text);
    if (!state.ready && state.retry && state.attempt > 1) { state.attempt = 1; connect(false); } // try now
  }
  function sendMessage(text) {
    var id = uid('m');
    bubble(id, true, T.you, text);
    queueFrame({type: 'message', id: id, text: text});
  }
  /** "End chat" while there is a chat to end: not for a message left for an agent, which
   * waits for them (the visitor was promised an answer by email). */
  function endShown() { ui.end.hidden = !state.conv || !!state.waitingLeft; }
  function endChat() {
    if (state.conv) send({type: 'close', conversation: state.conv});
  }

  // ---------------------------------------------------------------- public API
  function open() {
    if (!ui.panel) { state.openEarly = true; return; }
    state.opened = true;
    try { sessionStorage.setItem(KEY + 'open', '1'); } catch (e) { /* ignore */ }
    ui.panel.hidden = false;
    ui.launcher.setAttribute('aria-expanded', 'true');
    state.unread = 0; badge(); markRead(); scroll();
    (ui.leave.hidden ? ui.text : ui.leave.querySelector('input')).focus();
  }
  function close() {
    if (!ui.panel) { state.openEarly = false; return; }
    state.opened = false;
    try { sessionStorage.removeItem(KEY + 'open'); } catch (e) { /* ignore */ }
    ui.panel.hidden = true;
    ui.launcher.setAttribute('aria-expanded', 'false');
  }
  function identify(who) {
    state.identity = who || null;
    if (who && ui.leave) {
      var f = ui.leave.querySelectorAll('input');
      if (who.name) f[0].value = who.name;
      if (who.email) f[1].value = who.email;
    }
    if (!ui.panel) return;
    // The closed chat on view comes back in the welcome if it is this visitor's.
    nodes = {}; state.cursors = {}; state.conv = null;
    ui.log.textContent = ''; ui.csat.hidden = ui.again.hidden = true;
    var ws = state.ws; state.ws = null;
    if (ws) ws.close(1000);
    connect(true);
  }

  function start() {
    build();
    document.addEventListener('visibilitychange', function () { markRead(); retryNow(); });
    addEventListener('online', retryNow);
    var wasOpen = false;
    try { wasOpen = !!sessionStorage.getItem(KEY + 'open'); } catch (e) { /* ignore */ }
    if (state.openEarly || wasOpen) open();
    connect(!!state.identity);
  }
  window.Tactline = {version: 1, lang: LANG, open: open, close: close, identify: identify};
  if (document.body) start(); else document.addEventListener('DOMContentLoaded', start);
})();
