/* The agent console (/agent): queue, my chats, the conversation, and a composer that
 * underlines what the coach flags as the agent types (docs/coaching.md). */
(function () {
  'use strict';
  var h = TL.h, $ = function (id) { return document.getElementById(id); };

  // Timeouts
  var DRAFT_DEBOUNCE_MS = 150, TYPING_EVERY_MS = 3000, TYPING_SHOWN_MS = 6000, TOAST_MS = 6000;
  // The longest message text the server takes, in characters (docs/protocol.md).
  var MAX_TEXT = 4000;
  // Layout: the least height of the conversation, and its share of the pane it keeps if
  // its lines take that much; the height of the "More below: scroll" foot (console.css).
  var TRANSCRIPT_MIN_PX = 96, TRANSCRIPT_SHARE = 0.4, MORE_BELOW_PX = 34;
  // The capacities the server takes (server/protocol.py, Status): whole numbers of chats.
  var CAPACITY_MIN = 1, CAPACITY_MAX = 20;

  var CATEGORY = {
    frustration: 'The customer is upset', repeat_contact: 'The customer has contacted us before',
    escalation_request: 'The customer asks for someone in charge',
    hold_without_update: 'The customer is waiting', missing_introduction: 'Introduce yourself',
    missing_thanks: 'Thank the customer', upsell_when_upset: 'Not the moment for an offer'
  };

  // A message sent after the coach refused it (the review pages say the same).
  var SENT_ANYWAY = 'sent anyway';

  // The cards' order, most urgent first: what the customer feels or asks for now, then
  // the wait, then habits (introductions, thanks) that can come last.
  var URGENCY = ['frustration', 'escalation_request', 'upsell_when_upset', 'repeat_contact',
    'hold_without_update', 'missing_thanks', 'missing_introduction'];

  var REPLY_PLACEHOLDER = $('draft').placeholder;

  var S = {
    me: null, role: null, socket: null, convs: new Map(), current: null, queue: [], agents: [],
    snapshotAt: Date.now(), coachSeen: false, coachOff: false, draftSentAt: 0
  };

  // ---------------------------------------------------------------- conversations
  function conv(id) {
    var c = S.convs.get(id);
    if (!c) {
      c = {id: id, visitor: {name: 'Visitor'}, lang: '', status: 'assigned', events: [], last: null,
        unread: 0, waitingSince: null, draft: '', draftId: 0, draftTexts: {}, flags: [], applied: [],
        assist: [], notes: [], lastRead: null, pending: {}, overridden: {}, coached: {}, whispers: {}};
      S.convs.set(id, c);
    }
    return c;
  }

  function addEvent(c, ev) {
    if (c.last && TL.cmpSeq(ev.seq, c.last) <= 0) return false;
    c.last = ev.seq;
    // What a read receipt may acknowledge: never a receipt (ours would answer
    // itself for ever), never what this agent wrote.
    if (ev.type !== 'read' && !(ev.from && S.me && ev.from.id === S.me.id && ev.from.role !== 'visitor')) c.lastOther = ev.seq;
    // A receipt this agent sent from another tab: this tab need not send it again.
    if (ev.type === 'read' && ev.by && S.me && ev.by.id === S.me.id && ev.by.role !== 'visitor' &&
        (!c.lastRead || TL.cmpSeq(ev.up_to, c.lastRead) > 0)) c.lastRead = ev.up_to;
    c.events.push(ev);
    if (ev.type === 'message' && ev.override) c.overridden[ev.id] = true; // sent anyway, told again after a reload
    if (ev.type === 'message') {
      var fromVisitor = ev.from.role === 'visitor';
      if (fromVisitor) { if (!c.waitingSince) c.waitingSince = ev.ts; } else c.waitingSince = null;
      if (fromVisitor && (S.current !== c.id || document.hidden)) c.unread++;
      delete c.pending[ev.id];
    } else if (ev.type === 'closed') {
      c.status = 'closed'; c.waitingSince = null;
    } else if (ev.type === 'transferred') {
      // The newest hand-over says whose the chat is: one taken over from this agent and
      // handed back is theirs again, though its history still has the take-over.
      c.status = ev.agent && ev.agent.id === S.me.id ? 'assigned' : 'gone';
    } else if (ev.type === 'assigned') {
      c.status = 'assigned';
    }
    return true;
  }

  /** A supervisor's whisper, put among the chat's events by its time; false when the chat
   * has it already (a welcome lists them all again, and the live frame may come too). */
  function addWhisper(c, w) {
    var key = w.ts + '\n' + w.text;
    if (c.whispers[key]) return false;
    c.whispers[key] = true;
    var ev = {type: 'whisper', conversation: c.id, from: w.from, text: w.text, ts: w.ts}, i = c.events.length;
    while (i > 0 && (c.events[i - 1].ts || 0) > (w.ts || 0)) i--;
    c.events.splice(i, 0, ev);
    return ev;
  }

  function onEvent(f) {
    var c = S.convs.get(f.conversation);
    if (!c) return;
    if (!addEvent(c, f)) return;
    if (S.current === c.id && c.status !== 'gone') { renderEvent(c, f); markRead(c); if (f.type === 'message' && f.from.role === 'visitor') $('typing').textContent = ''; }
    if ((f.type === 'closed' || c.status === 'gone') && S.closing === c.id) $('close-confirm').close();
    if (f.type === 'closed') {
      forgetDraft(c.id);
      dropCards(c, function () { return true; }); // nothing left to coach
      if (S.current === c.id) renderChatState(c);
    }
    if (c.status === 'gone') {
      forgetDraft(c.id);
      S.convs.delete(c.id);
      if (S.current === c.id) select(null);
      toast(f.taken_over ? takeOverText(c, f) : 'The chat with ' + c.visitor.name + ' was transferred.');
    }
    renderChats();
  }

  /** Remembers what the coach recorded for a sent message, for when the chat is shown
   * again; false when there is nothing to say. Sent after a refusal, on purpose: it says
   * so, as the review pages do, whatever the outcome. */
  function coached(c, ref, outcome) {
    if (c.overridden[ref] || outcome === 'clean') return false;
    c.coached[ref] = 'coach: ' + TL.humanize(outcome);
    return true;
  }

  // ---------------------------------------------------------------- frames
  function onFrame(f) {
    switch (f.type) {
      case 'welcome':
        S.me = f.user; S.role = f.role;
        $('me').textContent = f.user.name + (f.role === 'supervisor' ? ' (supervisor)' : '');
        $('controls').hidden = f.role !== 'agent';
        // The capacity the server holds, set while offline too (no queue snapshot lists an
        // offline agent); not over a value the agent is told to correct.
        if (f.settings && document.activeElement !== $('capacity') && $('capacity-error').hidden) {
          $('capacity').value = String(f.settings.capacity);
        }
        // Supervisors do not accept from the queue: their chats are those they take over.
        if (f.role === 'supervisor') $('empty').textContent = 'Chats you take over from the Live review page are listed on the left.';
        f.conversations.forEach(function (view) {
          var c = conv(view.conversation), fresh = !c.last;
          c.visitor = view.visitor || c.visitor; c.lang = view.lang; c.status = view.status;
          view.events.forEach(function (ev) { addEvent(c, ev); });
          (view.whispers || []).forEach(function (w) { addWhisper(c, w); });
          Object.entries(view.coached || {}).forEach(function (e) { coached(c, e[0], e[1]); });
          if (fresh) c.unread = 0;
        });
        restoreDrafts();
        renderChats();
        if (S.current) select(S.current); else if (S.convs.size) select(S.convs.keys().next().value);
        if (S.wantStatus && f.role === 'agent') status(); // after a reconnect, as the agent chose
        break;
      case 'assignment': {
        var c = conv(f.conversation);
        c.visitor = f.visitor; c.lang = f.visitor.lang; c.status = 'assigned';
        (f.events || []).forEach(function (ev) { addEvent(c, ev); });
        var from = f.from_agent && (f.from_agent.name || f.from_agent), took = f.reason === 'transfer' && tookOver(c);
        // A transfer or take-over, with its note, is told once: by its `transferred` event,
        // in its place in the history (below what was said before it), after a reload too.
        if (f.reason === 'requeue') c.notes.push('Returned to the queue and assigned to you.');
        renderChats();
        if (!S.current || S.current === c.id) select(c.id);
        else if (took) toast(takeOverText(c, took) + (from ? ' from ' + from : ''));
        else if (f.reason === 'transfer' && f.from_agent) {
          toast((f.from_agent.name || f.from_agent) + ' transferred ' + c.visitor.name + ' to you' + (f.note ? ': ' + f.note : ''));
        } else toast('New chat: ' + c.visitor.name);
        break;
      }
      case 'queue_snapshot':
        S.queue = f.queue; S.agents = f.agents; S.snapshotAt = Date.now();
        if ($('transfer').open) fillTransferAgents(); // keep the open dialog current
        renderQueue();
        var mine = myState();
        if (document.activeElement !== $('status')) $('status').value = mine ? mine.status : 'offline';
        // The capacity the server holds, not the page's default, after a reload too.
        // Not over a value the agent is told to correct, though.
        if (mine && mine.capacity && document.activeElement !== $('capacity') &&
            $('capacity-error').hidden) $('capacity').value = String(mine.capacity);
        break;
      case 'ack': {
        var ac = S.convs.get(f.conversation), p = ac && ac.pending[f.ref];
        if (p && p.li) p.li.classList.remove('pending');
        break;
      }
      case 'typing':
        if (f.conversation === S.current && f.from.role === 'visitor') {
          $('typing').textContent = f.active ? f.from.name + ' is typing…' : '';
          clearTimeout(S.typingOff);
          S.typingOff = setTimeout(function () { $('typing').textContent = ''; }, TYPING_SHOWN_MS);
        }
        break;
      case 'coach': onCoach(f); break;
      case 'script': case 'nudge': {
        var sc = S.convs.get(f.conversation);
        if (!sc) break;
        S.coachSeen = true;
        if (f.category === 'missing_thanks') {
          // Decided by the server when the chat closes: a lesson for the next chat, kept in
          // view on this closed one (the composer is disabled by now).
          sc.afterClose = f;
          if (S.current === sc.id) renderAfterClose(sc);
          break;
        }
        sc.assist = sc.assist.filter(function (a) { return !(a.type === f.type && a.category === f.category); });
        sc.assist.push(f);
        sc.openCard = null; // the most urgent card opens again
        if (S.current === sc.id) renderAssist(sc);
        break;
      }
      case 'whisper': {
        var wc = S.convs.get(f.conversation), wev = wc && addWhisper(wc, f);
        if (!wev) break;
        // In its place by time: at the end, as a rule.
        if (S.current === wc.id && wc.events[wc.events.length - 1] === wev) renderEvent(wc, wev);
        else if (S.current === wc.id) select(wc.id);
        else toast('Whisper from ' + f.from.name);
        break;
      }
      case 'coach_checked': {
        var cc = S.convs.get(f.conversation);
        if (!cc || !coached(cc, f.ref, f.outcome)) break;
        var msg = document.querySelector('#transcript .msg[data-id="' + CSS.escape(f.ref) + '"]');
        if (msg && S.current === cc.id) setState(msg, 'coach', cc.coached[f.ref]);
        break;
      }
      case 'error': onError(f); break;
      case 'pong': break;
      default:
        if (f.seq && f.conversation) onEvent(f);
    }
  }

  function onError(f) {
    var transferFailed = f.code === 'agent_unavailable' || f.code === 'unknown_team';
    if (f.code === 'sensitive_data') return showRefusal(f);
    if (f.code === 'unknown_type' && !S.coachSeen && Date.now() - S.draftSentAt < 5000) {
      S.coachOff = true; // this server does not coach drafts yet
      return;
    }
    if (f.code === 'agent_unavailable' && S.handBack && f.ref === S.handBack.id) {
      toast('Could not hand the chat back: ' + S.handBack.name + ' is not online.');
    } else if (transferFailed && !$('transfer').open) toast('Transfer failed: ' + f.message);
    else if (transferFailed) $('transfer-error').textContent = f.message;
    else if (f.code !== 'rate_limited') toast(f.message || f.code);
    S.convs.forEach(function (c) {
      var p = f.ref && c.pending[f.ref];
      if (!p) return;
      if (p.li) p.li.remove();
      delete c.pending[f.ref];
      // A refused reply goes back into the box rather than being lost.
      if (S.current === c.id && !$('draft').value.trim()) { $('draft').value = p.text; c.draft = p.text; keepDraft(c); }
    });
  }

  // ---------------------------------------------------------------- lists
  /** This agent as the last queue snapshot lists them (status, open, capacity), if it does. */
  function myState() {
    return S.me && S.agents.filter(function (a) { return a.id === S.me.id; })[0];
  }

  /** Why this console cannot accept a chat now, as the server would refuse it
   * (docs/protocol.md: `no_capacity` while not online or full, `forbidden` for a
   * supervisor), or '' when it can. */
  function acceptBlocked() {
    if (S.role === 'supervisor') return 'Agents accept waiting chats; take one over from the Live review page.';
    var mine = myState();
    if (!mine || mine.status !== 'online') return 'Go online to accept chats.';
    if (mine.open >= mine.capacity) {
      return 'You have ' + mine.open + ' of ' + mine.capacity + ' chats: close one or raise your capacity to accept another.';
    }
    return '';
  }

  function renderQueue() {
    var elapsed = (Date.now() - S.snapshotAt) / 1000, blocked = acceptBlocked();
    $('queue-count').textContent = S.queue.length ? String(S.queue.length) : '';
    var hint = S.queue.length ? blocked : '';
    if ($('queue-hint').textContent !== hint) $('queue-hint').textContent = hint; // said once, not each second
    $('queue-hint').hidden = !hint;
    keepingFocus($('queue'), S.queue.map(function (q) {
      return h('li', {'class': 'queue-item'}, [
        h('div', {'class': 'body'}, [
          h('span', {'class': 'who', text: (q.visitor_name || 'Visitor') + (q.left_message ? ' left a message' : '') + ' · ' + q.lang}),
          h('span', {'class': 'wait', text: ' waiting ' + TL.duration(q.waiting_s + elapsed)}),
          h('span', {'class': 'preview', text: q.preview || ''})]),
        h('button', {type: 'button', 'class': 'accept', 'data-conv': q.conversation,
          'aria-label': 'Accept chat: ' + (q.preview || q.conversation),
          disabled: !!blocked, title: blocked || null, 'aria-describedby': blocked ? 'queue-hint' : null,
          on: {click: function () { S.socket.send({type: 'accept', conversation: q.conversation, id: TL.uid('acc')}); }}},
        ['Accept'])]);
    }));
  }

  function renderChats() {
    var items = [];
    S.convs.forEach(function (c) {
      var last = c.events.filter(function (e) { return e.type === 'message'; }).slice(-1)[0];
      var label = c.visitor.name + (c.unread ? ', ' + c.unread + ' unread' : '') + (c.status === 'closed' ? ', closed' : '');
      items.push(h('li', {'class': c.status === 'closed' ? 'closed' : ''}, [h('button', {'class': 'item', type: 'button', 'aria-current': S.current === c.id ? 'true' : 'false',
        'aria-label': label, 'data-conv': c.id, on: {click: function () { openChat(c.id); }}}, [
        h('span', {'class': 'who'}, [c.visitor.name, h('span', {'class': 'preview', text: last ? last.text : ''})]),
        c.waitingSince ? h('span', {'class': 'wait', 'data-since': String(c.waitingSince),
          text: TL.duration((Date.now() - c.waitingSince) / 1000)}) : null,
        c.status === 'closed' ? h('span', {'class': 'tag', text: 'closed'}) : null,
        c.unread ? h('span', {'class': 'unread', text: String(c.unread)}) : null]),
        c.status === 'closed' ? h('button', {'class': 'remove', type: 'button', 'data-conv': c.id, title: 'Remove from the list',
          'aria-label': 'Remove the closed chat with ' + c.visitor.name,
          on: {click: function () { removeChat(c.id); }}}, ['×']) : null]));
    });
    keepingFocus($('chats'), items);
  }

  /** A chat picked in My chats, with the mouse or the keyboard: the reply box next, as
   * that is what one picks a chat for; on a closed chat, the list keeps the focus. */
  function openChat(id) {
    select(id);
    if (!$('draft').disabled) $('draft').focus();
  }

  /** Fill a list of chats (`ul`) with `items`, the keyboard focus kept on the same button
   * of the same chat (by its class and data-conv): the lists are rebuilt whenever
   * something changes, and focus on a removed button would fall back to the page's
   * start. A chat gone from the list leaves the focus on the button now in its place. */
  function keepingFocus(ul, items) {
    var had = document.activeElement, conv = null, kind = '', at = -1;
    if (had && ul.contains(had) && had.dataset.conv && had.classList.length) {
      conv = had.dataset.conv; kind = had.classList[0];
      at = Array.prototype.indexOf.call(ul.querySelectorAll('button.' + kind), had);
    }
    ul.replaceChildren.apply(ul, items);
    if (conv === null) return;
    var same = ul.querySelectorAll('button.' + kind), again = null;
    for (var i = 0; i < same.length && !again; i++) if (same[i].dataset.conv === conv) again = same[i];
    again = again || same[Math.min(at, same.length - 1)] || ul.querySelector('button:not(:disabled)');
    if (again) again.focus();
  }

  function removeChat(id) {
    forgetDraft(id);
    S.convs.delete(id);
    if (S.current === id) select(S.convs.size ? S.convs.keys().next().value : null);
    renderChats();
  }

  setInterval(function () {
    document.querySelectorAll('#chats .wait').forEach(function (el) {
      el.textContent = TL.duration((Date.now() - +el.dataset.since) / 1000);
    });
    if (S.queue.length) renderQueue();
  }, 1000);

  // ---------------------------------------------------------------- conversation view
  function select(id) {
    var prev = S.current && S.convs.get(S.current);
    if (prev) prev.draft = $('draft').value;
    S.current = id;
    var c = id && S.convs.get(id);
    $('empty').hidden = !!c; $('conversation').hidden = !c;
    hidePopover();
    if (!c) { renderChats(); return; }
    c.unread = 0;
    $('chat-title').textContent = c.visitor.name;
    // The visitor by name; the chat's id only as a tooltip, for those who look it up.
    $('chat-meta').textContent = (c.visitor.email ? c.visitor.email + ' (unverified) · ' : '') + (c.lang || '');
    $('chat-meta').title = 'Chat ' + c.id;
    $('transcript').replaceChildren();
    c.notes.forEach(function (n) { $('transcript').append(h('li', {'class': 'sys', text: n})); });
    c.events.forEach(function (ev) { renderEvent(c, ev); });
    Object.keys(c.pending).forEach(function (k) { var p = c.pending[k]; if (p.li) $('transcript').append(p.li); });
    $('typing').textContent = '';
    $('draft').value = c.draft;
    $('refusal').hidden = true;
    renderFlags(c); renderAssist(c); renderAfterClose(c); renderChatState(c); renderChats(); markRead(c);
    scrollDown();
    if (c.recheck) { c.recheck = false; clearTimeout(S.draftTimer); sendDraft(c); } // a draft put back after a reload
  }

  function renderChatState(c) {
    var closed = c.status === 'closed';
    $('draft').disabled = closed; $('close-chat').disabled = closed; $('transfer-open').disabled = closed;
    $('composer').querySelector('button').disabled = closed;
    $('closed-note').hidden = !closed; $('flags-help').hidden = closed;
    $('draft').setAttribute('aria-describedby', closed ? 'closed-note' : 'flags-help');
    $('draft').placeholder = closed ? 'This chat is closed.' : REPLY_PLACEHOLDER;
    var back = !closed && takenFrom(c), button = $('hand-back');
    button.hidden = !back;
    button.textContent = back ? 'Hand back to ' + back.name : '';
    button.title = back ? 'Transfer the chat back to ' + back.name + ', who had it before you took it over' : '';
  }

  /** "Ana (supervisor) took over the chat with Marta", or to Ana herself "You took over
   * the chat with Marta": a ``transferred`` event of a take-over. */
  function takeOverText(c, ev) {
    if (ev.agent && S.me && ev.agent.id === S.me.id) return 'You took over the chat with ' + c.visitor.name;
    return (ev.agent ? ev.agent.name : 'A supervisor') + ' (supervisor) took over the chat with ' + c.visitor.name;
  }

  /** The take-over that made this chat this supervisor's, when its newest hand-over is one. */
  function tookOver(c) {
    for (var i = c.events.length - 1; i >= 0; i--) {
      var ev = c.events[i];
      if (ev.type !== 'transferred') continue;
      return ev.taken_over && ev.agent && S.me && ev.agent.id === S.me.id ? ev : null;
    }
    return null;
  }

  /** The agent a supervisor took this chat over from, while it is still the supervisor's. */
  function takenFrom(c) {
    if (S.role !== 'supervisor') return null;
    for (var i = c.events.length - 1; i >= 0; i--) {
      var ev = c.events[i];
      if (ev.type !== 'transferred') continue;
      var ours = ev.agent && ev.agent.id === S.me.id;
      return ours && ev.from_agent && ev.from_agent.id !== S.me.id ? ev.from_agent : null;
    }
    return null;
  }

  function handBack() {
    var c = S.convs.get(S.current), back = c && takenFrom(c);
    if (!back) return;
    S.handBack = {id: TL.uid('hb'), name: back.name};
    S.socket.send({type: 'transfer', conversation: c.id, to_agent: back.id, id: S.handBack.id});
  }

  function scrollDown() { var t = $('transcript'); t.scrollTop = t.scrollHeight; S.atEnd = true; S.endTop = t.scrollTop; }

  /** Mark an area that has more below than it shows (its foot says so until scrolled there). */
  function moreBelow(el) {
    el.classList.toggle('more-below', el.scrollTop + el.clientHeight < el.scrollHeight - 2);
  }

  // The conversation keeps its latest line in view as cards and suggestions come and go
  // and take room from it, unless the agent scrolled up to read back.
  S.atEnd = true;
  $('transcript').addEventListener('scroll', function () {
    // Lines added since this page scrolled down do not count as the agent scrolling up.
    var t = $('transcript');
    S.atEnd = t.scrollTop + t.clientHeight >= t.scrollHeight - 8 || t.scrollTop >= S.endTop;
  });
  ['coaching', 'flags'].forEach(function (id) { $(id).addEventListener('scroll', function () { moreBelow($(id)); }); });

  /** Share the pane's height out; console.css reads the two figures. The conversation
   * keeps as much as its lines take, up to 40% of the pane and never under 96px: the empty
   * room of a short chat goes to the cards and the phrasing suggestions instead of staying
   * empty above them. The coaching area keeps its first option and what stays at its foot
   * below it (the refusal's Edit / Send anyway bar, or the line that says there is more),
   * so that what the agent would click first is neither cut nor covered: as far as the
   * room the conversation and the suggestions keep leaves it. A refusal holds the agent's
   * message back until they choose, so for it the conversation gives way down to 96px. */
  function fitPane() {
    var pane = $('conversation'), t = $('transcript'), area = $('coaching'), style = getComputedStyle(t);
    if (pane.hidden) return;
    var first = t.firstElementChild, lines = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom) +
      (first ? t.lastElementChild.getBoundingClientRect().bottom - first.getBoundingClientRect().top : 0);
    var keep = Math.ceil(Math.max(TRANSCRIPT_MIN_PX, Math.min(lines, TRANSCRIPT_SHARE * pane.clientHeight)));
    var refusal = !$('refusal').hidden;
    var option = area.querySelector(refusal ? '.refusal .use' : '.card .body:not([hidden]) .insert');
    if (!option) {
      t.style.setProperty('--keep', keep + 'px');
      area.style.removeProperty('--keep');
      return;
    }
    var bar = refusal ? $('refusal').querySelector(':scope > .options') : null;
    var need = option.getBoundingClientRect().bottom - area.getBoundingClientRect().top + area.scrollTop +
      (bar ? bar.offsetHeight : MORE_BELOW_PX) + parseFloat(getComputedStyle(area).paddingBottom);
    var left = pane.clientHeight; // for the conversation and the coaching area
    Array.prototype.forEach.call(pane.children, function (el) {
      var s = getComputedStyle(el);
      if (el === t || el === area || s.position === 'absolute' || !el.getClientRects().length) return;
      // The phrasing suggestions count as the least they keep: they give up room too.
      left -= (el.id === 'flags' ? parseFloat(s.minHeight) || 0 : el.offsetHeight) +
        parseFloat(s.marginTop) + parseFloat(s.marginBottom);
    });
    var kept = Math.min(Math.ceil(need), Math.floor(left - (refusal ? TRANSCRIPT_MIN_PX : keep)));
    if (refusal) keep = Math.max(TRANSCRIPT_MIN_PX, Math.min(keep, Math.floor(left - kept)));
    t.style.setProperty('--keep', keep + 'px');
    area.style.setProperty('--keep', kept + 'px');
  }
  new MutationObserver(fitPane).observe($('transcript'), {childList: true, subtree: true, characterData: true});
  new ResizeObserver(function () {
    fitPane(); // a narrower pane wraps the lines onto more
    if (S.atEnd) scrollDown();
    moreBelow($('coaching')); moreBelow($('flags'));
  }).observe($('transcript'));

  function renderEvent(c, ev) {
    var t = $('transcript'), li;
    if (ev.type === 'message') {
      var mine = ev.from.role !== 'visitor';
      var old = t.querySelector('[data-id="' + CSS.escape(ev.id) + '"]');
      if (old) old.remove();
      li = h('li', {'class': 'msg' + (mine ? ' mine' : ''), 'data-id': ev.id, 'data-seq': ev.seq}, [
        h('span', {'class': 'from'}, [ev.from.name || ev.from.role, h('span', {'class': 'time', text: TL.clock(ev.ts)})]),
        h('span', {'class': 'text'}, linked(ev.text)),
        ev.contact ? h('span', {'class': 'sys', text: ' (' + ev.contact.name + ', ' + ev.contact.email + ')'}) : null,
        mine ? h('span', {'class': 'state'}) : null]);
      if (mine && (c.overridden[ev.id] || c.coached[ev.id])) setState(li, 'coach', c.overridden[ev.id] ? SENT_ANYWAY : c.coached[ev.id]);
    } else if (ev.type === 'whisper') {
      li = h('li', {'class': 'whisper', 'aria-label': 'Private whisper from ' + ev.from.name},
        // A supervisor who took the chat over reads their own whispers to the agent before.
        [h('strong', {text: S.me && ev.from.id === S.me.id ? 'Your whisper to the agent: '
          : 'Whisper from ' + ev.from.name + ' (only you see this): '}), ev.text]);
    } else if (ev.type === 'assigned') {
      li = h('li', {'class': 'sys', text: (ev.agent ? ev.agent.name : 'An agent') + ' joined · ' + TL.clock(ev.ts)});
    } else if (ev.type === 'transferred' && ev.taken_over) {
      li = h('li', {'class': 'sys', text: takeOverText(c, ev) + (ev.from_agent ? ' from ' + ev.from_agent.name : '') +
        ' · ' + TL.clock(ev.ts) + (ev.note ? '\nNote: ' + ev.note : '')});
    } else if (ev.type === 'transferred' && !ev.agent && !ev.team) {
      // Handed to no one: its agent went offline (or stayed disconnected), so it was requeued.
      li = h('li', {'class': 'sys', text: 'Back in the queue' + (ev.from_agent ? ': ' + ev.from_agent.name + ' went offline' : '') +
        ' · ' + TL.clock(ev.ts) + (ev.note ? '\nNote: ' + ev.note : '')});
    } else if (ev.type === 'transferred') {
      var toMe = ev.agent && S.me && ev.agent.id === S.me.id;
      li = h('li', {'class': 'sys', text: 'Transferred' + (ev.from_agent ? ' from ' + ev.from_agent.name : '') +
        (toMe ? ' to you' : ev.agent ? ' to ' + ev.agent.name : ev.team ? ' to team ' + ev.team : '') +
        ' · ' + TL.clock(ev.ts) + (ev.note ? '\nNote: ' + ev.note : '')});
    } else if (ev.type === 'closed') {
      li = h('li', {'class': 'sys', text: (ev.reason === 'timeout' ? 'Chat closed: the visitor had left'
        : 'Chat closed by ' + ev.by.name) + ' · ' + TL.clock(ev.ts)});
    } else if (ev.type === 'read') {
      if (ev.by.role === 'visitor') t.querySelectorAll('.msg.mine').forEach(function (m) {
        if (m.dataset.seq && TL.cmpSeq(m.dataset.seq, ev.up_to) <= 0) setState(m, 'read', 'read');
      });
      return;
    } else return;
    t.append(li); scrollDown();
  }

  /** Text and links: each http(s) URL a link to a new tab, built as nodes. Punctuation that
   * ends the sentence, and a ")" the URL did not open, are not part of it. The widget's
   * linked() (widget.js), copied: the widget is standalone and does not load common.js. */
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

  /** A sent message's state, read and what the coach made of it side by side:
   * "read · coach: applied", "read · sent anyway". */
  function setState(li, key, text) {
    var st = li.querySelector('.state');
    if (!st) return;
    li.dataset[key] = text;
    st.textContent = [li.dataset.read, li.dataset.coach].filter(Boolean).join(' · ');
  }

  function markRead(c) {
    var seq = c.lastOther;
    if (!seq || (c.lastRead && TL.cmpSeq(seq, c.lastRead) <= 0) || document.hidden || S.current !== c.id ||
        c.status === 'closed') return;
    c.lastRead = seq;
    S.socket.send({type: 'read', conversation: c.id, seq: seq});
  }
  document.addEventListener('visibilitychange', function () { var c = S.current && S.convs.get(S.current); if (c) markRead(c); });

  // ---------------------------------------------------------------- coaching cards
  function insert(text) {
    var ta = $('draft'), v = ta.value, s = ta.selectionStart, e = ta.selectionEnd;
    if (!v.trim()) { ta.value = text; s = 0; e = 0; v = ''; } else {
      var before = v.slice(0, s), after = v.slice(e);
      var sep = before && !/\s$/.test(before) ? ' ' : '';
      ta.value = before + sep + text + (after && !/^\s/.test(after) ? ' ' : '') + after;
      s = before.length + sep.length;
    }
    ta.focus();
    ta.setSelectionRange(s + text.length, s + text.length);
    onDraftInput();
  }

  /** What the coach said about how the chat ended, shown on the closed chat. */
  function renderAfterClose(c) {
    var box = $('after-close'), a = c.afterClose;
    box.hidden = !a;
    if (!a) { box.replaceChildren(); return; }
    box.replaceChildren.apply(box, [
      h('h3', {text: 'Next time: thank the customer before closing'}),
      h('p', {text: a.message}),
      (a.suggestions || []).length ? h('p', {}, ['For example: ', h('q', {text: a.suggestions[0]})]) : null
    ].filter(Boolean));
  }

  /** What the customer said around a cue (cue.said; the matched words alone when the
   * server does not say), the matched words emphasised. */
  function cueWords(cue) {
    var said = cue.said || cue.text || '', at = cue.text ? said.indexOf(cue.text) : -1;
    if (at < 0 || said === cue.text) return [said];
    return [said.slice(0, at), h('mark', {text: cue.text}), said.slice(at + cue.text.length)];
  }

  function dropCards(c, which) {
    var kept = c.assist.filter(function (a) { return !which(a); });
    if (kept.length === c.assist.length) return;
    c.assist = kept;
    if (S.current === c.id) renderAssist(c);
  }

  function urgency(a) {
    var i = URGENCY.indexOf(a.category);
    return i < 0 ? URGENCY.indexOf('hold_without_update') : i;
  }

  /** The chat's cards, most urgent first. One is open at a time, so that the cards take
   * little room: the most urgent, or the one the agent opened; the others show their title. */
  function renderAssist(c) {
    var cards = c.assist.slice().sort(function (a, b) { return urgency(a) - urgency(b); });
    var open = c.openCard === 'none' ? null : cards.indexOf(c.openCard) >= 0 ? c.openCard : cards[0];
    $('coaching').scrollTop = 0; // the refusal or the most urgent card in view
    $('assist').replaceChildren.apply($('assist'), cards.map(function (a, i) {
      var options = (a.type === 'script' ? a.scripts : a.suggestions || []).map(function (text) {
        return h('button', {type: 'button', 'class': 'insert', 'aria-label': 'Insert: ' + text,
          on: {click: function () { insert(text); dropCards(c, function (x) { return x === a; }); }}}, [text]);
      });
      var id = 'card-' + i;
      return h('div', {'class': 'card ' + a.type, 'data-category': a.category}, [
        h('h3', {}, [
          h('button', {type: 'button', 'class': 'toggle', 'aria-expanded': String(a === open), 'aria-controls': id,
            on: {click: function () { c.openCard = a === open ? 'none' : a; renderAssist(c); }}},
          [CATEGORY[a.category] || a.category]),
          a.waited_s ? h('span', {'class': 'tag', text: 'waiting ' + TL.duration(a.waited_s)}) : null,
          h('button', {type: 'button', 'aria-label': 'Dismiss', on: {click: function () {
            c.assist = c.assist.filter(function (x) { return x !== a; }); renderAssist(c);
          }}}, ['×'])]),
        h('div', {'class': 'body', id: id, hidden: a !== open}, [
          a.cue ? h('p', {'class': 'cue'}, ['“'].concat(cueWords(a.cue), ['”'])) : null,
          h('p', {text: a.message}),
          h('div', {'class': 'options'}, options)])]);
    }));
    fitPane();
    moreBelow($('coaching'));
  }

  // ---------------------------------------------------------------- drafts kept over a reload
  // What the agent typed and has not sent, per chat, in this tab's sessionStorage under
  // the agent's id: a reload puts it back in its chat. It goes when it is sent, when the
  // chat closes or leaves the agent, and at log-out. sessionStorage rather than
  // localStorage: each tab has its own reply boxes, and nothing typed outlives the tab.
  var DRAFTS_KEY = 'tactline:drafts:';

  function storedDrafts() {
    var d = null;
    try { d = JSON.parse(sessionStorage.getItem(DRAFTS_KEY + S.me.id)); } catch (e) { d = null; }
    return d && typeof d === 'object' ? d : {};
  }

  function saveDrafts(drafts) {
    try {
      if (Object.keys(drafts).length) sessionStorage.setItem(DRAFTS_KEY + S.me.id, JSON.stringify(drafts));
      else sessionStorage.removeItem(DRAFTS_KEY + S.me.id);
    } catch (e) { /* storage full or turned off: the draft stays in the page only */ }
  }

  /** Keep the chat's draft for after a reload, or forget it once empty or closed. */
  function keepDraft(c) {
    if (!S.me) return;
    var drafts = storedDrafts();
    if (c.draft && c.status !== 'closed') drafts[c.id] = c.draft; else delete drafts[c.id];
    saveDrafts(drafts);
  }

  function forgetDraft(id) {
    if (!S.me) return;
    var drafts = storedDrafts();
    if (!(id in drafts)) return;
    delete drafts[id];
    saveDrafts(drafts);
  }

  /** After a welcome: kept drafts go back into their chats (the coach checks each again
   * when its chat is shown); those of chats no longer here are dropped. */
  function restoreDrafts() {
    var drafts = storedDrafts(), kept = {};
    Object.keys(drafts).forEach(function (id) {
      var c = S.convs.get(id);
      if (!c || c.status === 'closed' || typeof drafts[id] !== 'string') return;
      kept[id] = drafts[id];
      if (!c.draft) { c.draft = drafts[id]; c.recheck = true; }
    });
    saveDrafts(kept);
  }

  /** Every agent's kept drafts in this tab, once it starts without a session: after a
   * log-out, in this tab or another. */
  function forgetAllDrafts() {
    try {
      for (var i = sessionStorage.length - 1; i >= 0; i--) {
        var k = sessionStorage.key(i);
        if (k && k.indexOf(DRAFTS_KEY) === 0) sessionStorage.removeItem(k);
      }
    } catch (e) { /* storage turned off: nothing was kept */ }
  }

  // ---------------------------------------------------------------- composer and flags
  function onDraftInput() {
    var c = S.current && S.convs.get(S.current);
    if (!c) return;
    c.draft = $('draft').value;
    keepDraft(c);
    $('refusal').hidden = true;
    // Flags whose text no longer sits at their offsets go at once; the coach answers soon.
    c.flags = c.flags.filter(function (f) { return c.draft.slice(f.s, f.e) === f.t; });
    renderFlags(c);
    clearTimeout(S.draftTimer);
    S.draftTimer = setTimeout(function () { sendDraft(c); }, DRAFT_DEBOUNCE_MS);
    var now = Date.now();
    if (c.draft && now - (c.typingAt || 0) > TYPING_EVERY_MS) {
      c.typingAt = now;
      S.socket.send({type: 'typing', conversation: c.id, active: true});
    }
  }

  function sendDraft(c) {
    if (S.coachOff || c.status === 'closed' || S.convs.get(c.id) !== c) return; // closed, or no longer ours
    var text = c.draft;
    if (text.length > MAX_TEXT) return;
    c.draftId += 1;
    c.draftTexts = {}; c.draftTexts[c.draftId] = text;
    S.draftSentAt = Date.now();
    S.socket.send({type: 'draft', conversation: c.id, draft_id: c.draftId, text: text});
  }

  function onCoach(f) {
    S.coachSeen = true;
    var c = S.convs.get(f.conversation);
    if (!c || f.draft_id < c.draftId) return; // a newer draft is on its way
    var text = c.draft;
    if (c.draftTexts[f.draft_id] !== text) return; // typed on since; the next answer will come
    c.flags = f.flags.map(function (fl) {
      var s = TL.utf16(text, fl.start), e = TL.utf16(text, fl.end);
      return {s: s, e: e, t: text.slice(s, e), flag: fl};
    }).filter(function (x) { return x.e > x.s; });
    if (S.current === c.id) renderFlags(c);
  }

  function renderFlags(c) {
    var text = $('draft').value, parts = [], at = 0;
    var flags = c.flags.slice().sort(function (a, b) { return a.s - b.s; });
    flags.forEach(function (x, i) {
      if (x.s < at) return; // overlapping: the list below still shows it
      parts.push(text.slice(at, x.s));
      parts.push(h('mark', {'class': 'sev-' + x.flag.severity, 'data-i': String(c.flags.indexOf(x))}, [text.slice(x.s, x.e)]));
      at = x.e;
    });
    parts.push(text.slice(at) + '\n');
    $('backdrop').replaceChildren.apply($('backdrop'), parts);
    syncScroll();
    $('flags').replaceChildren.apply($('flags'), c.flags.map(function (x, i) {
      return h('li', {'class': 'sev-' + x.flag.severity, 'data-rule': x.flag.rule}, [
        h('span', {'class': 'tag sev-' + x.flag.severity, text: TL.humanize(x.flag.category)}), ' ',
        h('q', {text: x.t}), ' ', h('span', {text: x.flag.message}),
        h('div', {'class': 'options'}, suggestionButtons(c, i))]);
    }));
    fitPane(); // their least height counts as taken
    moreBelow($('flags'));
    hidePopover();
  }

  function suggestionButtons(c, i) {
    var x = c.flags[i];
    return (x.flag.suggestions || []).map(function (s, k) {
      return h('button', {type: 'button', 'class': 'apply', 'aria-label': 'Replace “' + x.t + '” with “' + s + '”',
        on: {mousedown: function (e) { e.preventDefault(); }, click: function () { apply(c, i, k); }}}, [s]);
    });
  }

  function apply(c, i, k) {
    var x = c.flags[i], ta = $('draft'), text = ta.value;
    if (!x || text.slice(x.s, x.e) !== x.t) return;
    var s = x.flag.suggestions[k];
    // Keep the sentence's capital letter when the phrase opened it.
    if (x.s === 0 || /[.!?]\s*$/.test(text.slice(0, x.s))) s = s.charAt(0).toUpperCase() + s.slice(1);
    ta.value = text.slice(0, x.s) + s + text.slice(x.e);
    c.applied.push(x.flag.rule);
    // Every other flag was computed for the old text: a span that overlapped this one
    // now covers part of the suggestion. Drop them all and ask for fresh ones at once.
    c.flags = [];
    ta.focus();
    ta.setSelectionRange(x.s + s.length, x.s + s.length);
    c.draft = ta.value;
    keepDraft(c);
    renderFlags(c);
    clearTimeout(S.draftTimer);
    sendDraft(c);
  }

  function flagAt(c, pos) {
    for (var i = 0; i < c.flags.length; i++) if (pos >= c.flags[i].s && pos <= c.flags[i].e) return i;
    return -1;
  }

  function showPopover(c, i, rect) {
    var x = c.flags[i], pop = $('popover');
    if (!x) return hidePopover();
    if (pop.dataset.i === String(i) && !pop.hidden) return;
    pop.dataset.i = String(i);
    pop.replaceChildren(h('p', {}, [h('span', {'class': 'tag sev-' + x.flag.severity, text: TL.humanize(x.flag.category)}),
      ' ', x.flag.message]), h('div', {'class': 'options'}, suggestionButtons(c, i)));
    var host = $('conversation').getBoundingClientRect();
    pop.hidden = false;
    pop.style.left = Math.max(4, rect.left - host.left) + 'px';
    pop.style.top = (rect.top - host.top - pop.offsetHeight - 6) + 'px';
    $('draft').setAttribute('aria-describedby', 'popover flags-help');
  }

  function hidePopover() {
    var pop = $('popover');
    pop.hidden = true; pop.dataset.i = '';
    $('draft').setAttribute('aria-describedby', $('draft').disabled ? 'closed-note' : 'flags-help');
  }

  function markRect(i) {
    var m = $('backdrop').querySelector('mark[data-i="' + i + '"]');
    return m && m.getClientRects()[0];
  }

  function onCaret() {
    var c = S.current && S.convs.get(S.current);
    if (!c) return;
    var i = flagAt(c, $('draft').selectionStart), r = i >= 0 && markRect(i);
    if (r) showPopover(c, i, r); else hidePopover();
  }

  function onHover(e) {
    var c = S.current && S.convs.get(S.current);
    if (!c) return;
    var marks = $('backdrop').querySelectorAll('mark');
    for (var j = 0; j < marks.length; j++) {
      var rects = marks[j].getClientRects();
      for (var k = 0; k < rects.length; k++) {
        var r = rects[k];
        if (e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom) {
          return showPopover(c, +marks[j].dataset.i, rects[0]);
        }
      }
    }
  }

  function syncScroll() { $('backdrop').scrollTop = $('draft').scrollTop; }

  function sendMessage(override, again) {
    var c = S.current && S.convs.get(S.current);
    if (!c || c.status === 'closed') return;
    var text = again ? again.text : $('draft').value.trim();
    if (!text) return;
    var length = Array.from(text).length;
    if (length > MAX_TEXT) {
      toast('Your reply has ' + length + ' characters; the limit is ' + MAX_TEXT +
        '. Shorten it or send it in parts: nothing was sent.');
      return;
    }
    var id = again ? again.id : TL.uid('a');
    var frame = {type: 'message', id: id, conversation: c.id, text: text};
    if (S.coachSeen) frame.draft_id = again ? again.draft_id : c.draftId;
    if (override) { frame.override = true; c.overridden[id] = true; }
    var li = h('li', {'class': 'msg mine pending', 'data-id': id}, [
      h('span', {'class': 'from', text: S.me.name}), h('span', {'class': 'text', text: text}), h('span', {'class': 'state'})]);
    c.pending[id] = {li: li, text: text, draft_id: frame.draft_id};
    $('transcript').append(li); scrollDown();
    S.socket.send(frame, true);
    // A reply is the update a waiting customer needed; an introduction is for the first
    // reply (the coach reads only that one), so its card goes with the next.
    dropCards(c, function (a) { return a.category === 'hold_without_update' || a.category === 'missing_introduction'; });
    if (!again) {
      $('draft').value = ''; c.draft = ''; c.flags = []; c.applied = []; c.typingAt = 0;
      keepDraft(c);
      renderFlags(c);
      S.socket.send({type: 'typing', conversation: c.id, active: false});
    }
    $('refusal').hidden = true;
  }

  function showRefusal(f) {
    var c, p;
    S.convs.forEach(function (cv) { if (cv.pending[f.ref]) { c = cv; p = cv.pending[f.ref]; } });
    if (!c) return;
    if (p.li) p.li.remove();
    delete c.pending[f.ref];
    if (S.current !== c.id) select(c.id);
    var text = p.text;
    // Each suggestion as the sentence it becomes; a click puts it in place of the
    // sentence that asked, which no splice of the flagged words alone could mend.
    var options = refusalSuggestions(text, f).map(function (x) {
      return h('button', {type: 'button', 'class': 'use', lang: c.lang || null,
        'aria-label': x.old ? 'Replace “' + x.old + '” with “' + x.sentence + '”' : 'Use “' + x.sentence + '”',
        on: {click: function () {
          $('draft').value = x.old ? text.slice(0, x.a) + x.sentence + text.slice(x.b) : x.sentence;
          $('refusal').hidden = true; onDraftInput(); $('draft').focus();
        }}}, [x.sentence]);
    });
    // Why, in the coach's words for this text (in the chat's language); not the frame's
    // message, which is for developers ("resend with override"): what the agent can do
    // is said here, in the words of the buttons below.
    var why = (f.flags || []).map(function (fl) { return fl.message; }).filter(function (m, i, all) {
      return m && all.indexOf(m) === i;
    }).join(' ');
    var box = $('refusal');
    box.replaceChildren.apply(box, [
      h('p', {}, [h('strong', {text: 'Not sent: this asks for sensitive data in chat.'}),
        why ? ' ' : null, why ? h('span', {'class': 'why', lang: c.lang || null, text: why}) : null]),
      h('p', {}, ['Your message: ', h('q', {text: text})]),
      options.length ? h('p', {'class': 'suggested-label', text: 'Say it another way:'}) : null,
      options.length ? h('div', {'class': 'suggested', role: 'group', 'aria-label': 'Suggestions'}, options) : null,
      h('div', {'class': 'options'}, [
        h('button', {type: 'button', 'class': 'edit', on: {click: function () {
          $('draft').value = text; box.hidden = true; onDraftInput(); $('draft').focus(); }}}, ['Edit message']),
        h('button', {type: 'button', 'class': 'override', on: {click: function () {
          box.hidden = true; sendMessage(true, {id: f.ref, text: text, draft_id: p.draft_id}); }}}, ['Send anyway']),
        h('span', {'class': 'what-now', text: 'Send anyway sends it as it is; your supervisor will see that you did.'})])
    ].filter(Boolean));
    box.hidden = false;
    $('coaching').scrollTop = 0;
    fitPane();
    moreBelow($('coaching'));
    box.querySelector('button').focus();
  }

  /** The suggestions of a refusal as sentences, each with the sentence of the text it
   * replaces ({sentence, old, a, b}); without flags, the frame's own suggestions. */
  function refusalSuggestions(text, f) {
    var out = [], seen = {};
    function add(s, around) {
      s = s.trim();
      if (!s) return;
      var sentence = s.charAt(0).toUpperCase() + s.slice(1) + (/[.!?…]$/.test(s) ? '' : '.');
      if (seen[sentence]) return;
      seen[sentence] = true;
      out.push(around ? {sentence: sentence, old: text.slice(around[0], around[1]), a: around[0], b: around[1]}
        : {sentence: sentence, old: ''});
    }
    (f.flags || []).forEach(function (fl) {
      var around = sentenceAround(text, TL.utf16(text, fl.start), TL.utf16(text, fl.end));
      (fl.suggestions || []).forEach(function (s) { add(s, around); });
    });
    if (!out.length) (f.suggestions || []).forEach(function (s) { add(s, null); });
    return out;
  }

  /** [start, end) of the sentence holding text[a:b], its closing marks included. */
  function sentenceAround(text, a, b) {
    var start = 0, m, stop = /[.!?…]+\s+|\n+/g;
    while ((m = stop.exec(text)) && m.index < a) start = Math.min(a, m.index + m[0].length);
    var end = text.slice(b).search(/[.!?…]|\n/);
    end = end < 0 ? text.length : b + end;
    while (end < text.length && /[.!?…]/.test(text.charAt(end))) end++;
    return [start, end];
  }

  // ---------------------------------------------------------------- transfer and close
  function openTransfer() {
    var c = S.convs.get(S.current);
    if (!c) return;
    fillTransferAgents();
    fillTransferTeams();
    $('transfer-note').value = '';
    $('transfer-error').textContent = '';
    $('transfer').showModal();
  }

  function fillTransferAgents() {
    var sel = $('transfer-agent'), chosen = sel.value, c = S.convs.get(S.current);
    var lang = c && c.lang;
    function speaks(a) { return !lang || (a.languages || []).indexOf(lang) >= 0; }
    function full(a) { return a.open >= a.capacity; }
    // Those who speak the visitor's language first; the others say they don't. Those
    // who are full last, not to be chosen: the server would refuse (agent_unavailable).
    var online = S.agents.filter(function (a) { return a.id !== S.me.id && a.status === 'online'; });
    online = [function (a) { return !full(a) && speaks(a); }, function (a) { return !full(a) && !speaks(a); }, full]
      .reduce(function (out, which) { return out.concat(online.filter(which)); }, []);
    sel.replaceChildren.apply(sel, online.map(function (a) {
      var label = a.name + ' (' + a.open + '/' + a.capacity + ')';
      if (!speaks(a)) label += ' · does not speak ' + lang;
      if (full(a)) label += ' · full';
      return h('option', {value: a.id, text: label, disabled: full(a)});
    }));
    var free = Array.prototype.filter.call(sel.options, function (o) { return !o.disabled; });
    sel.value = free.some(function (o) { return o.value === chosen; }) ? chosen : free.length ? free[0].value : '';
    sel.disabled = !free.length;
    transferChoice();
  }

  /** Transfer is offered for a choice that can go, and the dialog says at once when no
   * agent can take the chat (rather than only once Transfer is pressed). */
  function transferChoice() {
    var none = $('transfer-agent').disabled, teams = $('transfer-team').options.length;
    $('transfer-none').hidden = !none;
    $('transfer-none').textContent = none ? 'No other agent is online with free capacity.' +
      (teams ? ' You can transfer to a team: the chat waits in its queue for the next free agent.' : '') : '';
    $('transfer-send').disabled = $('transfer-form').elements.to.value === 'team' ? !$('transfer-team').value : none;
  }

  /** The teams there are (those of agent accounts), from /api/agents: no team to mistype. */
  function fillTransferTeams() {
    var sel = $('transfer-team');
    TL.api('/api/agents').then(function (got) {
      var chosen = sel.value || 'support', teams = [];
      got.items.forEach(function (a) {
        if (a.role !== 'agent') return;
        (a.teams || []).forEach(function (t) { if (teams.indexOf(t) < 0) teams.push(t); });
      });
      teams.sort();
      sel.replaceChildren.apply(sel, teams.map(function (t) { return h('option', {value: t, text: t}); }));
      sel.value = teams.indexOf(chosen) >= 0 ? chosen : teams[0] || '';
      transferChoice();
    }, function (err) {
      $('transfer-error').textContent = 'Could not load the teams: ' + err.message;
    });
  }

  function submitTransfer(e) {
    if (e.submitter && e.submitter.value !== 'send') return;
    e.preventDefault();
    var c = S.convs.get(S.current), form = $('transfer-form');
    var frame = {type: 'transfer', conversation: c.id, id: TL.uid('tr')};
    if (form.elements.to.value === 'team') {
      if (!$('transfer-team').value) { $('transfer-error').textContent = 'There is no team to transfer to.'; return; }
      frame.to_team = $('transfer-team').value;
    } else {
      if (!$('transfer-agent').value) { $('transfer-error').textContent = 'No other agent is online with free capacity.'; return; }
      frame.to_agent = $('transfer-agent').value;
    }
    var note = $('transfer-note').value.trim();
    if (note) frame.note = note;
    S.socket.send(frame);
    $('transfer').close();
  }

  function confirmClose() {
    var c = S.convs.get(S.current);
    if (!c || c.status === 'closed') return;
    S.closing = c.id;
    $('close-title').textContent = 'Close the chat with ' + c.visitor.name + '?';
    $('close-confirm').showModal();
  }

  /** The dialog's Close button ends the chat; Cancel and Escape leave it as it was. */
  function submitClose(e) {
    var c = S.closing && S.convs.get(S.closing);
    if (!e.submitter || e.submitter.value !== 'close' || !c || c.status === 'closed') return;
    S.socket.send({type: 'close', conversation: c.id, id: TL.uid('cl')});
  }

  function toast(text) {
    $('toast').textContent = text;
    clearTimeout(S.toastOff);
    S.toastOff = setTimeout(function () { $('toast').textContent = ''; }, TOAST_MS);
  }

  // ---------------------------------------------------------------- start
  function start() {
    $('login').hidden = true; $('workspace').hidden = false; $('logout').hidden = false; $('controls').hidden = false;
    S.socket = new TL.Socket({
      onFrame: onFrame,
      onState: function (st, code) {
        $('conn').textContent = st === 'online' ? 'Connected' : st === 'connecting' ? 'Connecting…' : 'Reconnecting…';
        if (code === 4001) { TL.setSession(null); location.reload(); }
      },
      cursors: function () {
        var out = {};
        S.convs.forEach(function (c) { if (c.last && c.status !== 'closed') out[c.id] = c.last; });
        return out;
      }
    });
  }

  function status() {
    S.wantStatus = $('status').value;
    var frame = {type: 'status', status: $('status').value}, cap = capacity();
    if (cap !== null) frame.capacity = cap; // else the server keeps the one it has
    S.socket.send(frame);
  }

  /** The capacity in the field, or null when the server would not take it: then the
   * field says why, in words, rather than the server's error after the fact. */
  function capacity() {
    var field = $('capacity'), v = field.value.trim(), mine = myState();
    var ok = /^\d+$/.test(v) && +v >= CAPACITY_MIN && +v <= CAPACITY_MAX;
    field.setAttribute('aria-invalid', String(!ok));
    $('capacity-error').hidden = ok;
    $('capacity-error').textContent = ok ? '' : 'Not saved: capacity is a whole number of chats from ' +
      CAPACITY_MIN + ' to ' + CAPACITY_MAX + (mine && mine.capacity ? ' (it stays ' + mine.capacity + ')' : '') + '.';
    return ok ? +v : null;
  }

  $('capacity').min = String(CAPACITY_MIN); $('capacity').max = String(CAPACITY_MAX);
  $('capacity-limits').textContent = CAPACITY_MIN + '–' + CAPACITY_MAX + ' chats';
  $('status').addEventListener('change', status);
  $('capacity').addEventListener('change', function () { if (capacity() !== null) status(); });
  // A value corrected: the message goes as the agent types (it is saved on change).
  $('capacity').addEventListener('input', function () { if (!$('capacity-error').hidden) capacity(); });
  $('logout').addEventListener('click', function () {
    S.socket.send({type: 'status', status: 'offline'});
    S.socket.stop(); TL.logout();
  });
  var ta = $('draft');
  ta.addEventListener('input', onDraftInput);
  ta.addEventListener('scroll', syncScroll);
  // Escape's own keyup would open again the popover its keydown closed.
  ta.addEventListener('keyup', function (e) { if (e.key !== 'Escape') onCaret(); });
  // Where the caret was, for the popover to put it back (its buttons take the focus).
  ta.addEventListener('blur', function () { S.caret = [ta.selectionStart, ta.selectionEnd]; });
  $('popover').addEventListener('keydown', function (e) {
    if (e.key !== 'Escape') return;
    e.preventDefault();
    hidePopover();
    ta.focus();
    if (S.caret) ta.setSelectionRange(S.caret[0], S.caret[1]);
  });
  ta.addEventListener('click', onCaret);
  ta.addEventListener('mousemove', onHover);
  ta.addEventListener('keydown', function (e) {
    var c = S.convs.get(S.current);
    if (e.key === 'Enter' && e.altKey) {
      e.preventDefault();
      var i = c ? flagAt(c, ta.selectionStart) : -1;
      if (i < 0 && c && c.flags.length) i = 0;
      if (i >= 0 && c.flags[i].flag.suggestions.length) apply(c, i, 0);
    } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault(); sendMessage(false);
    } else if (e.key === 'Escape') hidePopover();
  });
  new ResizeObserver(function () { $('backdrop').style.height = ta.offsetHeight + 'px'; }).observe(ta);
  $('conversation').addEventListener('mouseleave', hidePopover);
  $('composer').addEventListener('submit', function (e) { e.preventDefault(); sendMessage(false); });
  $('transfer-open').addEventListener('click', openTransfer);
  $('hand-back').addEventListener('click', handBack);
  $('transfer-form').addEventListener('submit', submitTransfer);
  $('transfer-form').addEventListener('change', transferChoice);
  $('close-chat').addEventListener('click', confirmClose);
  $('close-form').addEventListener('submit', submitClose);
  $('close-confirm').addEventListener('close', function () { S.closing = null; });
  TL.loginForm($('login-form'), start);
  if (TL.session()) start();
  else { forgetAllDrafts(); $('login').hidden = false; $('login-form').elements.username.focus(); }
})();
