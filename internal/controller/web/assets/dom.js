// Small helpers every view uses: building elements (text is always set as
// text, never parsed as HTML: tap shows what clients sent), links into the
// page's routes, number formats (the CLI's), and the metrics API.

const SVGNS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h('a', {href: '#/'}, 'text', child...) makes an HTML element.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s('path', {d: ...}) makes an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVGNS, tag), attrs, children);
}

// href('/workload/demo/web', {since: '1m'}) is a link into the page.
export function href(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const qs = q.toString();
  return '#' + path + (qs ? '?' + qs : '');
}

// The CLI's formats (cmd/skein/api.go); '-' is no data.
export function fmtPercent(rate) {
  return rate === null || rate === undefined ? '-' : (rate * 100).toFixed(1) + '%';
}
export function fmtRPS(rps, successRate) {
  if (!rps && (successRate === null || successRate === undefined)) return '-';
  return rps >= 10 ? rps.toFixed(1) : rps.toFixed(2);
}
export function fmtLatency(ms) {
  if (ms === null || ms === undefined) return '-';
  return ms < 10 ? ms.toFixed(1) + ' ms' : ms.toFixed(0) + ' ms';
}
export function fmtMeshed(meshed, total) {
  return total ? `${meshed}/${total}` : '-';
}
// ready is null where the controller does not know (skein stat's "-").
export function fmtReady(ready, total) {
  return ready == null ? '-' : fmtMeshed(ready, total);
}
export function fmtBytes(n) {
  if (!n) return '0 B';
  if (n < 1024) return n + ' B';
  return (n / 1024).toFixed(n < 10240 ? 1 : 0) + ' KiB';
}

// health classifies a success rate for its colour.
export function health(rate) {
  if (rate === null || rate === undefined) return 'none';
  if (rate >= 0.99) return 'good';
  if (rate >= 0.9) return 'warn';
  return 'bad';
}

// successCell is a success rate with a dot of its health's colour.
export function successCell(rate, link) {
  return h('a', {class: 'num success ' + health(rate), href: link},
    h('span', {class: 'dot', 'aria-hidden': 'true'}), fmtPercent(rate));
}

// numLink is a number that links to the view behind it.
export function numLink(text, link) {
  return h('a', {class: 'num', href: link}, text);
}

// table builds a table from column headings and rows of cells; a heading
// starting with '#' is a right-aligned number column.
export function table(headings, rows, attrs) {
  const cols = headings.map((t) => ({num: t.startsWith('#'), text: t.replace(/^#/, '')}));
  return h('div', {class: 'table-wrap'},
    h('table', attrs || {},
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', {class: c.num ? 'n' : ''}, c.text)))),
      h('tbody', {}, rows.length ? rows.map((r) =>
        h('tr', r.attrs || {}, r.cells.map((cell, i) =>
          h('td', {class: cols[i].num ? 'n' : '', 'data-col': r.cols ? r.cols[i] : null}, cell))))
        : h('tr', {}, h('td', {class: 'empty', colspan: cols.length}, 'No traffic in this window.')))));
}

// card is a titled panel.
export function card(title, subtitle, ...body) {
  return h('section', {class: 'card'},
    h('div', {class: 'card-head'}, h('h2', {}, title), subtitle ? h('p', {class: 'muted'}, subtitle) : null),
    ...body);
}

// getJSON fetches a metrics API route; an error answer throws its message.
export async function getJSON(path, params, signal) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const res = await fetch(path + '?' + q, {headers: {Accept: 'application/json'}, signal});
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `the metrics API answered HTTP ${res.status}`);
  return body;
}

// errorBox shows a failed fetch.
export function errorBox(err) {
  return h('div', {class: 'error'}, h('strong', {}, 'Could not load: '), err.message);
}
