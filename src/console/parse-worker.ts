// A parse worker of the console's write path (parse-pool.ts): runs the project's
// line-protocol parser on a decoded body and answers with the compact form the
// store appends, its typed arrays transferred rather than copied.
import { parentPort, workerData } from 'node:worker_threads';
import { parseLines } from '../lineproto/parse';
import { SeriesIds, compactWrite } from './compact';
import type { ParseJob, ParseReply } from './parse-pool';

/** This worker's numbering of series; the pool gives each worker its own source number. */
const ids = new SeriesIds((workerData as { source: number }).source);

parentPort!.on('message', (job: ParseJob) => {
  let reply: ParseReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const ends: number[] = [];
    const keys: string[] = [];
    const points = parseLines(job.body, ends, keys);
    const write = compactWrite(job.category, job.precision, points, job.nowMs, ids, keys);
    for (const r of [write.netflow, write.dnsflow]) transfer.push(r.ids.buffer as ArrayBuffer, r.ts.buffer as ArrayBuffer, r.values.buffer as ArrayBuffer);
    reply = { id: job.id, ok: true, write, ends };
  } catch (err) {
    reply = { id: job.id, ok: false, message: (err as Error).message };
  }
  parentPort!.postMessage(reply, transfer);
});
