// The console's page in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Each view loads without console errors and shows the numbers
// the API returns; the dst_port filter narrows the connection table; hovering a
// map node shows its seven metrics; search finds a host. Screenshots of every
// view go to $CONSOLE_SCREENSHOTS (default: a temporary directory).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser';
import { postAll, postLines, sampleTraffic, startConsole, type RunningConsole } from '../helpers/console';

const NOW = Date.now();
const SHOTS = process.env.CONSOLE_SCREENSHOTS ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-shots-'));
const METRIC_KEYS = ['bytes_written', 'bytes_read', 'rtt', 'rtt_var', 'tcp_established', 'retransmits', 'tcp_closed'];

let c: RunningConsole;
let browser: { context: BrowserContext; close: () => Promise<void> };
let page: Page;
const errors: string[] = [];

beforeAll(async () => {
  c = await startConsole();
  await postAll(c.url, sampleTraffic(NOW));
  const ts = NOW - 10 * 60_000;
  const dns = [
    `dnsflow,host=web-1,src_ip=10.1.0.1,dst_ip=10.1.0.53,src_port=*,dst_port=53,transport=udp,rcode_name=NOERROR count=40i,rcode=0i,latency=2500000i,latency_max=9000000i ${ts}`,
    `dnsflow,host=web-1,src_ip=10.1.0.1,dst_ip=10.1.0.53,src_port=*,dst_port=53,transport=udp,rcode_name=NXDOMAIN count=5i,rcode=3i,latency=1000000i,latency_max=2000000i ${ts}`,
    `dnsflow,host=db-1,src_ip=10.1.0.2,dst_ip=10.1.0.53,src_port=*,dst_port=53,transport=udp,rcode_name=TIMEOUT count=2i,rcode=-1i,latency=0i,latency_max=0i ${ts}`,
  ].join('\n');
  expect((await postLines(c.url, 'network', 'ebpf-net/dnsflow', dns, { precision: 'ms' })).status).toBe(200);
  const bash = ['psql -h db-1 -U app', 'ls -la /var/log', 'systemctl restart nginx']
    .map((cmd, i) => `bash,host=${i === 1 ? 'db-1' : 'web-1'},service=ebpf,source=bash pid="${100 + i}",user="${i === 1 ? 'root' : 'alice'}",cmd="${cmd}",message="m",status="info" ${ts + i * 1000}`)
    .join('\n');
  expect((await postLines(c.url, 'logging', 'ebpf-bash', bash, { precision: 'ms' })).status).toBe(200);
  const b = await launchChromium();
  browser = b;
  page = await b.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
});

afterAll(async () => {
  await browser?.close();
  await c?.stop();
});

/** Opens a view and waits until the page says it rendered it (or failed). */
async function open(hash: string): Promise<void> {
  const before = await page.evaluate(() => document.body?.dataset.rendered ?? '').catch(() => '');
  if (page.url().startsWith(c.url)) await page.evaluate((h) => (location.hash = h), hash);
  else await page.goto(`${c.url}/${hash}`);
  await rendered(before);
}

async function rendered(before: string): Promise<void> {
  const state = await page.waitForFunction((b) => {
    const r = document.body.dataset.rendered;
    return r && r !== b ? r : false;
  }, before, { timeout: 15_000 });
  const r = (await state.jsonValue()) as string;
  expect(r, `render failed: ${await page.textContent('#status')}`).not.toMatch(/:error$/);
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function noErrors(): void {
  expect(errors).toEqual([]);
}

describe('console page in Chromium', () => {
  it('host network view: the seven totals are the API\'s, the switches change them', async () => {
    await page.setViewportSize({ width: 1400, height: 900 });
    await open('#/host/web-1');
    const api = await c.api<{ totals: Record<string, number | null> }>(`/api/v1/hosts/web-1/network`);
    for (const k of METRIC_KEYS) {
      const el = page.locator(`.total[data-metric="${k}"]`);
      expect(Number(await el.getAttribute('data-value')), k).toBeCloseTo(api.totals[k]!, 6);
      const shown = await page.evaluate(([key, v]) => fmt(METRICS.find((m: { key: string }) => m.key === key).kind, v), [k, api.totals[k]] as const);
      expect(await el.textContent()).toContain(shown);
    }
    expect(await page.locator('#host-charts canvas').count()).toBeGreaterThanOrEqual(7);
    await shot('host-network');
    const before = await page.evaluate(() => document.body.dataset.rendered ?? '');
    await page.click('#transport-switch button[data-value="udp"]');
    await rendered(before);
    const udp = await c.api<{ totals: Record<string, number> }>(`/api/v1/hosts/web-1/network?transport=udp`);
    expect(Number(await page.locator('.total[data-metric="bytes_written"]').getAttribute('data-value'))).toBe(udp.totals.bytes_written);
    expect(udp.totals.bytes_written).not.toBe((await c.api<{ totals: Record<string, number> }>(`/api/v1/hosts/web-1/network`)).totals.bytes_written);
    noErrors();
  });

  it('connection analysis: the API\'s rows, dst_port filter narrows, sorting, a row opens its series', async () => {
    await open('#/connections');
    const api = await c.api<{ rows: Record<string, number | string>[] }>('/api/v1/connections');
    expect(await page.locator('#conn-table tbody tr').count()).toBe(api.rows.length);
    expect(api.rows.length).toBe(4);
    await shot('connections');
    const before = await page.evaluate(() => document.body.dataset.rendered ?? '');
    await page.fill('#conn-filter', 'dst_port = 443');
    await page.press('#conn-filter', 'Enter');
    await rendered(before);
    const rows = page.locator('#conn-table tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().locator('td[data-col="dst_port"]').textContent()).toBe('443');
    const only = (await c.api<{ rows: Record<string, number>[] }>('/api/v1/connections?where=dst_port:443')).rows[0]!;
    expect(Number(await rows.first().locator('td[data-col="bytes_read"]').getAttribute('data-value'))).toBe(only.bytes_read);
    // back to all rows; sort by bytes sent, both ways
    const b2 = await page.evaluate(() => document.body.dataset.rendered ?? '');
    await page.fill('#conn-filter', '');
    await page.press('#conn-filter', 'Enter');
    await rendered(b2);
    await page.click('#conn-table th[data-sort="bytes_written"]');
    const sent = async () => (await page.locator('#conn-table tbody td[data-col="bytes_written"]').evaluateAll((tds) => tds.map((td) => Number(td.getAttribute('data-value')))));
    const desc = await sent();
    expect(desc).toEqual([...desc].sort((x, y) => y - x));
    await page.click('#conn-table th[data-sort="bytes_written"]');
    const asc = await sent();
    expect(asc).toEqual([...desc].reverse());
    // a row opens the host view filtered to its tags
    const b3 = await page.evaluate(() => document.body.dataset.rendered ?? '');
    await page.locator('#conn-table tbody tr', { hasText: '5432' }).first().click();
    await rendered(b3);
    expect(page.url()).toContain('#/host/');
    expect(await page.locator('#host-where span').count()).toBeGreaterThanOrEqual(4);
    const hash = decodeURIComponent(new URL(page.url()).hash);
    const q = new URLSearchParams(hash.split('?')[1]);
    const host = hash.split('?')[0]!.replace('#/host/', '');
    const series = await c.api<{ totals: Record<string, number> }>(`/api/v1/hosts/${host}/network?${q}`);
    expect(Number(await page.locator('.total[data-metric="bytes_read"]').getAttribute('data-value'))).toBe(series.totals.bytes_read);
    noErrors();
  });

  it('network map: hovering a node shows its seven metrics, search finds a host, a click opens it', async () => {
    await open('#/map');
    const api = await c.api<{ nodes: { id: string; metrics: Record<string, number | null> }[] }>('/api/v1/map');
    expect(await page.evaluate(() => window.__console.nodeNames())).toEqual(api.nodes.map((n) => n.id));
    await shot('network-map');
    const at = (await page.evaluate(() => window.__console.nodePixel('db-1'))) as { x: number; y: number };
    await page.mouse.move(at.x, at.y);
    const tip = page.locator('.map-tip[data-node="db-1"]');
    await tip.waitFor({ state: 'visible', timeout: 5000 });
    const db = api.nodes.find((n) => n.id === 'db-1')!;
    for (const k of METRIC_KEYS) {
      const text = await tip.locator(`[data-metric="${k}"]`).textContent();
      const want = await page.evaluate(([key, v]) => fmt(METRICS.find((m: { key: string }) => m.key === key).kind, v), [k, db.metrics[k]] as const);
      expect(text, k).toBe(want);
    }
    await shot('network-map-hover');
    const before = await page.evaluate(() => document.body.dataset.rendered ?? '');
    await page.fill('#map-q', 'db');
    await page.press('#map-q', 'Enter');
    await rendered(before);
    // the host found, and its peer; not the outside node
    expect(await page.evaluate(() => window.__console.nodeNames())).toEqual(['db-1', 'web-1']);
    const b2 = await page.evaluate(() => document.body.dataset.rendered ?? '');
    const p = (await page.evaluate(() => window.__console.nodePixel('db-1'))) as { x: number; y: number };
    await page.mouse.click(p.x, p.y);
    await rendered(b2);
    expect(page.url()).toContain('#/host/db-1');
    noErrors();
  });

  it('DNS page: the API\'s lookups, NXDOMAIN and timeouts', async () => {
    await open('#/dns');
    const api = await c.api<{ totals: Record<string, number>; byClient: unknown[] }>('/api/v1/dns');
    for (const k of ['lookups', 'nxdomain', 'timeouts']) {
      expect(Number(await page.locator(`[data-testid="dns-${k}"]`).getAttribute('data-value')), k).toBe(api.totals[k]);
    }
    expect(api.totals).toMatchObject({ lookups: 47, nxdomain: 5, timeouts: 2 });
    expect(await page.locator('#dns-clients tbody tr').count()).toBe(api.byClient.length);
    await shot('dns');
    noErrors();
  });

  it('bash page: the lines, and search narrows them', async () => {
    await open('#/bash');
    expect(await page.locator('#bash-table tbody tr').count()).toBe(3);
    await shot('bash');
    const before = await page.evaluate(() => document.body.dataset.rendered ?? '');
    await page.fill('#bash-q', 'psql');
    await page.click('#bash-apply');
    await rendered(before);
    const rows = page.locator('#bash-table tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().locator('td.cmd').textContent()).toBe('psql -h db-1 -U app');
    noErrors();
  });
});

declare global {
  interface Window {
    __console: { nodeNames(): string[]; nodePixel(name: string): { x: number; y: number } | null };
  }
  // the page's own formatter (app.js), used to check what it displays
  function fmt(kind: string, v: unknown): string;
  const METRICS: { key: string; kind: string }[];
}
