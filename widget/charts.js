/* Small SVG charts for the scorecards: no library, text set as text. */
(function () {
  'use strict';
  var svg = TL.svg;
  var COLORS = ['#1f5fbf', '#c0392b', '#e67e22', '#27ae60', '#8e44ad', '#16a085', '#7f8c8d', '#d35400'];

  function niceMax(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), n = v / p;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
  }

  function fmt(v) { return Math.abs(v) >= 100 || v === Math.round(v) ? String(Math.round(v)) : v.toFixed(1); }

  /**
   * A line chart. series: [{name, values: [number|null]}] over labels (x axis, e.g. days).
   * opts: {title, width, height, unit}. Returns an <svg role="img"> with a text summary.
   */
  function line(labels, series, opts) {
    opts = opts || {};
    var W = opts.width || 420, H = opts.height || 170, L = 36, R = 8, T = 10, B = 22;
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v != null && v > max) max = v; }); });
    max = niceMax(max);
    var x = function (i) { return L + (labels.length < 2 ? (W - L - R) / 2 : i * (W - L - R) / (labels.length - 1)); };
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    var summary = (opts.title || 'Chart') + ': ' + series.map(function (s) {
      var last = s.values.filter(function (v) { return v != null; }).slice(-1)[0];
      return s.name + ' ' + (last == null ? 'no data' : fmt(last) + (opts.unit || ''));
    }).join(', ');
    var kids = [svg('title', {}, [summary])];
    for (var g = 0; g <= 4; g++) {
      var gv = max * g / 4;
      kids.push(svg('line', {'class': 'grid-line', x1: L, x2: W - R, y1: y(gv), y2: y(gv)}));
      kids.push(svg('text', {x: L - 4, y: y(gv) + 3, 'text-anchor': 'end'}, [fmt(gv)]));
    }
    kids.push(svg('line', {'class': 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B}));
    var step = Math.max(1, Math.ceil(labels.length / 6));
    labels.forEach(function (lab, i) {
      if (i % step === 0 || i === labels.length - 1) {
        var anchor = labels.length > 1 && i === labels.length - 1 ? 'end' : i === 0 && labels.length > 1 ? 'start' : 'middle';
        kids.push(svg('text', {x: x(i), y: H - 6, 'text-anchor': anchor}, [String(lab).slice(5) || String(lab)]));
      }
    });
    series.forEach(function (s, k) {
      var color = s.color || COLORS[k % COLORS.length], d = '', pen = false;
      s.values.forEach(function (v, i) {
        if (v == null) { pen = false; return; }
        d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true;
        kids.push(svg('circle', {cx: x(i), cy: y(v), r: 2.5, fill: color}, [
          svg('title', {}, [s.name + ', ' + labels[i] + ': ' + fmt(v) + (opts.unit || '')])]));
      });
      if (d) kids.unshift(svg('path', {d: d, fill: 'none', stroke: color, 'stroke-width': 2}));
    });
    var el = svg('svg', {'class': 'chart', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img',
      'aria-label': summary}, kids);
    return el;
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
