// The edges view: who calls whom, as an SVG graph (callers left of the
// workloads they call, each edge marked mTLS or not and linking to a tap
// of it) above the table skein edges prints.
import {h, s, href, table, card, getJSON, successCell, numLink, fmtRPS} from './dom.js';
import {tlsBadge, pageHead} from './views.js';

const NODE_W = 168, NODE_H = 46, COL_GAP = 170, ROW_GAP = 28, MARGIN = 24;

// layers puts each node one column right of its furthest caller (cycles
// are cut after as many rounds as there are nodes).
function layers(nodes, edges) {
  const layer = new Map(nodes.map((n) => [n, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let moved = false;
    for (const e of edges) {
      if (e.src === e.dst) continue;
      if (layer.get(e.dst) < layer.get(e.src) + 1 && layer.get(e.src) + 1 < nodes.length) {
        layer.set(e.dst, layer.get(e.src) + 1);
        moved = true;
      }
    }
    if (!moved) break;
  }
  return layer;
}

// bezierAt is the point at t of the cubic Bézier curve p0 p1 p2 p3.
function bezierAt(t, p0, p1, p2, p3) {
  const u = 1 - t;
  const w = [u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t];
  return [0, 1].map((i) => w[0] * p0[i] + w[1] * p1[i] + w[2] * p2[i] + w[3] * p3[i]);
}

export function edgeGraph(rows, since) {
  const key = (ns, w) => ns + '/' + w;
  const edges = rows.map((r) => ({row: r, src: key(r.src_namespace, r.src_workload), dst: key(r.dst_namespace, r.dst_workload)}));
  const nodes = [...new Set(edges.flatMap((e) => [e.src, e.dst]))].sort();
  if (!nodes.length) return h('p', {class: 'empty'}, 'No calls between workloads in this window.');
  const layer = layers(nodes, edges);
  const columns = [];
  for (const n of nodes) (columns[layer.get(n)] ||= []).push(n);
  const pos = new Map();
  const tallest = Math.max(...columns.map((c) => c.length));
  const height = MARGIN * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP;
  columns.forEach((col, i) => {
    const colHeight = col.length * NODE_H + (col.length - 1) * ROW_GAP;
    col.forEach((n, j) => pos.set(n, {x: MARGIN + i * (NODE_W + COL_GAP), y: (height - colHeight) / 2 + j * (NODE_H + ROW_GAP)}));
  });
  const width = MARGIN * 2 + columns.length * NODE_W + (columns.length - 1) * COL_GAP;
  const maxRPS = Math.max(...rows.map((r) => r.rps), 0.001);

  const svg = s('svg', {class: 'edge-graph', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'who calls whom'},
    s('defs', {},
      s('marker', {id: 'arrow-ok', viewBox: '0 0 10 10', refX: 9, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 11, markerHeight: 11, orient: 'auto-start-reverse'},
        s('path', {d: 'M0,0L10,5L0,10z', class: 'arrow ok'})),
      s('marker', {id: 'arrow-warn', viewBox: '0 0 10 10', refX: 9, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 11, markerHeight: 11, orient: 'auto-start-reverse'},
        s('path', {d: 'M0,0L10,5L0,10z', class: 'arrow warn'}))));
  for (const e of edges) {
    const a = pos.get(e.src), b = pos.get(e.dst);
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2;
    const bend = Math.max(40, Math.abs(x2 - x1) / 2);
    const d = x2 > x1
      ? `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`
      : `M${a.x + NODE_W / 2},${a.y + NODE_H} C${a.x + NODE_W / 2},${a.y + NODE_H + 60} ${b.x + NODE_W / 2},${b.y + NODE_H + 60} ${b.x + NODE_W / 2},${b.y + NODE_H + 2}`;
    const ok = e.row.tls === 'true';
    const widthPx = 1.5 + 3 * Math.sqrt(e.row.rps / maxRPS);
    // The label sits past the middle, where fanned-out edges have parted.
    const [mx, my] = x2 > x1 ? bezierAt(0.62, [x1, y1], [x1 + bend, y1], [x2 - bend, y2], [x2, y2])
      : [(a.x + b.x + NODE_W) / 2, Math.max(a.y, b.y) + NODE_H + 45];
    const label = `${ok ? 'mTLS' : e.row.tls === 'no_identity' ? 'no identity' : 'plaintext'} · ${fmtRPS(e.row.rps, e.row.success_rate)} rps`;
    const labelW = label.length * 6.4 + 14;
    svg.append(s('a', {href: href('/tap', {namespace: e.row.src_namespace, resource: `deploy/${e.row.src_workload}`, to: `deploy/${e.row.dst_workload}`})},
      s('g', {class: 'edge ' + (ok ? 'ok' : 'warn'), 'data-src': e.src, 'data-dst': e.dst, 'data-tls': e.row.tls},
        s('title', {}, `${e.src} → ${e.dst}\n${ok ? `mTLS: client ${e.row.client_id || '?'}, server ${e.row.server_id}` : 'not mTLS: ' + e.row.tls}`),
        s('path', {d, fill: 'none', 'stroke-width': widthPx.toFixed(1), 'marker-end': `url(#arrow-${ok ? 'ok' : 'warn'})`}),
        s('rect', {class: 'edge-label-bg', x: mx - labelW / 2, y: my - 10, width: labelW, height: 20, rx: 10}),
        s('text', {class: 'edge-label', x: mx, y: my + 4, 'text-anchor': 'middle'}, label))));
  }
  for (const n of nodes) {
    const p = pos.get(n);
    const [ns, name] = n.split('/');
    svg.append(s('a', {href: href(`/workload/${ns}/${name}`, {since: since === '1m' ? '' : since})},
      s('g', {class: 'node', 'data-node': n},
        s('rect', {x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 8}),
        s('text', {class: 'node-name', x: p.x + 14, y: p.y + 20}, name),
        s('text', {class: 'node-ns', x: p.x + 14, y: p.y + 36}, ns))));
  }
  return h('div', {class: 'graph-wrap'}, svg);
}

export async function edges({ns, since, signal}) {
  const resp = await getJSON('/api/v1/edges', {namespace: ns, since}, signal);
  const rows = resp.rows.map((r) => {
    const tap = href('/tap', {namespace: r.src_namespace, resource: `deploy/${r.src_workload}`, to: `deploy/${r.dst_workload}`});
    return {
      attrs: {'data-src': r.src_namespace + '/' + r.src_workload, 'data-dst': r.dst_namespace + '/' + r.dst_workload},
      cells: [
        h('a', {href: href(`/workload/${r.src_namespace}/${r.src_workload}`, {}), class: 'strong'}, r.src_workload),
        h('a', {href: href(`/workload/${r.dst_namespace}/${r.dst_workload}`, {}), class: 'strong'}, r.dst_workload),
        tlsBadge(r),
        h('span', {class: 'mono muted', title: r.client_id}, shortID(r.client_id)),
        successCell(r.success_rate, tap),
        numLink(fmtRPS(r.rps, r.success_rate), tap),
      ],
    };
  });
  return h('div', {class: 'view', id: 'edges'},
    pageHead('Edges', `Who calls whom over the last ${since}. Green edges are mutual TLS with verified identities; click one to tap it.`),
    card('Graph', null, edgeGraph(resp.rows, since),
      h('div', {class: 'legend graph-legend'}, h('span', {class: 'key s-ok'}, 'mTLS'), h('span', {class: 'key s-warn'}, 'not mTLS'),
        h('span', {class: 'muted'}, 'line width: requests per second'))),
    card('Edges', 'The client identity is the one the callee’s proxies verified.',
      table(['From', 'To', 'mTLS', 'Client identity', '#Success', '#RPS'], rows, {id: 'edges-table'})));
}

// shortID drops spiffe://trust-domain/ from an identity.
function shortID(id) {
  if (!id) return '-';
  return id.replace(/^spiffe:\/\/[^/]+\//, '');
}
