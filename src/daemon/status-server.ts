// A small local HTTP endpoint on --pprof-host:--pprof-port (DataKit already
// passes them): /metrics in Prometheus text, /status as JSON.
import http from 'node:http';
import type { Logger } from 'pino';
import type { Metrics } from './metrics';

export interface StatusServer {
  close(): Promise<void>;
}

export function startStatusServer(host: string, port: number, metrics: Metrics, status: () => unknown, log: Logger): StatusServer {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics.prometheus());
      } else if (req.method === 'GET' && path === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...(status() as object), metrics: metrics.summary() }));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics or /status\n');
      }
    } catch (err) {
      // A broken report is this request's problem, never the collector's.
      log.warn({ err: (err as Error).message, path }, `status endpoint: ${path} failed: ${(err as Error).message}`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end();
    }
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.on('error', (err) => log.warn({ err: err.message, host, port }, `status endpoint on ${host}:${port} is off: ${err.message}`));
  server.listen(port, host, () => log.info({ host, port }, `status endpoint: http://${host}:${port}/metrics and /status`));
  server.unref();
  return {
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
