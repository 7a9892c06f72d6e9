/* Supervisor pages (/review): conversations with flags, transcripts with a "false alarm"
 * button, scorecards, rule quality, exports, and the live monitor with watch, whisper and
 * take-over. Data from the review API of docs/coaching.md. */
(function () {
  'use strict';
  var h = TL.h, $ = function (id) { return document.getElementById(id); };

  // Timeouts
  var LIVE_REFRESH_MS = 5000, TOAST_MS = 6000, RETRY_MS = 3000;
  var UNREACHABLE = 'Cannot reach the server; retrying…';

  // What the Category filter offers (coach/taxonomy.py): flags on the agent's messages,
  // whatever the agent did with them, and cues in the customer's.
  var FLAG_CATEGORIES = ['dont_know', 'not_my_job', 'policy_refusal', 'absolute_no', 'dismissive', 'blame',
    'overpromise', 'sensitive_data_request'];
  var CUE_CATEGORIES = ['frustration', 'repeat_contact', 'escalation_request'];
  var S = {socket: null, watching: null, liveTimer: null, watchLog: null, view: 0};

  function toast(text, keep) {
    $('toast').textContent = text;
    clearTimeout(S.toastOff);
    if (!keep) S.toastOff = setTimeout(function () { $('toast').textContent = ''; }, TOAST_MS);
  }

  /** TL.api, where the network failing reads as such ("Cannot reach the server;
   * retrying…", an ApiError with status 0) and the page loads again by itself until the
   * server answers; then the notice goes.
   *
   * A page's load (a GET that is not a download) answered after the supervisor went to
   * another page never settles: its callbacks append to page(), which by then shows the
   * other page (a slow Conversations list would land under Live). Actions (a POST, a
   * download) settle whatever page shows, so that their outcome is told. */
  function api(path, opts) {
    var load = !(opts && (opts.method || opts.raw)), view = S.view;
    function gone() { return load && S.view !== view; }
    return TL.api(path, opts).then(function (data) {
      if (S.unreachable) {
        S.unreachable = false;
        if ($('toast').textContent === UNREACHABLE) $('toast').textContent = '';
      }
      return gone() ? new Promise(function () {}) : data;
    }, function (err) {
      if (gone()) return new Promise(function () {});
      if (!TL.unreachable(err)) throw err;
      S.unreachable = true;
      toast(UNREACHABLE, true);
      // What failed to load loads again; the live page does so every few seconds anyway.
      var here = (location.hash || '').slice(1).split('?')[0];
      if (load && here.indexOf('/live') !== 0 && !S.retry) {
        S.retry = setTimeout(function () { S.retry = null; route(); }, RETRY_MS);
      }
      throw new TL.ApiError(0, 'unreachable', UNREACHABLE);
    });
  }

  function page() { return $('page'); }
  function label(text, control) { return h('label', {}, [text, control]); }
  /** A moment from the review API ("5 Dec 2026 14:20"); seconds are read as such. */
  function dt(ms) { return TL.when(typeof ms === 'number' && ms < 1e12 ? ms * 1000 : ms); }
  function tag(text, sev) { return h('span', {'class': 'tag' + (sev ? ' sev-' + sev : ''), text: text}); }
  var humanize = TL.humanize;
  /** A person's display name, with the account id as a tooltip where the name differs. */
  function person(name, id) {
    return h('td', Object.assign({text: name || id || ''}, id && name && name !== id ? {title: id} : {}));
  }
  /** Everyone who held a chat, in the order they held it, the last holder last ("Jelena →
   * Ana → Jelena" after a hand-back), from `agents` ([{id, name}]); the agent holding it
   * when the server does not list them. */
  function agentsText(c) {
    var all = c.agents || [];
    return all.length ? all.map(function (a) { return a.name || a.id; }).join(' → ') : c.agent_name || c.agent || '';
  }
  function agentsCell(c) {
    var all = c.agents || [];
    if (all.length < 2) return person(c.agent_name || (all[0] && all[0].name), c.agent || (all[0] && all[0].id));
    return h('td', {text: agentsText(c), title: all.map(function (a) { return a.id; }).join(' → ')});
  }
  function items(data) { return Array.isArray(data) ? data : (data && (data.items || data.agents)) || []; }

  function unavailable(err) {
    return err instanceof TL.ApiError && (err.status === 404 || err.status === 405 || err.status === 501);
  }

  function failed(err) {
    page().append(h('p', {'class': 'error', role: 'alert',
      text: 'Could not load: ' + (err && err.message ? err.message : String(err))}));
  }
  /** A period page's failure: a 400 is the dates the supervisor chose (the server says
   * both as it read them), so it asks them to fix those, not that loading failed. */
  function periodFailed(err) {
    if (!(err instanceof TL.ApiError && err.status === 400)) return failed(err);
    page().append(h('p', {'class': 'error', role: 'alert', text: 'Check the period: ' + err.message + '.'}));
  }

  // ---------------------------------------------------------------- exports
  function download(path, name) {
    api(path, {raw: true}).then(function (r) { return r.blob(); }).then(function (blob) {
      var a = h('a', {href: URL.createObjectURL(blob), download: name});
      document.body.append(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
    }, function (err) { toast('Export failed: ' + err.message); });
  }

  function exportButtons(base, name, query) {
    return h('span', {'class': 'exports'}, ['Export: '].concat(['json', 'csv', 'txt'].map(function (fmt) {
      return h('button', {type: 'button', on: {click: function () {
        download(base + '?format=' + fmt + (query ? '&' + query : ''), name + '.' + fmt);
      }}}, [fmt.toUpperCase()]);
    })));
  }

  // ---------------------------------------------------------------- conversations
  function filterForm(params) {
    function input(name, type, extra) {
      var el = h('input', Object.assign({name: name, type: type || 'text', value: params.get(name) || ''}, extra || {}));
      if (type === 'checkbox') { el.value = 'true'; el.checked = params.get(name) === 'true'; }
      return el;
    }
    function select(name, options) {
      return h('select', {name: name}, [h('option', {value: '', text: 'any'})].concat(options.map(function (o) {
        return h('option', {value: o, text: humanize(o), selected: params.get(name) === o});
      })));
    }
    var form = h('form', {'class': 'filters', 'aria-label': 'Filters', on: {submit: function (e) {
      e.preventDefault();
      var q = new URLSearchParams();
      new FormData(form).forEach(function (v, k) { if (v) q.set(k, v); });
      location.hash = '#/conversations?' + q.toString();
    }}}, [
      label('From', input('from', 'date')), label('To', input('to', 'date')),
      label('Agent', agentSelect(params)), label('Category', categorySelect(params)),
      label('Severity', select('severity', ['info', 'warning', 'alert'])),
      label('Language', select('lang', ['en', 'sr', 'hr', 'sl'])), label('Site', input('site', 'text', {size: 8})),
      label('CSAT', select('csat', ['1', '2', '3', '4', '5'])),
      label('Only with flags', input('has_flags', 'checkbox')),
      label('Suggestion ignored', input('flag_ignored', 'checkbox')),
      h('button', {type: 'submit'}, ['Apply'])]);
    return form;
  }

  /** The Category filter: the agents' flags and the customers' cues, in two groups. */
  function categorySelect(params) {
    var current = params.get('category') || '';
    function option(o) { return h('option', {value: o, text: humanize(o), selected: current === o}); }
    return h('select', {name: 'category'}, [h('option', {value: '', text: 'any'}),
      h('optgroup', {label: "Flags on the agent's messages"}, FLAG_CATEGORIES.map(option)),
      h('optgroup', {label: "Cues in the customer's messages"}, CUE_CATEGORIES.map(option))]);
  }

  /** The Agent filter: display names, filled from /api/agents, with the account id as the
   * value the review API filters by (and as the tooltip). Supervisors are listed apart: they
   * are a chat's agent only after taking it over. An id that names no account any more stays
   * selectable as itself. */
  function agentSelect(params) {
    var current = params.get('agent') || '';
    function option(value, text, title) {
      return h('option', {value: value, text: text, title: title, selected: value === current});
    }
    var sel = h('select', {name: 'agent'}, [option('', 'any')].concat(current ? [option(current, current)] : []));
    api('/api/agents').then(function (data) {
      var people = items(data).slice().sort(function (x, y) { return x.name.localeCompare(y.name) || x.id.localeCompare(y.id); });
      var count = {};
      people.forEach(function (p) { count[p.name] = (count[p.name] || 0) + 1; });
      function entry(p) { return option(p.id, count[p.name] > 1 ? p.name + ' (' + p.id + ')' : p.name, p.id); }
      var kids = [option('', 'any')].concat(people.filter(function (p) { return p.role !== 'supervisor'; }).map(entry));
      var sups = people.filter(function (p) { return p.role === 'supervisor'; });
      if (sups.length) kids.push(h('optgroup', {label: 'Supervisors'}, sups.map(entry)));
      if (current && !people.some(function (p) { return p.id === current; })) kids.push(option(current, current));
      var picked = sel.value;  // what was chosen while the list loaded
      sel.replaceChildren.apply(sel, kids);
      sel.value = picked;
    }, function (err) { if (err.status !== 0) toast('Could not load the agents: ' + err.message); });
    return sel;
  }

  function conversations(params) {
    var q = params.toString();
    page().replaceChildren(h('h1', {text: 'Conversations'}), filterForm(params),
      h('p', {}, [exportButtons('/api/review/export', 'conversations', q)]));
    api('/api/review/conversations' + (q ? '?' + q : '')).then(function (data) {
      var rows = items(data).map(function (c) {
        var f = c.flags || {};
        return h('tr', {'class': 'clickable', tabindex: '0', 'data-conv': c.conversation, on: {
          click: function () { location.hash = '#/conversation/' + encodeURIComponent(c.conversation); },
          keydown: function (e) { if (e.key === 'Enter') location.hash = '#/conversation/' + encodeURIComponent(c.conversation); }}}, [
          conversationCell(c), agentsCell(c), h('td', {text: c.lang || ''}), h('td', {text: c.site || ''}),
          h('td', {text: dt(c.started_at)}), h('td', {text: c.csat == null ? '' : String(c.csat)}),
          h('td', {'class': 'flags'}, [flagCount(f.total != null ? f.total : f.count, f.open != null ? f.open : f.count),
            ' ', f.worst ? tag(f.worst, f.worst) : null]),
          h('td', {'class': 'categories', text: (f.categories || []).map(humanize).concat((c.cues || []).map(function (k) {
            return humanize(k) + ' (customer)'; })).join(', ')})]);
      });
      page().append(table(['Conversation', {text: 'Agent', title: 'Everyone who had the chat or wrote in it, in the order they joined'}, 'Lang', 'Site', 'Started', 'CSAT', {text: 'Flags', title:
        "Every flag the coach raised on the agents' messages in the conversation, applied or not (as its transcript " +
        'lists them and the scorecards count them), and those still to review: neither applied nor marked'},
        {text: 'Categories', title: "The categories of all the flags, whatever the agent did with them, then those of the customer's cues"}], rows));
      var total = data.total || 0, per = data.per_page || rows.length, at = data.page || 1;
      if (total > per) page().append(pager(params, at, Math.ceil(total / per)));
    }, function (err) {
      if (!unavailable(err)) return failed(err);
      // A server without the review API still lists and shows transcripts.
      page().append(h('p', {'class': 'note', text: 'Coaching review is not available on this server; showing conversations without flags.'}));
      api('/api/conversations?limit=100').then(function (data) {
        page().append(table(['Conversation', 'Status', 'Agent', 'Lang', 'Visitor', 'Preview'], items(data).map(function (c) {
          return h('tr', {'class': 'clickable', 'data-conv': c.conversation, on: {click: function () {
            location.hash = '#/conversation/' + encodeURIComponent(c.conversation); }}}, [
            h('td', {}, [h('a', {href: '#/conversation/' + encodeURIComponent(c.conversation), text: c.conversation})]),
            h('td', {text: c.status}), h('td', {text: c.agent || ''}), h('td', {text: c.lang}),
            h('td', {text: (c.visitor && c.visitor.name) || ''}), h('td', {text: c.preview || ''})]);
        })));
      }, failed);
    });
  }

  /** A chat as people tell it apart: the visitor's name and the start of what they first
   * wrote, linking to the transcript; the id small underneath, for those who look it up. */
  function conversationCell(c) {
    var href = '#/conversation/' + encodeURIComponent(c.conversation);
    return h('td', {'class': 'conv'}, [
      h('a', {href: href, text: visitorOf(c) || c.conversation}),
      c.preview ? h('span', {'class': 'preview', text: c.preview}) : null,
      h('span', {'class': 'conv-id', text: c.conversation})]);
  }

  /** "4 flags, 2 to review": all of a conversation's flags (as its transcript lists them)
   * and those neither applied by the agent nor marked by a supervisor. */
  function flagCount(total, open) {
    if (!total) return 'none';
    return total + (total === 1 ? ' flag' : ' flags') + ', ' + (open || 0) + ' to review';
  }

  function isOpen(f) { return f.outcome !== 'applied' && !(f.review && (f.review.status || f.review)); }

  /** A table; a heading is its text, or {text, title} where the title says what it counts. */
  function table(heads, rows) {
    return h('table', {'class': 'grid'}, [h('thead', {}, [h('tr', {}, heads.map(function (t) {
      return h('th', {scope: 'col', text: t.text || t, title: t.title}); }))]),
      h('tbody', {}, rows.length ? rows : [h('tr', {}, [h('td', {colspan: String(heads.length), 'class': 'note', text: 'Nothing found.'})])])]);
  }

  function pager(params, at, pages) {
    function go(n) { var q = new URLSearchParams(params); q.set('page', String(n)); return '#/conversations?' + q; }
    return h('p', {}, [at > 1 ? h('a', {href: go(at - 1), text: '← Previous'}) : null,
      ' Page ' + at + ' of ' + pages + ' ', at < pages ? h('a', {href: go(at + 1), text: 'Next →'}) : null]);
  }

  // ---------------------------------------------------------------- one transcript
  /** The text with spans [{start, end, cls, title}] (code points) as <mark>s; the rest as text. */
  function marked(text, spans) {
    var chars = Array.from(text), out = [], at = 0;
    spans.slice().sort(function (a, b) { return a.start - b.start; }).forEach(function (s) {
      if (s.start < at || s.end > chars.length) return;
      out.push(chars.slice(at, s.start).join(''));
      out.push(h('mark', {'class': s.cls, title: s.title, 'data-flag': s.id}, [chars.slice(s.start, s.end).join('')]));
      at = s.end;
    });
    out.push(chars.slice(at).join(''));
    return out;
  }

  function transcript(id) {
    page().replaceChildren(h('p', {'class': 'note', text: 'Loading…'}));
    var base = '/api/review/conversations/' + encodeURIComponent(id);
    api(base).then(function (t) { showTranscript(id, t, true); }, function (err) {
      if (!unavailable(err)) { page().replaceChildren(); return failed(err); }
      api('/api/conversations/' + encodeURIComponent(id)).then(function (t) {
        var c = t.conversation;
        showTranscript(id, {conversation: id, agent: c.agent, visitor: c.visitor, lang: c.lang, site: c.site,
          events: t.events, flags: [], cues: []}, false);
      }, function (e) { page().replaceChildren(); failed(e); });
    });
  }

  /** Whether a flag's or cue's span is in `text`: an applied flag's span is in the draft the
   * agent replaced, so it is listed with its outcome but not highlighted in what was sent. */
  function inText(text, f) {
    if (f.outcome === 'applied') return false;
    return !f.text || Array.from(text).slice(f.start, f.end).join('') === f.text;
  }

  function showTranscript(id, t, coached) {
    var flags = t.flags || [], cues = t.cues || [];
    var visitor = t.visitor && (t.visitor.name || t.visitor.id) || 'Visitor';
    var log = h('ol', {'class': 'transcript', 'aria-label': 'Transcript'});
    // Whispers go between the events by time, each before the first event sent after it.
    var whispers = (t.whispers || []).slice(), shownDay = null;
    // Each line shows its time; the day goes over the first line of each day.
    function dayOf(ts) {
      var d = ts ? TL.day(new Date(ts)) : null;
      if (d && d !== shownDay) log.append(h('li', {'class': 'sys day', text: d}));
      if (d) shownDay = d;
    }
    function whispersUpTo(ts) {
      while (whispers.length && (ts == null || (whispers[0].ts || 0) < ts)) {
        dayOf(whispers[0].ts);
        log.append(whisperItem(whispers.shift()));
      }
    }
    (t.events || []).forEach(function (ev) {
      whispersUpTo(ev.ts || 0);
      dayOf(ev.ts);
      if (ev.type === 'message') {
        var spans = flags.filter(function (f) { return f.seq === ev.seq && inText(ev.text, f); }).map(function (f) {
          return {start: f.start, end: f.end, id: f.id, cls: 'sev-' + f.severity, title: humanize(f.category) + ': ' + f.message};
        }).concat(cues.filter(function (c) { return c.seq === ev.seq && inText(ev.text, c); }).map(function (c) {
          return {start: c.start, end: c.end, cls: 'cue', title: humanize(c.category) + ' (customer)'};
        }));
        log.append(messageItem(ev, marked(ev.text, spans)));
      } else {
        var said = eventText(ev);
        if (said) log.append(h('li', {'class': 'sys', text: said + (ev.type === 'transferred' && ev.note ? ' · note: ' + ev.note : '')}));
      }
    });
    whispersUpTo(null);
    var heading = h('h2');
    function count() {
      heading.textContent = 'Flags (' + flags.length + (flags.length ? ', ' + flags.filter(isOpen).length + ' to review' : '') + ')';
    }
    count();
    var side = h('section', {'aria-label': 'Flags'}, [heading,
      h('ul', {'class': 'flag-list'}, flags.map(function (f) { return flagItem(f, count); }))]);
    if (!coached) side.append(h('p', {'class': 'note', text: 'Coaching data is not available on this server.'}));
    // Scripts offered to the agent carry their texts in `scripts`; nudges have a `message`.
    (t.scripts || []).concat(t.nudges || []).forEach(function (a) {
      var text = (a.scripts || []).join(' / ') || a.message;
      if (text) side.append(h('p', {'class': 'note', text: humanize(a.category) + ': ' + text}));
    });
    page().replaceChildren(
      h('p', {}, [h('a', {href: '#/conversations', text: '← Conversations'})]),
      h('h1', {text: 'Conversation ' + id}),
      h('p', {}, [((t.agents || []).length > 1 ? 'Agents: ' : 'Agent: ') + (agentsText(t) || '—') + ' · Visitor: ' + visitor + ' · ' + (t.lang || '') +
        (t.site ? ' · site ' + t.site : '') + (t.csat != null ? ' · CSAT ' + t.csat : ''), ' ',
        coached ? exportButtons('/api/review/conversations/' + encodeURIComponent(id) + '/export', id) : null]),
      h('div', {'class': 'transcript-view'}, [log, side]));
    if (t.csat_comment) {
      page().lastChild.before(h('p', {'class': 'csat-comment'}, ["The customer's comment with the rating: ", h('q', {text: t.csat_comment})]));
    }
  }

  /** A message as a transcript shows it: the speaker's name and the time over the text, the
   * visitor's on the left and the agent's (or a supervisor's) on the right. */
  function messageItem(ev, text) {
    return h('li', {'class': 'msg' + (ev.from.role !== 'visitor' ? ' mine' : ''), 'data-seq': ev.seq}, [
      h('span', {'class': 'from'}, [ev.from.name || ev.from.role, ev.ts ? h('span', {'class': 'time', text: TL.clock(ev.ts)}) : null]),
      h('span', {'class': 'text'}, text)]);
  }

  /** A supervisor's whisper, as the watched chat shows one: private to the agent. */
  function whisperItem(w) {
    var who = (w.from && (w.from.name || w.from.id)) || 'A supervisor';
    return h('li', {'class': 'whisper'}, [h('strong', {text: who + ' whispered to the agent'}),
      (w.ts ? ' · ' + TL.clock(w.ts) : '') + ' · not shown to the visitor\n' + (w.text || '')]);
  }

  function flagItem(f, changed) {
    var review = f.review && (f.review.status || f.review);
    var li = h('li', {'class': 'sev-' + f.severity + (review === 'false_alarm' ? ' false-alarm' : ''), 'data-flag': f.id}, [
      h('p', {}, [tag(humanize(f.category), f.severity), ' ', h('q', {text: f.text})]),
      h('p', {text: f.message}),
      (f.suggestions || []).length ? h('p', {}, ['Suggested: ', h('em', {text: f.suggestions.join(' / ')})]) : null,
      h('p', {}, ['Sent by ', h('strong', {'class': 'sender', text: f.agent_name || f.agent || 'unknown'}), ': ',
        h('strong', {'class': 'outcome', text: humanize(f.outcome || 'unknown')}), f.override ? ' · sent anyway (override)' : '']),
      h('p', {'class': 'review-status', text: review ? 'Review: ' + humanize(review) : ''})]);
    function mark(status) {
      api('/api/review/flags/' + encodeURIComponent(f.id), {method: 'POST', body: {status: status, note: ''}})
        .then(function () {
          li.querySelector('.review-status').textContent = 'Review: ' + humanize(status);
          li.classList.toggle('false-alarm', status === 'false_alarm');
          f.review = {status: status};
          changed();
        }, function (err) { toast('Could not save: ' + err.message); });
    }
    li.append(h('div', {'class': 'options'}, [
      h('button', {type: 'button', on: {click: function () { mark('false_alarm'); }}}, ['False alarm']),
      h('button', {type: 'button', on: {click: function () { mark('reviewed'); }}}, ['Reviewed'])]));
    return li;
  }

  // ---------------------------------------------------------------- scorecards
  function scorecards(params) {
    var q = params.toString();
    page().replaceChildren(h('h1', {text: 'Scorecards'}),
      periodForm('#/scorecards', params, [label('Agent', agentSelect(params))]));
    api('/api/review/scorecards' + (q ? '?' + q : '')).then(function (data) {
      var cards = items(data).map(scorecard);
      page().append(cards.length ? h('div', {'class': 'cards'}, cards) : h('p', {'class': 'note', text: 'No data for this period.'}));
    }, periodFailed);
  }

  function pct(v) { return v == null ? '—' : Math.round(v * 100) + '%'; }
  function num(v, unit) { return v == null ? '—' : (Math.round(v * 10) / 10) + (unit || ''); }

  // What a scorecard counts, said where it is shown (a heading's or figure's tooltip).
  var FLAGS_COUNTED = "every flag the coach raised on the agent's sent messages, whatever the agent did with it " +
    '(applied, ignored, overridden or not seen): the flags the conversation list and the transcripts count';
  var OUTCOME_WORDS = [
    ['applied', 'applied', 'The agent took the suggestion: the flagged phrase was in the draft, not in what was sent'],
    ['ignored', 'ignored', 'The agent saw the flag while typing and sent the phrase anyway'],
    ['overridden', 'overridden', 'The coach refused the message (a request for card data) and the agent sent it anyway'],
    ['not_seen', 'not seen', 'The message was sent before the flag appeared']];

  function scorecard(a) {
    var days = a.days || [], labels = days.map(function (d) { return d.date || d.day || ''; });
    var cats = {};
    days.forEach(function (d) { Object.keys(d.flags_per_100 || {}).forEach(function (k) { cats[k] = 1; }); });
    Object.keys(a.flags_per_100 || {}).forEach(function (k) { cats[k] = 1; });
    var flagSeries = Object.keys(cats).map(function (k) {
      // A day without messages is a gap (null); a day with messages and none of these flags is 0.
      return {name: humanize(k), values: days.map(function (d) {
        if (!d.flags_per_100 || d.messages === 0) return null;
        var v = d.flags_per_100[k]; return v == null ? 0 : v; })};
    });
    function series(name, key, scale) {
      return [{name: name, values: days.map(function (d) { return d[key] == null ? null : d[key] * (scale || 1); })}];
    }
    var raised = a.flags_raised || 0, outcomes = a.outcomes || {}, shares = a.outcome_shares || {};
    var did = h('p', {'class': 'outcomes', title: 'Each flag raised has one outcome; the shares add up to 100%'},
      [raised ? 'What the agent did with the ' + raised + (raised === 1 ? ' flag' : ' flags') + ' raised: ' : 'No flags raised.']);
    if (raised) {
      OUTCOME_WORDS.forEach(function (o, i) {
        did.append(h('span', {'class': 'outcome', 'data-outcome': o[0], title: o[2]},
          [o[1] + ' ' + pct(shares[o[0]] || 0) + ' (' + (outcomes[o[0]] || 0) + ')']), i < OUTCOME_WORDS.length - 1 ? ' · ' : '');
      });
    }
    return h('article', {'class': 'scorecard', 'data-agent': a.agent}, [
      h('h2', {text: a.name || a.agent, title: a.name && a.name !== a.agent ? a.agent : null}),
      h('div', {'class': 'figures'}, [
        figure(String(a.messages || 0), 'messages sent', 'Messages the agent sent in the period'),
        figure(num(a.flags_per_100_total), 'flags per 100 messages', 'Per 100 messages sent, ' + FLAGS_COUNTED),
        figure(pct(a.applied_share), 'suggestions applied', 'Of the flags raised, the share whose suggestion the agent applied'),
        figure(num(a.first_response_s, ' s'), 'first response', "Average time from the chat starting to the agent's first message"),
        figure(a.handling_s == null ? '—' : num(a.handling_s / 60, ' min'), 'handling time', 'Average time from the chat starting to its close'),
        figure(num(a.csat), 'CSAT (1–5)', 'Average rating visitors gave after the chat')]),
      did,
      h('h3', {text: 'Flags per 100 messages, by category', title: 'Per 100 messages sent each day, ' + FLAGS_COUNTED}),
      TLCharts.line(labels, flagSeries, {title: 'Flags per 100 messages', empty: 'No flags in this period'}),
      TLCharts.legend(flagSeries),
      h('h3', {text: 'Suggestions applied', title: 'Each day, the share of the flags raised whose suggestion the agent applied'}),
      TLCharts.line(labels, series('applied', 'applied_share', 100), {title: 'Suggestions applied', unit: '%', height: 120, max: 100}),
      h('h3', {text: 'First response time'}),
      TLCharts.line(labels, series('first response', 'first_response_s'), {title: 'First response time', unit: ' s', height: 120, integer: true}),
      h('h3', {text: 'CSAT'}), TLCharts.line(labels, series('CSAT', 'csat'), {title: 'CSAT', height: 120, max: 5, integer: true})]);
  }

  function figure(value, caption, title) {
    return h('div', {title: title}, [h('b', {text: value}), h('span', {text: caption})]);
  }

  // ---------------------------------------------------------------- rule quality
  var RULE_HEADS = [{text: 'Rule', title: 'The rule id: language, category, rule'},
    {text: 'Fires', title: "Flags the rule raised on agents' sent messages, whatever the agent did with " +
      'them (applied, ignored, overridden or not seen): the flags the transcripts list'},
    {text: 'False alarms', title: 'Of those flags, the ones a supervisor marked False alarm'},
    {text: 'Rate', title: 'False alarms ÷ fires'}];

  /** A From/To form that puts its dates in the address of `route` (#/scorecards, #/rules). */
  function periodForm(route, params, extra) {
    var form = h('form', {'class': 'filters', 'aria-label': 'Period', on: {submit: function (e) {
      e.preventDefault();
      var n = new URLSearchParams();
      new FormData(form).forEach(function (v, k) { if (v) n.set(k, v); });
      location.hash = route + (n.toString() ? '?' + n : '');
    }}}, [label('From', h('input', {type: 'date', name: 'from', value: params.get('from') || ''})),
      label('To', h('input', {type: 'date', name: 'to', value: params.get('to') || ''}))]
      .concat(extra || [], [h('button', {type: 'submit'}, ['Apply'])]));
    return form;
  }

  function rules(params) {
    var q = params.toString(), period = params.get('from') || params.get('to');
    page().replaceChildren(h('h1', {text: 'Rule quality'}), periodForm('#/rules', params),
      h('p', {'class': 'note', text: 'Every rule that raised a flag ' + (period ? 'in the period' : 'so far (all time)') +
        ', the most annoying first: the highest share of false alarms, then the most false alarms, then the most flags. ' +
        'Fires counts every flag the rule raised on a sent message, applied or not.'}));
    api('/api/review/rule-quality' + (q ? '?' + q : '')).then(function (data) {
      page().append(table(RULE_HEADS, items(data).map(function (r) {
        return h('tr', {'data-rule': r.rule}, [h('td', {}, [h('code', {text: r.rule})]), h('td', {text: String(r.fires)}),
          h('td', {text: String(r.false_alarms)}), h('td', {text: pct(r.rate)})]);
      })));
    }, periodFailed);
  }

  // ---------------------------------------------------------------- live monitor
  var STATUS_WORDS = {online: 'Online', away: 'Away', offline: 'Offline'};

  /** An agent's status in words: a disconnected agent's chats are held for them until the
   * reconnect grace period ends, then go back to the queue and the agent is offline. */
  function statusText(status, heldUntil) {
    if (status === 'disconnected') {
      return 'Disconnected — chats held until ' + (heldUntil ? TL.clock(heldUntil) : 'they reconnect');
    }
    return STATUS_WORDS[status] || status || '';
  }

  function agentOf(c) { return c.agent_name || (c.agent && (c.agent.name || c.agent)) || ''; }
  function visitorOf(c) { return (c.visitor && (c.visitor.name || c.visitor.id || c.visitor)) || ''; }

  /** A live row's language; for a chat waiting for an agent, whether it is a left message
   * and, when no online agent speaks its language, a warning the supervisor can act on. */
  function langCell(c) {
    var lang = c.lang || '';
    return h('td', {'class': 'lang'}, [lang,
      c.left_message ? h('span', {'class': 'note left-message', text: ' · Left message'}) : null,
      c.no_agent_for_lang ? h('strong', {'class': 'no-agent', role: 'status',
        text: ' · No agent online speaks ' + lang}) : null]);
  }

  /** What the customer said around a cue: their message (shortened by the server), or
   * the matched words alone when the message is not known. */
  function cueWords(cue) {
    var words = cue.said || cue.text;
    return words ? ': “' + words + '”' : '';
  }

  function live() {
    var body = h('tbody'), agents = h('tbody');
    var panel = h('section', {'class': 'live-watch', hidden: true, 'aria-live': 'polite'});
    page().replaceChildren(h('h1', {text: 'Live'}), h('table', {'class': 'grid', 'aria-label': 'Conversations'}, [
      h('thead', {}, [h('tr', {}, ['Conversation', 'Agent', 'Language', 'Waiting', 'Last cue', 'Last flag', ''].map(function (t) {
        return h('th', {scope: 'col', text: t}); }))]), body]), panel,
      h('h2', {text: 'Agents'}), h('table', {'class': 'grid', 'aria-label': 'Agents'}, [
        h('thead', {}, [h('tr', {}, ['Agent', 'Status', 'Chats', 'Languages'].map(function (t) {
          return h('th', {scope: 'col', text: t}); }))]), agents]));
    function refresh() {
      if (location.hash.indexOf('#/live') !== 0) return;
      api('/api/review/live').then(function (data) {
        body.replaceChildren.apply(body, items(data).map(function (c) {
          var agent = agentOf(c);
          var cue = c.last_cue, flag = c.last_flag;
          var gone = c.agent_status === 'disconnected';
          return h('tr', {'data-conv': c.conversation}, [conversationCell(c),
            h('td', {'class': 'agent'}, [agent || '—', gone ? h('span', {'class': 'note agent-status', text: ' · ' + statusText(c.agent_status, c.held_until)}) : null]),
            langCell(c),
            h('td', {'class': 'waiting', text: c.waiting_s != null ? TL.duration(c.waiting_s) : 'answered'}),
            h('td', {'class': 'cue', text: cue ? humanize(cue.category) + cueWords(cue) : ''}),
            h('td', {'class': 'flag', text: flag ? humanize(flag.category) + (flag.text ? ': “' + flag.text + '”' : '') +
              (flag.outcome === 'applied' ? ' (suggestion applied)' : '') : ''}),
            h('td', {}, [h('button', {type: 'button', on: {click: function () { watch(c, panel); }}}, ['Watch'])])]);
        }));
      }, function (err) {
        // The network failing (status 0) is a blip: the rows stay as they were, api() says
        // it cannot reach the server, and the next refresh brings them up to date.
        if (err.status === 0) return;
        body.replaceChildren();
        if (!unavailable(err)) toast(err.message); else body.append(
          h('tr', {}, [h('td', {colspan: '7', 'class': 'note', text: 'The live monitor is not available on this server.'})]));
      });
      api('/api/agents').then(function (data) {
        // Agents, and anyone else holding chats (a supervisor who took one over).
        var shown = items(data).filter(function (a) { return a.role !== 'supervisor' || a.open; });
        agents.replaceChildren.apply(agents, shown.length ? shown.map(function (a) {
          // A supervisor holds chats they took over, whatever their agent status: they take
          // none from the queue, so neither a status nor a capacity says anything of them.
          var sup = a.role === 'supervisor';
          return h('tr', {'data-agent': a.id}, [person(a.name, a.id),
            h('td', {'class': 'status status-' + (sup ? 'supervisor' : a.status), text: sup ? 'Supervisor' : statusText(a.status, a.held_until)}),
            h('td', {text: sup ? a.open + (a.open === 1 ? ' chat' : ' chats') + ' taken over' : a.open + ' of ' + a.capacity}),
            h('td', {text: (a.languages || []).join(', ')})]);
        }) : [h('tr', {}, [h('td', {colspan: '4', 'class': 'note', text: 'No agents.'})])]);
      }, function (err) { if (!unavailable(err) && err.status !== 0) toast(err.message); });
    }
    refresh();
    clearInterval(S.liveTimer);
    S.liveTimer = setInterval(refresh, LIVE_REFRESH_MS);
  }

  /** A conversation event other than a message, in words; null for one that says nothing
   * to a reader (receipts, typing). */
  function eventText(ev) {
    if (ev.type === 'closed') return ev.reason === 'timeout' ? 'Closed: the visitor had left' : 'Closed' + (ev.by ? ' by ' + ev.by.name : '');
    if (ev.type === 'assigned') return ev.agent ? ev.agent.name + ' joined' : null;
    if (ev.type === 'transferred' && ev.taken_over) {
      return (ev.agent ? ev.agent.name : 'A supervisor') + ' (supervisor) took the chat over' + (ev.from_agent ? ' from ' + ev.from_agent.name : '');
    }
    if (ev.type === 'transferred' && !ev.agent && !ev.team) {
      return 'Back in the queue' + (ev.from_agent ? ': ' + ev.from_agent.name + ' went offline' : '');
    }
    if (ev.type === 'transferred') return 'Transferred' + (ev.agent ? ' to ' + ev.agent.name : ev.team ? ' to team ' + ev.team : '');
    return null;
  }

  /** One event or frame of the watched conversation, each seq once and in order. */
  function watchLine(w, f) {
    if (f.seq) {
      if (w.last && TL.cmpSeq(f.seq, w.last) <= 0) return;
      w.last = f.seq;
    }
    if (f.type === 'message') { w.log.append(messageItem(f, [f.text])); return; }
    var line = f.type === 'coach' ? 'coach: ' + (f.flags || []).map(function (x) { return humanize(x.category); }).join(', ')
      : f.type === 'assigned' || f.type === 'transferred' || f.type === 'closed' ? eventText(f)
      // Receipts and typing say nothing a watcher needs.
      : f.type === 'typing' || f.type === 'read' ? null : humanize(f.type) + (f.message ? ': ' + f.message : '');
    if (line && (f.type !== 'coach' || (f.flags || []).length)) w.log.append(h('li', {'class': 'sys', text: line}));
  }

  function watchFrame(w) {
    var frame = {type: 'watch', conversation: w.id};
    if (w.last) frame.resume = w.last;
    return frame;
  }

  function socket() {
    if (S.socket) return S.socket;
    S.socket = new TL.Socket({
      onState: function () {},
      cursors: function () { return S.watching && S.watching.last ? (function () { var o = {}; o[S.watching.id] = S.watching.last; return o; })() : {}; },
      onFrame: function (f) {
        var w = S.watching;
        if (f.type === 'welcome') {
          if (!w) return;
          // After a reconnect the welcome carries what was missed of the watched chat.
          (f.conversations || []).forEach(function (c) {
            if (c.conversation === w.id) (c.events || []).forEach(function (ev) { watchLine(w, ev); });
          });
          S.socket.send(watchFrame(w));
          return;
        }
        if (f.type === 'error') { toast(f.message || f.code); return; }
        if (!w || f.conversation !== w.id) return;
        // The chat is the supervisor's now (taken over): no line, the panel says so.
        if (f.type === 'assignment') { w.taken(); return; }
        if (f.type === 'watching') {
          // The conversation so far; its events follow live.
          if (f.history_truncated && !w.last) w.log.append(h('li', {'class': 'sys', text: 'Earlier messages are not shown.'}));
          (f.events || []).forEach(function (ev) { watchLine(w, ev); });
          return;
        }
        watchLine(w, f);
      }
    });
    return S.socket;
  }

  /** Watch a conversation of the live list (c: its item) in the panel under the list: the
   * chat as it goes, a whisper box private to the agent, and taking the chat over. */
  function watch(c, panel) {
    var sock = socket(), id = c.conversation, agent = agentOf(c) || 'the agent';
    // Watching the same chat again starts over: the server sends its history only on a new watch.
    if (S.watching) sock.send({type: 'unwatch', conversation: S.watching.id});
    var log = h('ol', {'class': 'transcript', 'aria-label': 'Watched conversation'});
    var takeOver = h('p', {}, [h('button', {type: 'button', on: {click: function (e) {
      e.target.disabled = true;
      sock.send({type: 'take_over', conversation: id});
      toast('You are taking over ' + id + '; answer it in the agent console.');
    }}}, ['Take over']), ' ', h('a', {href: '/agent', text: 'Open the agent console'})]);
    // Once the chat is the supervisor's, whispers would go to themselves: answer it instead.
    S.watching = {id: id, last: null, log: log, taken: function () {
      whisper.hidden = true;
      takeOver.replaceChildren('You have this chat now; answer it in the ', h('a', {href: '/agent', text: 'agent console'}), '.');
    }};
    var input = h('input', {'aria-label': 'Whisper to the agent', maxlength: '1000',
      placeholder: 'Only ' + agent + ' sees this; the visitor does not'});
    var whisper = h('form', {'class': 'whisper', 'aria-label': 'Private to ' + agent, on: {submit: function (e) {
      e.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      sock.send({type: 'whisper', conversation: id, text: text});
      log.append(h('li', {'class': 'whisper'}, [h('strong', {text: 'You whispered to ' + agent}),
        ' · ' + TL.clock(Date.now()) + ' · not shown to the visitor\n' + text]));
      input.value = '';
    }}}, [h('strong', {text: 'Whisper to ' + agent + ' (private)'}), input, h('button', {type: 'submit'}, ['Whisper'])]);
    panel.replaceChildren(
      h('h2', {text: 'Watching ' + (agentOf(c) || 'an unassigned chat') + (visitorOf(c) ? ' with ' + visitorOf(c) : '')}),
      h('p', {'class': 'meta', text: id + (c.lang ? ' · ' + c.lang : '')}),
      log, whisper, takeOver);
    var me = TL.session();
    if (me && me.user && c.agent && (c.agent.id || c.agent) === me.user.id) S.watching.taken();
    panel.hidden = false;
    panel.scrollIntoView({block: 'nearest'}); // under a long list it would open out of sight
    sock.send(watchFrame(S.watching));
  }

  // ---------------------------------------------------------------- routing
  function route() {
    S.view += 1;  // the page shown from now on; see api()
    var hash = location.hash || '#/conversations', path = hash.slice(1).split('?')[0];
    var params = new URLSearchParams(hash.split('?')[1] || '');
    document.querySelectorAll('#tabs a').forEach(function (a) {
      var on = path.indexOf(a.getAttribute('href').slice(1)) === 0 || (path.indexOf('/conversation/') === 0 && a.getAttribute('href') === '#/conversations');
      if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    if (path.indexOf('/live') !== 0) clearInterval(S.liveTimer);
    if (path.indexOf('/conversation/') === 0) transcript(decodeURIComponent(path.slice('/conversation/'.length)));
    else if (path === '/scorecards') scorecards(params);
    else if (path === '/rules') rules(params);
    else if (path === '/live') live();
    else conversations(params);
  }

  function start(s) {
    if (s.role !== 'supervisor') {
      $('login').hidden = false;
      $('login-form').querySelector('.error').textContent = 'The review pages are for supervisors.';
      TL.setSession(null);
      return;
    }
    $('login').hidden = true; $('page').hidden = false; $('tabs').hidden = false; $('logout').hidden = false;
    $('me').textContent = s.user.name;
    window.addEventListener('hashchange', route);
    route();
  }

  $('logout').addEventListener('click', function () { if (S.socket) S.socket.stop(); TL.logout(); });
  TL.loginForm($('login-form'), start);
  if (TL.session()) start(TL.session()); else { $('login').hidden = false; $('login-form').elements.username.focus(); }
})();
