// The console's page: five views over the JSON API (/api/v1/...), charts and the
// map drawn with ECharts. No framework: each view has a render function that
// fetches what it shows and fills its section.
'use strict';

const METRICS = [
  { key: 'bytes_written', label: 'Bytes sent', kind: 'bytes' },
  { key: 'bytes_read', label: 'Bytes received', kind: 'bytes' },
  { key: 'rtt', label: 'TCP latency (rtt)', kind: 'us', mean: true },
  { key: 'rtt_var', label: 'TCP jitter (rtt_var)', kind: 'us', mean: true },
  { key: 'tcp_established', label: 'TCP connections', kind: 'count' },
  { key: 'retransmits', label: 'TCP retransmits', kind: 'count' },
  { key: 'tcp_closed', label: 'TCP closes', kind: 'count' },
];
const FILL_COLORS = ['#2e7d32', '#9ccc65', '#fdd835', '#fb8c00', '#c62828'];
const GREY = '#b8c2cc';
const NO_VALUE = '#dde3ea';
const CONN_KEYS = [
  ['host', 'host'], ['src_ip', 'src ip'], ['src_port', 'src port'], ['dst_ip', 'dst ip'], ['dst_port', 'dst port'],
  ['transport', 'transport'], ['direction', 'direction'], ['process_name', 'process'], ['dst_domain', 'domain'],
];

const state = {
  rangeMs: 48 * 3600 * 1000,
  hosts: [],
  charts: [],
  connRows: [],
  connSort: { key: 'traffic', asc: false },
  connColumns: new Set(METRICS.map((m) => m.key)),
};
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// ------------------------------------------------------------------ formatting
function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
function fmtUs(n) {
  if (n === null || n === undefined) return '–';
  return n >= 1000 ? `${(n / 1000).toFixed(2)} ms` : `${Math.round(n)} µs`;
}
function fmtCount(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 2 });
}
function fmt(kind, n) {
  return kind === 'bytes' ? fmtBytes(n) : kind === 'us' ? fmtUs(n) : fmtCount(n);
}
function fmtTime(ms) {
  const d = new Date(ms);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// ------------------------------------------------------------------ API
function status(text, error) {
  const s = $('#status');
  s.textContent = text;
  s.className = error ? 'error' : '';
}

async function api(path, params = {}) {
  const q = new URLSearchParams();
  const to = Date.now();
  q.set('from', String(to - state.rangeMs));
  q.set('to', String(to));
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const res = await fetch(`${path}?${q}`, { credentials: 'same-origin' });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
  return body;
}

/** `dst_port = 443, transport = tcp` (or `dst_port:443 and ...`) as the API's where list. */
function parseFilter(text) {
  const out = [];
  for (const part of text.split(/,|\band\b/i)) {
    if (!part.trim()) continue;
    const m = /^\s*([A-Za-z_][\w.-]*)\s*(?:=|:)\s*(.*?)\s*$/.exec(part);
    if (!m) throw new Error(`filter "${part.trim()}": write tag = value, e.g. dst_port = 443`);
    out.push(`${m[1]}:${m[2].replace(/^["']|["']$/g, '')}`);
  }
  return out;
}

// ------------------------------------------------------------------ routing
function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const [pathPart, query = ''] = h.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { view: parts[0] || 'host', arg: parts[1], q: new URLSearchParams(query) };
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  const r = route();
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${r.view}`;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === r.view);
  for (const c of state.charts) c.dispose();
  state.charts = [];
  status('loading…');
  try {
    if (!state.hosts.length || r.view === 'host') await loadHosts();
    if (r.view === 'host') await renderHost(r);
    else if (r.view === 'connections') await renderConnections(r);
    else if (r.view === 'map') await renderMap(r);
    else if (r.view === 'dns') await renderDns(r);
    else if (r.view === 'bash') await renderBash(r);
    status(`updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.rendered = `${r.view}:${Date.now()}`;
  } catch (err) {
    status(err.message, true);
    document.body.dataset.rendered = `${r.view}:error`;
  }
}

async function loadHosts() {
  const { hosts } = await api('/api/v1/hosts');
  state.hosts = hosts.map((h) => h.host);
  for (const sel of ['#host-select', '#conn-host', '#dns-host', '#bash-host']) {
    const el = $(sel);
    const keep = el.value;
    const first = sel === '#host-select' ? '' : '<option value="">all hosts</option>';
    el.innerHTML = first + state.hosts.map((h) => `<option value="${esc(h)}">${esc(h)}</option>`).join('');
    if (keep) el.value = keep;
  }
}

// ------------------------------------------------------------------ host network view
function switchValue(id, value) {
  for (const b of document.querySelectorAll(`#${id} button`)) b.classList.toggle('on', b.dataset.value === (value || ''));
}

async function renderHost(r) {
  const host = r.arg || state.hosts[0];
  const box = $('#host-charts');
  if (!host) {
    box.innerHTML = '<p class="empty">No host has reported yet: point a collector at this console (--datakit-apiserver).</p>';
    return;
  }
  $('#host-select').value = host;
  const transport = r.q.get('transport') || '';
  const direction = r.q.get('direction') || '';
  const where = r.q.getAll('where');
  switchValue('transport-switch', transport);
  switchValue('direction-switch', direction);
  $('#host-where').innerHTML = where.length
    ? where.map((w) => `<span>${esc(w.replace(':', ' = '))}</span>`).join('') + '<button id="clear-where">clear filters</button>'
    : '';
  const clear = $('#clear-where');
  if (clear) clear.onclick = () => go(hostHash(host, { transport, direction }));
  const d = await api(`/api/v1/hosts/${encodeURIComponent(host)}/network`, { transport, direction, where });
  box.innerHTML = METRICS.map(
    (m) => `<div class="chart-box" data-testid="metric-${m.key}"><h3><span>${m.label}</span>
      <span class="total" data-metric="${m.key}" data-value="${d.totals[m.key] ?? ''}">${m.mean ? 'mean ' : 'total '}${fmt(m.kind, d.totals[m.key])}</span></h3>
      <div class="chart" id="chart-${m.key}"></div></div>`,
  ).join('');
  for (const m of METRICS) {
    const chart = echarts.init($(`#chart-${m.key}`));
    chart.setOption({
      animation: false,
      grid: { left: 64, right: 12, top: 10, bottom: 24 },
      tooltip: { trigger: 'axis', valueFormatter: (v) => fmt(m.kind, v) },
      xAxis: { type: 'time' },
      yAxis: { type: 'value', axisLabel: { formatter: (v) => fmt(m.kind, v) } },
      series: [{
        type: 'line', showSymbol: false, connectNulls: false, areaStyle: m.mean ? undefined : { opacity: 0.15 },
        data: d.times.map((t, i) => [t, d.series[m.key][i]]),
      }],
    });
    state.charts.push(chart);
  }
}

function hostHash(host, { transport, direction, where } = {}) {
  const q = new URLSearchParams();
  if (transport) q.set('transport', transport);
  if (direction) q.set('direction', direction);
  for (const w of where || []) q.append('where', w);
  const s = q.toString();
  return `#/host/${encodeURIComponent(host)}${s ? `?${s}` : ''}`;
}

function currentHostArgs() {
  const r = route();
  return { host: r.arg || state.hosts[0], transport: r.q.get('transport') || '', direction: r.q.get('direction') || '', where: r.q.getAll('where') };
}

// ------------------------------------------------------------------ connection analysis
async function renderConnections(r) {
  const host = r.q.get('host') || '';
  const filter = r.q.get('filter') || '';
  $('#conn-host').value = host;
  $('#conn-filter').value = filter;
  $('#conn-columns').innerHTML = 'Columns: ' + METRICS.map(
    (m) => `<label><input type="checkbox" data-col="${m.key}" ${state.connColumns.has(m.key) ? 'checked' : ''}>${m.label}</label>`,
  ).join('');
  for (const cb of document.querySelectorAll('#conn-columns input')) {
    cb.onchange = () => {
      if (cb.checked) state.connColumns.add(cb.dataset.col);
      else state.connColumns.delete(cb.dataset.col);
      drawConnections();
    };
  }
  const d = await api('/api/v1/connections', { host, where: parseFilter(filter), limit: 2000 });
  state.connRows = d.rows;
  state.connTotal = d.total;
  drawConnections();
}

function drawConnections() {
  const metrics = METRICS.filter((m) => state.connColumns.has(m.key));
  const { key, asc } = state.connSort;
  const rows = [...state.connRows];
  const val = (r) => (key === 'traffic' ? r.bytes_written + r.bytes_read : r[key]);
  rows.sort((a, b) => {
    const x = val(a);
    const y = val(b);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return asc ? c : -c;
  });
  const th = (k, label, num) => `<th data-sort="${k}" class="${num ? 'num' : ''} ${key === k ? `sorted ${asc ? 'asc' : ''}` : ''}">${label}</th>`;
  $('#conn-table thead').innerHTML = `<tr>${CONN_KEYS.map(([k, l]) => th(k, l)).join('')}${metrics.map((m) => th(m.key, m.label, true)).join('')}</tr>`;
  $('#conn-table tbody').innerHTML = rows.length
    ? rows.map((r, i) => `<tr data-row="${state.connRows.indexOf(r)}" data-index="${i}">${CONN_KEYS.map(([k]) => `<td data-col="${k}">${esc(r[k] ?? '')}</td>`).join('')}${metrics
        .map((m) => `<td class="num" data-col="${m.key}" data-value="${r[m.key] ?? ''}">${fmt(m.kind, r[m.key])}</td>`)
        .join('')}</tr>`).join('')
    : `<tr><td class="empty" colspan="${CONN_KEYS.length + metrics.length}">No connections in this range${state.connTotal === 0 ? '' : ''}.</td></tr>`;
  for (const h of document.querySelectorAll('#conn-table th')) {
    h.onclick = () => {
      const k = h.dataset.sort;
      state.connSort = { key: k, asc: state.connSort.key === k ? !state.connSort.asc : false };
      drawConnections();
    };
  }
  for (const tr of document.querySelectorAll('#conn-table tbody tr[data-row]')) {
    tr.onclick = () => {
      const r = state.connRows[Number(tr.dataset.row)];
      const where = ['src_ip', 'src_port', 'dst_ip', 'dst_port', 'process_name', 'dst_domain'].filter((k) => r[k] !== null && r[k] !== '').map((k) => `${k}:${r[k]}`);
      go(hostHash(r.host, { transport: r.transport, direction: r.direction, where }));
    };
  }
}

// ------------------------------------------------------------------ network map
function mapLayout(nodes) {
  const hosts = nodes.filter((n) => n.kind === 'host');
  const outside = nodes.filter((n) => n.kind !== 'host');
  const pos = new Map();
  hosts.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, hosts.length) - Math.PI / 2;
    pos.set(n.id, hosts.length === 1 ? [0, 0] : [300 * Math.cos(a), 300 * Math.sin(a)]);
  });
  // Addresses of no reporting host: a column to the right of the hosts.
  outside.forEach((n, i) => {
    pos.set(n.id, [hosts.length > 1 ? 560 : 300, (i - (outside.length - 1) / 2) * 90]);
  });
  return pos;
}

function bandColor(band) {
  return band === null || band === undefined ? NO_VALUE : band < 0 ? GREY : FILL_COLORS[band];
}

function metricLines(m) {
  return METRICS.map((x) => `<div><span>${x.label}</span>: <b data-metric="${x.key}">${fmt(x.kind, m[x.key])}</b></div>`).join('');
}

async function renderMap() {
  const fill = $('#map-fill').value;
  const custom = $('#map-custom').checked;
  const params = { fill, outside: $('#map-outside').value, q: $('#map-q').value.trim(), where: parseFilter($('#map-filter').value) };
  if (custom) {
    params.min = $('#map-min').value;
    params.max = $('#map-max').value;
  }
  const g = await api('/api/v1/map', params);
  state.map = g;
  const fillMeta = METRICS.find((m) => m.key === fill);
  $('#map-legend').innerHTML = g.fill.bands.length
    ? `<span>${fillMeta.label}:</span>` + g.fill.bands.map((b, i) => `<span data-band="${i}"><i style="background:${FILL_COLORS[i]}"></i>${fmt(fillMeta.kind, b[0])} – ${fmt(fillMeta.kind, b[1])}</span>`).join('') +
      `<span><i style="background:${GREY}"></i>out of range</span><span><i style="background:${NO_VALUE}"></i>no value</span>`
    : '<span>No values to fill by in this range.</span>';
  const pos = mapLayout(g.nodes);
  const maxIn = Math.max(1, ...g.nodes.map((n) => n.inbound));
  const maxTraffic = Math.max(1, ...g.edges.map((e) => e.traffic));
  const chart = echarts.init($('#map-chart'));
  state.charts.push(chart);
  state.mapChart = chart;
  chart.setOption({
    animation: false,
    tooltip: {
      confine: true,
      formatter: (p) => {
        if (p.dataType === 'node') {
          const n = g.nodes[p.dataIndex];
          return `<div class="map-tip" data-node="${esc(n.id)}"><b>${esc(n.id)}</b>${n.kind === 'outside' ? ' (no reporting host)' : ''}<br>
            <small>${esc(n.addresses.slice(0, 6).join(', '))}${n.addresses.length > 6 ? ', …' : ''}</small>${metricLines(n.metrics)}</div>`;
        }
        const e = g.edges[p.dataIndex];
        return `<div class="map-tip" data-edge="${esc(e.source)}>${esc(e.target)}"><b>${esc(e.source)} → ${esc(e.target)}</b> (${esc(e.direction)}, seen by ${esc(e.source)})${metricLines(e.metrics)}</div>`;
      },
    },
    series: [{
      type: 'graph',
      layout: 'none',
      roam: true,
      label: { show: true, position: 'bottom', fontSize: 12 },
      edgeSymbol: ['none', 'arrow'],
      edgeSymbolSize: 7,
      emphasis: { focus: 'adjacency' },
      data: g.nodes.map((n) => ({
        name: n.id,
        x: pos.get(n.id)[0],
        y: pos.get(n.id)[1],
        symbol: n.kind === 'host' ? 'circle' : 'roundRect',
        symbolSize: 18 + 42 * Math.sqrt(n.inbound / maxIn),
        itemStyle: { color: bandColor(n.band), borderColor: n.matched ? '#1f2933' : '#52606d', borderWidth: n.matched ? 3 : 1 },
      })),
      links: g.edges.map((e) => ({
        source: e.source,
        target: e.target,
        lineStyle: {
          width: 1 + 7 * Math.sqrt(e.traffic / maxTraffic),
          curveness: e.direction === 'incoming' ? 0.35 : 0.18,
          color: bandColor(e.band),
          opacity: 0.85,
        },
      })),
    }],
  });
  chart.on('click', (p) => {
    if (p.dataType === 'node' && g.nodes[p.dataIndex].kind === 'host') go(hostHash(g.nodes[p.dataIndex].id));
  });
}

/** For tests and curious users: where a node is drawn, in page pixels. */
window.__console = {
  nodeNames() {
    return state.map ? state.map.nodes.map((n) => n.id) : [];
  },
  nodePixel(name) {
    const chart = state.mapChart;
    const data = chart.getModel().getSeriesByIndex(0).getData();
    const idx = data.indexOfName(name);
    if (idx < 0) return null;
    const [x, y] = data.getItemLayout(idx);
    const [px, py] = chart.convertToPixel({ seriesIndex: 0 }, [x, y]);
    const rect = chart.getDom().getBoundingClientRect();
    return { x: rect.left + px, y: rect.top + py };
  },
};

// ------------------------------------------------------------------ DNS
async function renderDns() {
  const host = $('#dns-host').value;
  const d = await api('/api/v1/dns', { host });
  const t = d.totals || {};
  const card = (k, label, v) => `<div class="card" data-testid="dns-${k}" data-value="${t[k] ?? ''}">${label}<b>${v}</b></div>`;
  $('#dns-cards').innerHTML = card('lookups', 'Lookups', fmtCount(t.lookups)) + card('latency', 'Mean latency', t.latency == null ? '–' : `${(t.latency / 1e6).toFixed(2)} ms`) +
    card('nxdomain', 'NXDOMAIN', fmtCount(t.nxdomain)) + card('servfail', 'SERVFAIL', fmtCount(t.servfail)) + card('timeouts', 'Timeouts', fmtCount(t.timeouts));
  const chart = echarts.init($('#dns-chart'));
  state.charts.push(chart);
  chart.setOption({
    animation: false,
    legend: { top: 0 },
    grid: { left: 50, right: 12, top: 28, bottom: 24 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'time' },
    yAxis: { type: 'value' },
    series: ['lookups', 'nxdomain', 'timeouts'].map((k) => ({ name: k, type: 'bar', barMaxWidth: 24, stack: k === 'lookups' ? 'a' : 'b', data: d.series.map((r) => [r.t, r[k]]) })),
  });
  const table = (sel, rows, keys) => {
    $(`${sel} thead`).innerHTML = `<tr>${keys.map(([, l, num]) => `<th class="${num ? 'num' : ''}">${l}</th>`).join('')}<th class="num">lookups</th><th class="num">mean latency</th><th class="num">max latency</th><th class="num">NXDOMAIN</th><th class="num">timeouts</th></tr>`;
    $(`${sel} tbody`).innerHTML = rows.map((r) => `<tr>${keys.map(([k]) => `<td>${esc(r[k])}</td>`).join('')}<td class="num" data-col="lookups">${fmtCount(r.lookups)}</td>
      <td class="num">${r.latency == null ? '–' : `${(r.latency / 1e6).toFixed(2)} ms`}</td><td class="num">${r.latency_max == null ? '–' : `${(r.latency_max / 1e6).toFixed(2)} ms`}</td>
      <td class="num" data-col="nxdomain">${fmtCount(r.nxdomain)}</td><td class="num" data-col="timeouts">${fmtCount(r.timeouts)}</td></tr>`).join('') ||
      `<tr><td class="empty" colspan="${keys.length + 5}">No DNS lookups in this range.</td></tr>`;
  };
  table('#dns-clients', d.byClient, [['host', 'host'], ['client', 'client']]);
  table('#dns-servers', d.byServer, [['server', 'server'], ['port', 'port']]);
}

// ------------------------------------------------------------------ bash
async function renderBash() {
  const d = await api('/api/v1/bash', { host: $('#bash-host').value, q: $('#bash-q').value.trim(), limit: 1000 });
  $('#bash-count').textContent = `${fmtCount(d.total)} line(s)${d.total > d.rows.length ? `, newest ${d.rows.length} shown` : ''}`;
  $('#bash-table tbody').innerHTML = d.rows.map((r) => `<tr><td>${fmtTime(r.ts)}</td><td>${esc(r.host)}</td><td>${esc(r.user)}</td><td>${esc(r.pid)}</td><td class="cmd">${esc(r.cmd)}</td></tr>`).join('') ||
    '<tr><td class="empty" colspan="5">No bash lines in this range.</td></tr>';
}

// ------------------------------------------------------------------ wiring
$('#range').onchange = () => { state.rangeMs = Number($('#range').value); render(); };
$('#refresh').onclick = () => render();
$('#host-select').onchange = () => go(hostHash($('#host-select').value));
for (const id of ['transport-switch', 'direction-switch']) {
  for (const b of document.querySelectorAll(`#${id} button`)) {
    b.onclick = () => {
      const a = currentHostArgs();
      a[id === 'transport-switch' ? 'transport' : 'direction'] = b.dataset.value;
      go(hostHash(a.host, a));
    };
  }
}
const connGo = () => {
  const q = new URLSearchParams();
  if ($('#conn-host').value) q.set('host', $('#conn-host').value);
  if ($('#conn-filter').value.trim()) q.set('filter', $('#conn-filter').value.trim());
  go(`#/connections${q.toString() ? `?${q}` : ''}`);
};
$('#conn-apply').onclick = connGo;
$('#conn-host').onchange = connGo;
$('#conn-filter').onkeydown = (e) => { if (e.key === 'Enter') connGo(); };
$('#map-apply').onclick = () => render();
for (const id of ['#map-fill', '#map-outside']) $(id).onchange = () => render();
$('#map-q').onkeydown = (e) => { if (e.key === 'Enter') render(); };
$('#map-filter').onkeydown = (e) => { if (e.key === 'Enter') render(); };
$('#map-custom').onchange = () => {
  $('#map-min').disabled = $('#map-max').disabled = !$('#map-custom').checked;
  if (!$('#map-custom').checked) render();
};
$('#dns-host').onchange = () => render();
$('#bash-apply').onclick = () => render();
$('#bash-host').onchange = () => render();
$('#bash-q').onkeydown = (e) => { if (e.key === 'Enter') render(); };
window.addEventListener('hashchange', render);
window.addEventListener('resize', () => state.charts.forEach((c) => c.resize()));
render();
