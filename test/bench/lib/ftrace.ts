// A witness beside our programs: the kernel's own trace events for the exact
// bench's sockets, in a private ftrace instance. On this VM the kernel runs
// none of our tracing programs for an event it handles in a softirq on top of
// the init process's threads (pid 1, the VM's agent), and counts no recursion
// miss for it; ftrace still sees the event. The exact bench counts those
// events so a miss can be told from a bug of ours.
import fs from 'node:fs';
import path from 'node:path';

const TRACING = '/sys/kernel/tracing';
const EVENTS = ['tcp/tcp_retransmit_skb', 'tcp/tcp_retransmit_synack', 'tcp/tcp_destroy_sock', 'sock/inet_sock_set_state'];

export interface EventWitness {
  /** Stops tracing (once; later calls return the same counts): per event, those handled on top of one of pid 1's threads. */
  stop(): Record<string, number>;
}

/**
 * Traces EVENTS of sockets whose local port is in [firstPort, lastPort],
 * handled on top of pid 1's threads as they are at the start (the filter
 * keeps the buffer to those: a churn of millions of connections would
 * overwrite it many times over); null when tracefs is not there.
 */
export function startEventWitness(name: string, firstPort: number, lastPort: number): EventWitness | null {
  const dir = path.join(TRACING, 'instances', name);
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return null;
  }
  const remove = () => {
    try {
      fs.rmdirSync(dir);
    } catch {
      /* busy or gone: a later run reuses it */
    }
  };
  try {
    fs.writeFileSync(path.join(dir, 'buffer_size_kb'), '16384');
    const onInit = fs.readdirSync('/proc/1/task').map((t) => `common_pid == ${t}`).join(' || ');
    for (const e of EVENTS) {
      fs.writeFileSync(path.join(dir, 'events', e, 'filter'), `sport >= ${firstPort} && sport <= ${lastPort} && (${onInit})`);
      fs.writeFileSync(path.join(dir, 'events', e, 'enable'), '1');
    }
    fs.writeFileSync(path.join(dir, 'tracing_on'), '1');
  } catch {
    remove();
    return null;
  }
  let counted: Record<string, number> | null = null;
  return {
    stop() {
      if (counted) return counted;
      const out: Record<string, number> = (counted = {});
      try {
        fs.writeFileSync(path.join(dir, 'tracing_on'), '0');
        const initThreads = new Set(fs.readdirSync('/proc/1/task'));
        for (const line of fs.readFileSync(path.join(dir, 'trace'), 'utf8').split('\n')) {
          // "  tokio-rt-worker-75  [001] ..s2. 31348.423097: tcp_destroy_sock: ..."
          const m = /^\s*\S.*?-(\d+)\s+\[\d+\]\s+\S+\s+[\d.]+:\s+(\w+):/.exec(line);
          if (m && initThreads.has(m[1]!)) out[m[2]!] = (out[m[2]!] ?? 0) + 1;
        }
        for (const e of EVENTS) fs.writeFileSync(path.join(dir, 'events', e, 'enable'), '0');
      } catch {
        /* tracefs went away: nothing to count */
      }
      remove();
      return out;
    },
  };
}

/** A witness's counts as a row's clause; `whose`: whose events were traced. */
export function initText(m: Record<string, number> | null, whose: string): string {
  const e = Object.entries(m ?? {});
  const counts = !m ? 'not traced (no tracefs)' : e.length ? e.map(([k, v]) => `${k} ${v}`).join(', ') : 'none';
  return `${whose} handled on top of pid 1's threads, where the kernel runs none of our tracing programs on this VM: ${counts}`;
}
