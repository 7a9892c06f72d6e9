/* Small SVG charts for the scorecards: no library, text set as text. */
(function () {
  'use strict';
  var svg = TL.svg;
  var COLORS = ['#1f5fbf', '#c0392b', '#e67e22', '#27ae60', '#8e44ad', '#16a085', '#7f8c8d', '#d35400'];

  /**
   * The y axis: from 0 up to a round top in at most 5 equal steps of 1, 2 or 5 times a
   * power of ten (whole numbers only when `integer`). An all-zero series gets 0 and 1.
   * Returns {top, ticks}.
   */
  function scale(max, opts) {
    var top = Math.max(opts.max || 0, max), integer = opts.integer || !(top > 0), step;
    if (!(top > 0)) top = 1;
    var p = Math.pow(10, Math.floor(Math.log10(top)) - 1);
    for (var k = 0; ; k++) {
      step = [1, 2, 5][k % 3] * p * Math.pow(10, Math.floor(k / 3));
      if ((!integer || step >= 1) && Math.ceil(top / step - 1e-9) <= 5) break;
    }
    top = Math.ceil(top / step - 1e-9) * step;
    var digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9)), ticks = [];
    for (var i = 0; i * step <= top + step / 2; i++) ticks.push(Number((i * step).toFixed(digits)));
    return {top: top, ticks: ticks};
  }

  function fmt(v) { return Math.abs(v) >= 100 || v === Math.round(v) ? String(Math.round(v)) : v.toFixed(1); }

  var NO_DATA = 'No data in this period';

  /**
   * A line chart. series: [{name, values: [number|null]}] over labels (x axis, e.g. days).
   * opts: {title, width, height, unit, integer (whole-number ticks, for counts), max (a fixed
   * top, e.g. 100 for a share), empty (what to say when there is no value to draw)}.
   * Returns an <svg role="img"> with a text summary.
   */
  function line(labels, series, opts) {
    opts = opts || {};
    var W = opts.width || 420, H = opts.height || 170, L = 36, R = 8, T = 10, B = 22;
    var max = 0, any = false;
    series.forEach(function (s) {
      s.values.forEach(function (v) { if (v != null) { any = true; if (v > max) max = v; } });
    });
    if (!any) return empty(labels, opts, W, H, L, R, B);
    var sc = scale(max, opts);
    var x = across(labels.length, W, L, R);
    var y = function (v) { return T + (H - T - B) * (1 - v / sc.top); };
    var summary = (opts.title || 'Chart') + ': ' + series.map(function (s) {
      var last = s.values.filter(function (v) { return v != null; }).slice(-1)[0];
      return s.name + ' ' + (last == null ? 'no data' : fmt(last) + (opts.unit || ''));
    }).join(', ');
    var kids = [svg('title', {}, [summary])];
    sc.ticks.forEach(function (gv) {
      kids.push(svg('line', {'class': 'grid-line', x1: L, x2: W - R, y1: y(gv), y2: y(gv)}));
      kids.push(svg('text', {'class': 'tick', x: L - 4, y: y(gv) + 3, 'text-anchor': 'end'}, [String(gv)]));
    });
    kids.push(svg('line', {'class': 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B}));
    days(labels, x, H).forEach(function (k) { kids.push(k); });
    // Series with the same value on a day would hide each other's points: the first is a
    // dot, each further one a wider ring around it, so every colour stays in sight.
    var drawn = {};
    series.forEach(function (s, k) {
      var color = s.color || COLORS[k % COLORS.length], d = '', pen = false;
      s.values.forEach(function (v, i) {
        if (v == null) { pen = false; return; }
        d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true;
        var at = i + ':' + y(v).toFixed(1), under = drawn[at] || 0;
        drawn[at] = under + 1;
        var mark = under ? {r: 2.5 + 2.5 * under, fill: 'none', stroke: color, 'stroke-width': 1.5}
                         : {r: 2.5, fill: color};
        mark.cx = x(i); mark.cy = y(v);
        kids.push(svg('circle', mark, [
          svg('title', {}, [s.name + ', ' + TL.day(labels[i]) + ': ' + fmt(v) + (opts.unit || '')])]));
      });
      if (d) kids.unshift(svg('path', {d: d, fill: 'none', stroke: color, 'stroke-width': 2}));
    });
    var el = svg('svg', {'class': 'chart', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img',
      'aria-label': summary}, kids);
    return el;
  }

  // Where the i-th of n days is on the x axis; a single day in the middle.
  function across(n, W, L, R) {
    return function (i) { return L + (n < 2 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1)); };
  }

  // The x axis labels: at most about six days ("5 Dec"), the first and the last always.
  function days(labels, x, H) {
    var step = Math.max(1, Math.ceil(labels.length / 6)), out = [];
    labels.forEach(function (lab, i) {
      if (i % step === 0 || i === labels.length - 1) {
        var anchor = labels.length > 1 && i === labels.length - 1 ? 'end' : i === 0 && labels.length > 1 ? 'start' : 'middle';
        out.push(svg('text', {x: x(i), y: H - 6, 'text-anchor': anchor}, [TL.day(lab, true)]));
      }
    });
    return out;
  }

  // A chart with no value to draw says so where the lines would be, with no scale to misread.
  function empty(labels, opts, W, H, L, R, B) {
    var said = opts.empty || NO_DATA, summary = (opts.title || 'Chart') + ': ' + said.toLowerCase();
    var x = across(labels.length, W, L, R);
    var note = svg('text', {'class': 'no-data', x: (L + W - R) / 2, y: (H - B) / 2 + 4, 'text-anchor': 'middle'}, [said]);
    var kids = [svg('title', {}, [summary]), svg('line', {'class': 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B}), note];
    return svg('svg', {'class': 'chart', 'data-empty': 'true', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H,
      role: 'img', 'aria-label': summary}, kids.concat(days(labels, x, H)));
  }

  function legend(series) {
    return TL.h('div', {'class': 'legend'}, series.map(function (s, k) {
      var swatch = TL.h('i');
      swatch.style.background = s.color || COLORS[k % COLORS.length];
      return TL.h('span', {}, [swatch, s.name]);
    }));
  }

  window.TLCharts = {line: line, legend: legend, COLORS: COLORS};
})();
