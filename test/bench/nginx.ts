// Short connections users know: nginx on test host b, ApacheBench on a,
// keep-alive off (a new connection per request), 32 clients, with the
// collector running vs not. A probe of the alternated rounds (lib/rounds.ts).
import { ab, startNginx, type AbResult, type WebServer } from './lib/nginx';
import { floorRow, modelRow, ratioRow, type AbProbe, type RoundSamples } from './lib/rounds';
import { info, type Row, type ScenarioResult } from './lib/types';
import { round } from './lib/util';

const NGINX_PORT = 26150;
const CLIENTS = 32;

export function nginxProbe(): AbProbe<AbResult> {
  let server: WebServer | undefined;
  return {
    name: 'nginx',
    warmUp: true,
    floor: true,
    model: true,
    async setup(ctx) {
      server = await startNginx(ctx.hosts.b, ctx.hosts.ipB, NGINX_PORT);
    },
    async teardown() {
      await server?.stop();
      server = undefined;
    },
    measure(ctx) {
      return ab(ctx.hosts.a, `http://${ctx.hosts.ipB}:${NGINX_PORT}/`, ctx.config.churnSeconds, CLIENTS);
    },
  };
}

export function summarizeNginx(s: RoundSamples<AbResult>): ScenarioResult {
  const rows: Row[] = [];
  const w = s.with.map((x) => x.requestsPerSecond);
  const wo = s.without.map((x) => x.requestsPerSecond);
  const { row, ratios, ratio } = ratioRow('nginx.ratio', `short-connection churn, with / without (nginx + ab, no keep-alive, ${CLIENTS} clients)`, 0.95, w, wo, ' req/s');
  rows.push(row);
  const floor = floorRow('nginx.floor', s.floor.map((x) => x.requestsPerSecond), wo, ' req/s');
  rows.push(...floor.rows);
  const model = modelRow('nginx.model', s.model.map((x) => x.requestsPerSecond), wo, ' req/s');
  rows.push(...model.rows);
  const failed = [...s.with, ...s.without].reduce((a, x) => a + x.failed, 0);
  if (failed > 0) rows.push(info('nginx.failed', 'ab failed requests', String(failed)));
  return { name: 'nginx', rows, data: { with: s.with, without: s.without, floor: s.floor, ratios: ratios.map((r) => round(r, 4)), medianRatio: round(ratio, 4), floorRatios: floor.ratios.map((r) => round(r, 4)), model: s.model, modelRatios: model.ratios.map((r) => round(r, 4)) } };
}
