// Live tap and top. Both stream the controller's tap API (/api/v1/tap,
// one JSON event a line) with fetch and a ReadableStream, filtered as
// `skein tap` is; top aggregates the same events in the browser. The
// stream stops when the user leaves the page (the view's AbortSignal).
import {h, href, card, fmtLatency, fmtBytes, fmtPercent, health} from './dom.js';
import {pageHead} from './views.js';

const MAX_TAP_ROWS = 50; // rows kept on screen, newest first
const MAX_TOP_ROWS = 500; // paths tracked by top; quieter ones are dropped
const MAX_LINE = 1 << 20; // a longer line is not an event of ours

// The filters, named as the tap API's query parameters (internal/tap).
const FILTERS = [
  {name: 'resource', label: 'Resource', placeholder: 'deploy/web, ns/demo, svc/web'},
  {name: 'to', label: 'To', placeholder: 'deploy/voting'},
  {name: 'method', label: 'Method', options: ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']},
  {name: 'path', label: 'Path prefix', placeholder: '/api/'},
  {name: 'authority', label: 'Authority', placeholder: 'web.demo.svc'},
  {name: 'route', label: 'Route', placeholder: 'route name'},
  {name: 'maxRps', label: 'Max events/s', placeholder: '100'},
];

function filterForm(view, params, ns) {
  const fields = FILTERS.map((f) => {
    const value = params.get(f.name) || (f.name === 'resource' && ns ? `ns/${ns}` : '');
    const input = f.options
      ? h('select', {name: f.name}, f.options.map((o) => h('option', {value: o, selected: o === value}, o || 'any')))
      : h('input', {name: f.name, value, placeholder: f.placeholder, autocomplete: 'off', spellcheck: 'false'});
    return h('label', {class: 'field'}, h('span', {}, f.label), input);
  });
  const form = h('form', {class: 'filters', id: 'tap-filters'}, fields,
    h('div', {class: 'field buttons'}, h('button', {type: 'submit', class: 'primary'}, 'Start')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = {namespace: ns};
    for (const [k, v] of new FormData(form)) if (v) q[k] = v;
    const next = href('/' + view, q);
    if (location.hash === next) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = next;
  });
  return form;
}

// stream calls onEvent for each event of the tap API until signal aborts
// or the stream ends; onStatus gets a line to show.
async function stream(params, signal, onEvent, onStatus) {
  const q = new URLSearchParams();
  for (const f of ['namespace', ...FILTERS.map((f) => f.name)]) if (params.get(f)) q.set(f, params.get(f));
  let res;
  try {
    res = await fetch('/api/v1/tap?' + q, {signal, headers: {Accept: 'application/x-ndjson'}});
  } catch (err) {
    if (!signal.aborted) onStatus('error', 'Could not reach the tap API: ' + err.message);
    return;
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    onStatus('error', body.error || `The tap API answered HTTP ${res.status}`);
    return;
  }
  onStatus('live', 'Streaming');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) {
          try { onEvent(JSON.parse(line)); } catch { /* not an event: skip */ }
        }
      }
      if (buf.length > MAX_LINE) buf = '';
    }
    onStatus('ended', 'The tap ended.');
  } catch (err) {
    if (!signal.aborted) onStatus('error', 'The tap stream failed: ' + err.message);
  }
}

// peerName is what the tap knows of a peer: its workload (or pod, or
// service), else the service account of its verified identity, else its
// address without the port.
function peerName(p) {
  if (!p) return '-';
  if (p.workload || p.pod || p.service) return p.workload || p.pod || p.service;
  const sa = /\/sa\/([^/]+)$/.exec(p.identity || '');
  if (sa) return 'sa/' + sa[1];
  return (p.address || '-').replace(/^\[::ffff:([\d.]+)\]/, '$1').replace(/:\d+$/, '');
}

function peerLink(p) {
  const name = peerName(p);
  const title = p ? [p.identity, p.address].filter(Boolean).join('\n') : '';
  if (!p || !p.workload || !p.namespace) return h('span', {class: 'muted', title}, name);
  return h('a', {href: href(`/workload/${p.namespace}/${p.workload}`, {}), title}, name);
}

// stopper is an AbortSignal that ends with the view or with its Stop
// button, which it returns beside it.
function stopper(signal, status) {
  const stop = new AbortController();
  signal.addEventListener('abort', () => stop.abort());
  const button = h('button', {type: 'button', class: 'stop', onclick: () => {
    stop.abort();
    button.disabled = true;
    status.set('ended', 'Stopped. Press Start to tap again.');
  }}, 'Stop');
  return {signal: stop.signal, button};
}

// succeeded is skein top's classification (cmd/skein/top.go): answered,
// not a 5xx, gRPC status OK if any, no error.
function succeeded(r) {
  return !r.error && r.status > 0 && r.status < 500 && (r.grpcStatus === undefined || r.grpcStatus === null || r.grpcStatus === 0);
}

function statusBadge(r) {
  if (r.error) return h('span', {class: 'badge bad', title: r.error}, 'error');
  if (!r.status) return h('span', {class: 'badge none'}, '…');
  const text = r.grpcStatus !== undefined && r.grpcStatus !== null ? `${r.status} · grpc ${r.grpcStatus}` : String(r.status);
  return h('span', {class: 'badge ' + (succeeded(r) ? 'ok' : 'bad')}, text);
}

// requests merges a proxy's request, response and end events by stream.
class Requests {
  constructor() { this.byKey = new Map(); this.dropped = 0; this.events = 0; this.errors = []; }
  add(ev) {
    this.events++;
    if (ev.kind === 'dropped') { this.dropped += ev.dropped || 0; return null; }
    if (ev.kind === 'error') { this.errors.push(`${ev.proxy}: ${ev.error}`); return null; }
    const key = ev.proxy + '#' + ev.stream;
    let r = this.byKey.get(key);
    if (!r) {
      r = {key, time: ev.time, proxy: ev.proxy, direction: ev.direction, source: ev.source, destination: ev.destination, status: 0};
      this.byKey.set(key, r);
      if (this.byKey.size > MAX_TAP_ROWS * 4) this.byKey.delete(this.byKey.keys().next().value);
    }
    if (ev.kind === 'request') {
      Object.assign(r, {method: ev.method, authority: ev.authority, path: ev.path, route: ev.route,
        requestHeaders: ev.headers, requestBody: ev.body, requestBodyTruncated: ev.bodyTruncated});
    }
    if (ev.kind === 'response') {
      Object.assign(r, {status: ev.status, grpcStatus: ev.grpcStatus, latencyMs: ev.latencyMs, responseHeaders: ev.headers});
    }
    if (ev.kind === 'end') {
      Object.assign(r, {durationMs: ev.durationMs, responseBytes: ev.responseBytes, requestBytes: ev.requestBytes, ended: true,
        responseBody: ev.body, responseBodyTruncated: ev.bodyTruncated});
      if (ev.grpcStatus !== undefined) r.grpcStatus = ev.grpcStatus;
      if (ev.error) r.error = ev.error;
    }
    if (ev.error) r.error = ev.error;
    return r;
  }
}

// details is what a tap row opens to: both identities, the headers (the
// proxy has already redacted the listed ones) and, where the workload
// opted in, the body prefixes.
function details(r) {
  const headers = (list) => list && list.length
    ? h('dl', {class: 'headers'}, list.flatMap((hd) => [h('dt', {}, hd.name), h('dd', {class: hd.value === '[REDACTED]' ? 'redacted' : ''}, hd.value)]))
    : h('p', {class: 'muted'}, 'none');
  const bodyBlock = (text, truncated) => text
    ? h('pre', {class: 'body'}, text, truncated ? h('span', {class: 'muted'}, '\n… (prefix only)') : null)
    : h('p', {class: 'muted'}, 'not captured (bodies are opt-in per workload)');
  const part = (title, ...content) => h('div', {class: 'detail'}, h('h3', {}, title), ...content);
  return h('div', {class: 'detail-grid'},
    part('Source', h('p', {class: 'mono'}, r.source?.identity || 'no verified identity'), h('p', {class: 'mono muted'}, r.source?.address || '')),
    part('Destination', h('p', {class: 'mono'}, r.destination?.identity || 'no verified identity'), h('p', {class: 'mono muted'}, r.destination?.address || '')),
    part('Request headers', headers(r.requestHeaders)),
    part('Response headers', headers(r.responseHeaders)),
    part('Request body', bodyBlock(r.requestBody, r.requestBodyTruncated)),
    part('Response body', bodyBlock(r.responseBody, r.responseBodyTruncated)));
}

function statusLine() {
  const el = h('p', {class: 'tap-status', id: 'tap-status'}, h('span', {class: 'pulse'}), 'Connecting…');
  return {
    el,
    set(state, text) { el.className = 'tap-status ' + state; el.replaceChildren(h('span', {class: 'pulse'}), text); },
  };
}

export async function tapView({params, ns, signal}) {
  const requests = new Requests();
  const body = h('tbody', {});
  const counts = h('span', {class: 'muted'}, '');
  const status = statusLine();
  const heads = ['Time', 'Dir', 'From', 'To', 'Method', 'Path', 'Route', 'Status', 'Latency', 'Bytes'];
  const rows = new Map(); // key -> tr
  const render = (r) => {
    const tr = h('tr', {class: 'tap-row' + (r.open ? ' open' : ''), 'data-key': r.key, title: 'Show identities, headers and bodies',
      onclick: (e) => { if (!e.target.closest('a')) { r.open = !r.open; render(r); } }},
      h('td', {class: 'mono muted'}, new Date(r.time).toLocaleTimeString([], {hour12: false})),
      h('td', {}, h('span', {class: 'dir'}, r.direction === 'outbound' ? 'out' : 'in')),
      h('td', {}, peerLink(r.source)), h('td', {}, peerLink(r.destination)),
      h('td', {class: 'mono'}, r.method || ''), h('td', {class: 'mono path', title: r.path || ''}, r.path || ''),
      h('td', {class: 'muted'}, r.route || ''), h('td', {}, statusBadge(r)),
      h('td', {class: 'n'}, r.latencyMs !== undefined ? fmtLatency(r.latencyMs) : ''),
      h('td', {class: 'n muted'}, r.ended ? fmtBytes(r.responseBytes || 0) : ''));
    const old = rows.get(r.key);
    if (old) {
      old.details?.remove();
      old.replaceWith(tr);
    } else {
      body.prepend(tr);
    }
    if (r.open) {
      tr.details = h('tr', {class: 'tap-details'}, h('td', {colspan: heads.length}, details(r)));
      tr.after(tr.details);
    }
    tr.open = r.open;
    rows.set(r.key, tr);
    // Drop the oldest rows, keeping the ones opened (a few at most: each
    // is a click).
    for (const [k, el] of rows) {
      if (rows.size <= MAX_TAP_ROWS) break;
      if (el.open) continue;
      el.remove();
      rows.delete(k);
    }
  };
  const view = h('div', {class: 'view', id: 'tap'},
    pageHead('Live tap', 'Requests as the proxies see them, newest first. Header values on the redaction list never leave the proxy.'),
    card('Filters', null, filterForm('tap', params, ns)));
  if (!params.get('resource')) {
    view.append(card('Requests', null, h('p', {class: 'empty'}, 'Choose what to tap and press Start.')));
    return view;
  }
  const stop = stopper(signal, status);
  view.append(card('Requests', null, h('div', {class: 'tap-meta'}, status.el, h('div', {class: 'actions'}, counts, stop.button)),
    h('div', {class: 'table-wrap'}, h('table', {id: 'tap-table'},
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', {class: t === 'Latency' || t === 'Bytes' ? 'n' : ''}, t)))), body))));
  const showCounts = () => counts.replaceChildren(`${requests.events} events · ${requests.dropped} dropped by the proxies' cap`);
  stream(params, stop.signal, (ev) => {
    const r = requests.add(ev);
    if (r) render(r);
    showCounts();
  }, (state, text) => status.set(state, requests.errors.length ? `${text} (${requests.errors.join('; ')})` : text));
  return view;
}

export async function topView({params, ns, signal}) {
  const requests = new Requests();
  const paths = new Map(); // source|dest|method|path -> stats
  const status = statusLine();
  const body = h('div', {class: 'table-wrap'});
  const view = h('div', {class: 'view', id: 'top'},
    pageHead('Live top', 'The busiest paths (query strings left out) since you pressed Start, computed in the browser from the tap stream.'),
    card('Filters', null, filterForm('top', params, ns)));
  if (!params.get('resource')) {
    view.append(card('Paths', null, h('p', {class: 'empty'}, 'Choose what to watch and press Start.')));
    return view;
  }
  const stop = stopper(signal, status);
  view.append(card('Paths', null, h('div', {class: 'tap-meta'}, status.el, stop.button), body));
  const count = (r) => {
    const name = r.route || (r.path || '').split('?')[0];
    const key = [peerName(r.source), peerName(r.destination), r.method, name].join('|');
    let p = paths.get(key);
    if (!p) {
      if (paths.size >= MAX_TOP_ROWS) {
        let quietest = null;
        for (const [k, v] of paths) if (!quietest || v.count < paths.get(quietest).count) quietest = k;
        paths.delete(quietest);
      }
      p = {source: r.source, destination: r.destination, method: r.method, name, count: 0, ok: 0, best: Infinity, worst: 0, last: 0};
      paths.set(key, p);
    }
    const ms = r.latencyMs !== undefined ? r.latencyMs : r.durationMs || 0;
    p.count++;
    if (succeeded(r)) p.ok++;
    p.best = Math.min(p.best, ms);
    p.worst = Math.max(p.worst, ms);
    p.last = ms;
  };
  const draw = () => {
    const sorted = [...paths.values()].sort((a, b) => b.count - a.count || a.name.localeCompare(b.name));
    const heads = ['Source', 'Destination', 'Method', 'Path or route', '#Count', '#Best', '#Worst', '#Last', '#Success'];
    body.replaceChildren(h('table', {id: 'top-table'},
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', {class: t.startsWith('#') ? 'n' : ''}, t.replace('#', ''))))),
      h('tbody', {}, sorted.length ? sorted.map((p) => {
        const tap = href('/tap', {namespace: params.get('namespace') || ns, resource: params.get('resource'),
          method: p.method, path: p.name.startsWith('/') ? p.name : '', route: p.name.startsWith('/') ? '' : p.name});
        const rate = p.count ? p.ok / p.count : null;
        return h('tr', {class: 'top-row'},
          h('td', {}, peerLink(p.source)), h('td', {}, peerLink(p.destination)),
          h('td', {class: 'mono'}, p.method || ''), h('td', {class: 'mono path'}, p.name),
          h('td', {class: 'n'}, h('a', {class: 'num', href: tap}, String(p.count))),
          h('td', {class: 'n'}, fmtLatency(p.best)), h('td', {class: 'n'}, fmtLatency(p.worst)), h('td', {class: 'n'}, fmtLatency(p.last)),
          h('td', {class: 'n'}, h('a', {class: 'num success ' + health(rate), href: tap}, h('span', {class: 'dot'}), fmtPercent(rate))));
      }) : h('tr', {}, h('td', {class: 'empty', colspan: heads.length}, 'Waiting for requests…')))));
  };
  draw();
  const timer = setInterval(draw, 1000);
  signal.addEventListener('abort', () => clearInterval(timer));
  stream(params, stop.signal, (ev) => {
    const r = requests.add(ev);
    if (r && ev.kind === 'end') count(r);
  }, (state, text) => status.set(state, text));
  return view;
}
