// The metric views: overview (namespaces and workloads), services, routes
// and a workload's page with its charts. Every number links to the view
// behind it: a workload's numbers to its page, a success rate to the
// routes that make it up, a service to its routes.
import {h, href, table, card, getJSON, successCell, numLink, fmtRPS, fmtLatency, fmtMeshed, fmtReady, fmtPercent} from './dom.js';
import {lineChart} from './chart.js';

function goldenCells(row, link, successLink) {
  return [
    successCell(row.success_rate, successLink || link),
    numLink(fmtRPS(row.rps, row.success_rate), link),
    numLink(fmtLatency(row.latency_ms_p50), link),
    numLink(fmtLatency(row.latency_ms_p95), link),
    numLink(fmtLatency(row.latency_ms_p99), link),
  ];
}
const goldenHeads = ['#Success', '#RPS', '#P50', '#P95', '#P99'];
const goldenCols = ['success', 'rps', 'p50', 'p95', 'p99'];

export async function overview({ns, since, signal}) {
  const [namespaces, workloads] = await Promise.all([
    getJSON('/api/v1/stat', {kind: 'namespace', since}, signal),
    getJSON('/api/v1/stat', {kind: 'workload', namespace: ns, since}, signal),
  ]);
  const nsRows = namespaces.rows.map((r) => {
    const link = href('/', {namespace: r.name, since: since === '1m' ? '' : since});
    return {
      attrs: {'data-namespace': r.name},
      cols: ['name', 'meshed', 'ready', ...goldenCols],
      cells: [h('a', {href: link}, r.name), numLink(fmtMeshed(r.meshed, r.total), link),
        numLink(fmtReady(r.ready, r.total), link), ...goldenCells(r, link)],
    };
  });
  const wlRows = workloads.rows.map((r) => {
    const page = href(`/workload/${r.namespace}/${r.name}`, {namespace: ns, since: since === '1m' ? '' : since});
    const routesLink = href('/routes', {namespace: r.namespace, workload: r.name, since: since === '1m' ? '' : since});
    return {
      attrs: {'data-workload': r.name, 'data-namespace': r.namespace},
      cols: ['namespace', 'name', 'meshed', 'ready', ...goldenCols, 'tcp'],
      cells: [
        h('span', {class: 'muted'}, r.namespace),
        h('a', {href: page, class: 'strong'}, r.name),
        numLink(fmtMeshed(r.meshed, r.total), page),
        numLink(fmtReady(r.ready, r.total), page),
        ...goldenCells(r, page, routesLink),
        numLink(String(r.tcp_connections), page),
      ],
    };
  });
  return h('div', {class: 'view', id: 'overview'},
    pageHead('Overview', `Golden metrics over the last ${since}, as skein stat reports them.`),
    card('Namespaces', null, table(['Namespace', '#Meshed', '#Ready', ...goldenHeads], nsRows, {id: 'namespaces'})),
    card(ns ? `Workloads in ${ns}` : 'Workloads', 'What each workload served (its proxies’ inbound side).',
      table(['Namespace', 'Workload', '#Meshed', '#Ready', ...goldenHeads, '#TCP'], wlRows, {id: 'workloads'})));
}

export async function services({ns, since, signal}) {
  const stat = await getJSON('/api/v1/stat', {kind: 'service', namespace: ns, since}, signal);
  const rows = stat.rows.map((r) => {
    const link = href('/routes', {namespace: r.namespace, service: r.name, since: since === '1m' ? '' : since});
    return {
      attrs: {'data-service': r.name},
      cols: ['namespace', 'name', 'meshed', ...goldenCols],
      cells: [h('span', {class: 'muted'}, r.namespace), h('a', {href: link, class: 'strong'}, r.name),
        numLink(fmtMeshed(r.meshed, r.total), link), ...goldenCells(r, link)],
    };
  });
  return h('div', {class: 'view', id: 'services'},
    pageHead('Services', `What each service’s clients saw over the last ${since}. Meshed: endpoints reached over mTLS, of all reached.`),
    card('Services', null, table(['Namespace', 'Service', '#Meshed', ...goldenHeads], rows, {id: 'services-table'})));
}

export async function routes({params, since, signal}) {
  const workload = params.get('workload') || '';
  const service = params.get('service') || '';
  const namespace = params.get('namespace') || '';
  const resp = await getJSON('/api/v1/routes', {workload, service, namespace, since}, signal);
  const isService = resp.kind === 'service';
  const rows = resp.rows.map((r) => {
    const tap = href('/tap', {namespace, resource: isService ? `svc/${service}` : `deploy/${workload}`,
      route: r.route === '[default]' ? '' : r.route, authority: r.authority});
    const cells = [h('span', {class: 'strong'}, r.route), h('span', {class: 'muted'}, r.authority), ...goldenCells(r, tap)];
    if (isService) cells.push(numLink(fmtPercent(r.actual_success_rate), tap), numLink(r.retry_rps.toFixed(2), tap));
    return {attrs: {'data-route': r.route}, cells};
  });
  const heads = ['Route', 'Authority', ...goldenHeads];
  if (isService) heads.push('#First try', '#Retries/s');
  const back = isService ? null
    : h('a', {class: 'button', href: href(`/workload/${namespace}/${workload}`, {})}, 'Charts for ' + workload);
  return h('div', {class: 'view', id: 'routes'},
    pageHead(`Routes of ${resp.kind} ${resp.name}`,
      isService ? `What ${service}’s clients saw per route over the last ${since}; success after retries.`
        : `What ${workload} served per route over the last ${since}. Each number opens a tap of that route.`, back),
    card('Routes', null, table(heads, rows, {id: 'routes-table'})));
}

const chartRanges = ['5m', '15m', '1h', '6h'];

export async function workload({args, params, since, signal}) {
  const [namespace, name] = args;
  const range = params.get('range') || '15m';
  const [stat, pods, series, rts, edges] = await Promise.all([
    getJSON('/api/v1/stat', {kind: 'workload', namespace, since}, signal),
    getJSON('/api/v1/stat', {kind: 'pod', namespace, since}, signal),
    getJSON('/api/v1/timeseries', {namespace, workload: name, since: range, window: since}, signal),
    getJSON('/api/v1/routes', {namespace, workload: name, since}, signal),
    getJSON('/api/v1/edges', {namespace, since}, signal),
  ]);
  const row = stat.rows.find((r) => r.name === name) || {};
  const routesLink = href('/routes', {namespace, workload: name, since: since === '1m' ? '' : since});
  const tapLink = href('/tap', {namespace, resource: `deploy/${name}`});
  const tiles = h('div', {class: 'tiles'},
    tile('Meshed', fmtMeshed(row.meshed, row.total), href('/', {namespace})),
    tile('Ready', fmtReady(row.ready, row.total), href('/', {namespace})),
    tile('Success', fmtPercent(row.success_rate), routesLink),
    tile('RPS', fmtRPS(row.rps, row.success_rate), routesLink),
    tile('P50', fmtLatency(row.latency_ms_p50), routesLink),
    tile('P95', fmtLatency(row.latency_ms_p95), routesLink),
    tile('P99', fmtLatency(row.latency_ms_p99), routesLink));
  const pts = series.points;
  const at = (f) => pts.map((p) => [p.t, f(p)]);
  const rangeLinks = h('div', {class: 'seg'}, chartRanges.map((r) =>
    h('a', {href: href(`/workload/${namespace}/${name}`, {range: r === '15m' ? '' : r, since: since === '1m' ? '' : since}),
      class: r === range ? 'active' : ''}, r)));
  const charts = h('div', {class: 'charts'},
    card('Request rate', `requests per second, each point over ${since}`, lineChart({id: 'chart-rps', unit: 'rps',
      series: [{name: 'RPS', cls: 's-rps', points: at((p) => p.rps)}]})),
    card('Success rate', 'share of responses classified success', lineChart({id: 'chart-success', unit: '%', percent: true,
      series: [{name: 'success', cls: 's-success', points: at((p) => p.success_rate)}]})),
    card('Latency', 'p50, p95 and p99 in milliseconds', lineChart({id: 'chart-latency', unit: 'ms', wide: true,
      series: [
        {name: 'p50', cls: 's-p50', points: at((p) => p.latency_ms_p50)},
        {name: 'p95', cls: 's-p95', points: at((p) => p.latency_ms_p95)},
        {name: 'p99', cls: 's-p99', points: at((p) => p.latency_ms_p99)},
      ]})));
  const routeRows = rts.rows.map((r) => {
    const tap = href('/tap', {namespace, resource: `deploy/${name}`, route: r.route === '[default]' ? '' : r.route});
    return {cells: [h('span', {class: 'strong'}, r.route), h('span', {class: 'muted'}, r.authority), ...goldenCells(r, tap)]};
  });
  const peers = (rows, pick) => rows.map((e) => {
    const [pns, pname] = pick(e);
    const page = href(`/workload/${pns}/${pname}`, {});
    const tap = href('/tap', {namespace: e.src_namespace, resource: `deploy/${e.src_workload}`, to: `deploy/${e.dst_workload}`});
    return {cells: [h('a', {href: page, class: 'strong'}, pname), h('span', {class: 'muted'}, pns), tlsBadge(e),
      successCell(e.success_rate, tap), numLink(fmtRPS(e.rps, e.success_rate), tap)]};
  });
  // Each replica: a tap of that pod behind every number.
  const replicaRows = pods.rows.filter((r) => r.workload === name).map((r) => {
    const tap = href('/tap', {namespace, resource: `pod/${r.name}`});
    return {
      attrs: {'data-pod': r.name},
      cols: ['name', 'meshed', 'ready', ...goldenCols],
      cells: [h('span', {class: 'strong'}, r.name), numLink(fmtMeshed(r.meshed, r.total), tap),
        numLink(fmtReady(r.ready, r.total), tap), ...goldenCells(r, tap)],
    };
  });
  const inbound = edges.rows.filter((e) => e.dst_namespace === namespace && e.dst_workload === name);
  const outbound = edges.rows.filter((e) => e.src_namespace === namespace && e.src_workload === name);
  const peerHeads = ['Workload', 'Namespace', 'mTLS', '#Success', '#RPS'];
  return h('div', {class: 'view', id: 'workload'},
    pageHead(name, `Workload in ${namespace}. Tiles over the last ${since}; charts over the last ${range}.`,
      h('div', {class: 'actions'}, rangeLinks,
        h('a', {class: 'button', href: tapLink}, 'Tap'),
        h('a', {class: 'button', href: href('/top', {namespace, resource: `deploy/${name}`})}, 'Top'))),
    tiles, charts,
    h('div', {class: 'two'},
      card('Called by', null, table(peerHeads, peers(inbound, (e) => [e.src_namespace, e.src_workload]))),
      card('Calls', null, table(peerHeads, peers(outbound, (e) => [e.dst_namespace, e.dst_workload])))),
    card('Replicas', `What each served over the last ${since}; each number opens a tap of that replica.`,
      table(['Replica', '#Meshed', '#Ready', ...goldenHeads], replicaRows, {id: 'replicas'})),
    card('Routes served', `Each number opens a tap of that route.`,
      table(['Route', 'Authority', ...goldenHeads], routeRows)));
}

export function tlsBadge(edge) {
  if (edge.tls === 'true') {
    return h('span', {class: 'badge ok', title: edge.client_id ? `client ${edge.client_id}\nserver ${edge.server_id}` : edge.server_id},
      'mTLS');
  }
  return h('span', {class: 'badge warn', title: 'tls=' + edge.tls}, edge.tls === 'no_identity' ? 'no identity' : 'plaintext');
}

function tile(label, value, link) {
  return h('a', {class: 'tile', href: link}, h('span', {class: 'tile-label'}, label), h('span', {class: 'tile-value'}, value));
}

export function pageHead(title, subtitle, extra) {
  return h('div', {class: 'page-head'},
    h('div', {}, h('h1', {}, title), h('p', {class: 'muted'}, subtitle)), extra || null);
}
