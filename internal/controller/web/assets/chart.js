// lineChart draws time series as an inline SVG: a y axis with round
// ticks, time labels, a grid, one path per series (broken where a point
// has no value) and a legend. Colours come from the stylesheet (classes).

import {h, s} from './dom.js';

const H = 220;
const PAD = {left: 52, right: 16, top: 12, bottom: 28};

// niceScale rounds a maximum up to 1, 2, 2.5, 5 or 10 times a power of
// ten, with a number of ticks that gives round steps.
function niceScale(v) {
  if (!(v > 0)) return {max: 1, ticks: 4};
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p * 1.0000001) return {max: m * p, ticks: m === 2 ? 4 : 5};
  return {max: 10 * p, ticks: 5};
}

function clock(t) {
  const d = new Date(t * 1000);
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
}

function tickLabel(v, unit, percent) {
  if (percent) return (v * 100).toFixed(0) + '%';
  return v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2);
}

// lineChart({id, unit, percent, wide, series: [{name, cls, points: [[t, v|null]]}]})
// draws in a viewBox about as wide as its card (wide: two columns), so its
// text keeps its size.
export function lineChart({id, unit, percent, wide, series}) {
  const W = wide ? 1240 : 600;
  const all = series.flatMap((sr) => sr.points);
  const ts = all.map((p) => p[0]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  const values = all.map((p) => p[1]).filter((v) => v !== null && v !== undefined);
  let yMin = 0, scale;
  if (percent) {
    // From the lowest tenth the values reach (at most 80%) to 100%, in
    // steps of 5%, 10% or 20%.
    const tenths = Math.min(10, Math.max(2, Math.ceil((1 - Math.min(1, ...values)) * 10 - 1e-9)));
    if (tenths > 5) scale = {max: 1, ticks: 5};
    else { yMin = 1 - tenths / 10; scale = {max: 1, ticks: tenths <= 2 ? tenths * 2 : tenths}; }
  } else {
    scale = niceScale(Math.max(0, ...values) * 1.1);
  }
  const yMax = scale.max;
  const x = (t) => PAD.left + (t1 > t0 ? (t - t0) / (t1 - t0) : 0) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - yMin) / (yMax - yMin || 1)) * (H - PAD.top - PAD.bottom);

  const svg = s('svg', {id, class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': series.map((sr) => sr.name).join(', ')});
  const ticks = scale.ticks;
  for (let i = 0; i <= ticks; i++) {
    const v = yMin + (yMax - yMin) * i / ticks;
    svg.append(s('line', {class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v)}),
      s('text', {class: 'tick', x: PAD.left - 8, y: y(v) + 4, 'text-anchor': 'end'}, tickLabel(v, unit, percent)));
  }
  if (t1 > t0) {
    const n = 5;
    for (let i = 0; i <= n; i++) {
      const t = t0 + (t1 - t0) * i / n;
      svg.append(s('text', {class: 'tick', x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === n ? 'end' : 'middle'}, clock(t)));
    }
  }
  svg.append(s('line', {class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom}));
  let drawn = 0;
  for (const sr of series) {
    let d = '', open = false, n = 0;
    for (const [t, v] of sr.points) {
      if (v === null || v === undefined) { open = false; continue; }
      const clamped = Math.max(yMin, Math.min(yMax, v));
      d += `${open ? 'L' : 'M'}${x(t).toFixed(1)},${y(clamped).toFixed(1)}`;
      open = true;
      n++;
    }
    if (!d) continue;
    drawn += n;
    svg.append(s('path', {class: 'series ' + sr.cls, d, 'data-points': n, fill: 'none'}));
  }
  // Each key shows its series' latest value.
  const latest = (sr) => {
    for (let i = sr.points.length - 1; i >= 0; i--) {
      const v = sr.points[i][1];
      if (v !== null && v !== undefined) return percent ? (v * 100).toFixed(1) + '%' : `${tickLabel(v, unit, false)} ${unit}`;
    }
    return '-';
  };
  const legend = h('div', {class: 'legend'}, series.map((sr) =>
    h('span', {class: 'key ' + sr.cls, title: 'latest value'}, sr.name, h('span', {class: 'latest'}, latest(sr)))));
  const box = h('div', {class: 'chart-box'}, legend, svg);
  if (!drawn) box.append(h('p', {class: 'chart-empty muted'}, 'No traffic in this range.'));
  return box;
}
