// The floor: empty BPF programs on the collector's hooks (test/bench/floor),
// loaded without the collector. What they cost is the kernel's price for
// running any program on those hooks; the rest of our cost is our code.
// The data model's floor (model.bpf.c) is loaded the same way: on the same
// hooks, only what per-socket state and per-flow counters cannot do without.
// Both run in the root memory cgroup: the model's socket-local storage is then
// charged to no cgroup, as the collector's is (native/loader/root_memcg.h).
import fs from 'node:fs';
import path from 'node:path';
import { inCgroup, memcgRoot } from '../../helpers/memcg';
import { spawnJson, type JsonProc } from './spawn';
import { repoRoot } from './util';

export interface Floor {
  progIds: number[];
  stop(): Promise<void>;
}

function cgroup2Root(): string {
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2' && mnt) return mnt;
  }
  throw new Error('no cgroup v2 mount: the floor programs attach to its root, as the collector does');
}

export async function startFloor(object: 'floor' | 'model' = 'floor'): Promise<Floor> {
  const dir = path.join(repoRoot(), 'dist/bench');
  const command = [path.join(dir, 'floor'), path.join(dir, `${object}.bpf.o`), cgroup2Root()];
  const memcg = memcgRoot();
  const [cmd, ...args] = memcg ? inCgroup(memcg.dir, command) : command;
  const p: JsonProc = spawnJson(cmd!, args);
  const line = await p.next(10_000);
  if (typeof line.error === 'string' || !Array.isArray(line.ids)) {
    p.kill('SIGKILL');
    throw new Error(`the ${object} programs did not attach: ${String(line.error ?? JSON.stringify(line))} ${p.stderr.join(' | ')}`);
  }
  return {
    progIds: line.ids as number[],
    async stop() {
      p.kill('SIGTERM');
      await p.exited;
    },
  };
}
