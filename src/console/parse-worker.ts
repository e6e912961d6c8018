// A parse worker of the console's write path (parse-pool.ts): runs the project's
// line-protocol parser on a decoded body and answers with the compact form the
// store appends, its typed arrays transferred rather than copied.
import { parentPort } from 'node:worker_threads';
import { parseLines } from '../lineproto/parse';
import { compactWrite } from './compact';
import type { ParseJob, ParseReply } from './parse-pool';

/** Keys whose tags this worker already sent to the main thread. */
const sentTags = new Set<string>();

parentPort!.on('message', (job: ParseJob) => {
  let reply: ParseReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const ends: number[] = [];
    const keys: string[] = [];
    const points = parseLines(job.body, ends, keys);
    if (sentTags.size > 500_000) sentTags.clear();
    const write = compactWrite(job.category, job.precision, points, job.nowMs, sentTags, keys);
    transfer.push(write.netflow.ts.buffer as ArrayBuffer, write.netflow.values.buffer as ArrayBuffer, write.dnsflow.ts.buffer as ArrayBuffer, write.dnsflow.values.buffer as ArrayBuffer);
    reply = { id: job.id, ok: true, write, ends };
  } catch (err) {
    reply = { id: job.id, ok: false, message: (err as Error).message };
  }
  parentPort!.postMessage(reply, transfer);
});
