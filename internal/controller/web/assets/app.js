// The dashboard's entry: routes the URL's fragment (#/view/args?params) to
// a view, keeps the namespace and window controls in the URL, and refreshes
// the metric views every 10 s. Each view gets an AbortSignal that ends
// when the user leaves it, which stops its fetches, timers and tap stream.
import {h, getJSON, errorBox} from './dom.js';
import {overview, services, routes, workload} from './views.js';
import {edges} from './graph.js';
import {tapView, topView} from './tap.js';

const views = {
  '': overview, services, routes, workload, edges, tap: tapView, top: topView,
};
// Views that redraw on a timer (tap and top stream instead).
const refreshing = new Set([overview, services, routes, workload, edges]);
const REFRESH_MS = 10000;

let current = null; // {abort: AbortController}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return {name: parts[0] || '', args: parts.slice(1), params: new URLSearchParams(qs || '')};
}

// setParams changes the current URL's parameters (and so the view).
export function setParams(changes) {
  const {params} = parseHash();
  for (const [k, v] of Object.entries(changes)) {
    if (v) params.set(k, v); else params.delete(k);
  }
  const path = (location.hash.replace(/^#/, '') || '/').split('?')[0];
  const qs = params.toString();
  location.hash = path + (qs ? '?' + qs : '');
}

async function render() {
  if (current) current.abort.abort();
  const abort = new AbortController();
  current = {abort};
  const route = parseHash();
  const view = views[route.name];
  const main = document.getElementById('main');
  for (const a of document.querySelectorAll('#nav a')) {
    const v = a.dataset.view === 'overview' ? '' : a.dataset.view;
    a.classList.toggle('active', v === route.name || (route.name === 'workload' && v === '') ||
      (route.name === 'routes' && v === 'services'));
  }
  const ns = namespaceOf(route);
  const since = route.params.get('since') || '1m';
  syncControls(ns, since);
  if (!view) {
    main.replaceChildren(h('div', {class: 'error'}, 'No such page.'));
    return;
  }
  const ctx = {args: route.args, params: route.params, ns, since, signal: abort.signal};
  const draw = async (first) => {
    try {
      const content = await view(ctx);
      if (abort.signal.aborted) return;
      if (first || !main.contains(document.activeElement) || document.activeElement === document.body) {
        main.replaceChildren(content);
      }
      main.dataset.ready = 'true';
    } catch (err) {
      if (abort.signal.aborted) return;
      main.replaceChildren(errorBox(err));
      main.dataset.ready = 'error';
    }
  };
  main.dataset.ready = 'false';
  await draw(true);
  if (refreshing.has(view)) {
    const timer = setInterval(() => draw(false), REFRESH_MS);
    abort.signal.addEventListener('abort', () => clearInterval(timer));
  }
}

// namespaceOf is the namespace a route shows: its parameter, or the
// workload's own.
function namespaceOf(route) {
  return route.params.get('namespace') || (route.name === 'workload' ? route.args[0] : '') || '';
}

function syncControls(ns, since) {
  const nsSelect = document.getElementById('namespace');
  if (![...nsSelect.options].some((o) => o.value === ns)) nsSelect.append(h('option', {value: ns}, ns));
  nsSelect.value = ns;
  const sinceSelect = document.getElementById('since');
  if (![...sinceSelect.options].some((o) => o.value === since)) sinceSelect.append(h('option', {}, since));
  sinceSelect.value = since;
}

async function loadNamespaces() {
  try {
    const stat = await getJSON('/api/v1/stat', {kind: 'namespace', since: '1h'});
    const select = document.getElementById('namespace');
    const have = new Set([...select.options].map((o) => o.value));
    for (const row of stat.rows) if (!have.has(row.name)) select.append(h('option', {value: row.name}, row.name));
    select.value = namespaceOf(parseHash());
  } catch {
    // The overview shows the error; the selector keeps "all".
  }
}

document.getElementById('namespace').addEventListener('change', (e) => setParams({namespace: e.target.value}));
document.getElementById('since').addEventListener('change', (e) => setParams({since: e.target.value === '1m' ? '' : e.target.value}));
window.addEventListener('hashchange', render);
loadNamespaces();
render();
