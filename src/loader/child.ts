// A privileged loader child: `child.js '<LoaderSpec JSON>'`. It is the only
// kind of process that holds BPF programs. It opens one plugin's BPF objects,
// streams their events and answers the daemon's requests over IPC. It keeps
// no collected state, so the daemon can restart it at any time.
import os from 'node:os';
import type { ChildMessage, LoaderSpec, ParentMessage } from './protocol';
import { checkBpfPrivileges, dieWithParent, narrowToLoader } from './privileges';
import { LOADER_PLUGINS } from './plugins';
import type { OpenedPlugin } from './plugins/types';

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

function serve(plugin: OpenedPlugin): void {
  process.on('message', (msg: ParentMessage) => {
    if (msg.type === 'stop') {
      plugin.close({ unpin: msg.unpin });
      process.exit(0);
    }
    try {
      send({ type: 'reply', id: msg.id, data: plugin.handle(msg.op, msg.args) });
    } catch (e) {
      send({ type: 'error', id: msg.id, message: (e as Error).message });
    }
  });
  // The daemon is gone (crashed or SIGKILLed by DataKit): never keep probes
  // attached on our own.
  process.on('disconnect', () => {
    plugin.close();
    process.exit(0);
  });
}

function main(): void {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoaderSpec;
  try {
    const loader = LOADER_PLUGINS[spec.plugin];
    if (!loader) throw Object.assign(new Error(`unknown loader plugin "${spec.plugin}"`), { code: 'NOT_IMPLEMENTED' });
    dieWithParent();
    narrowToLoader(spec.plugin);
    checkBpfPrivileges(spec.plugin);
    const plugin = loader.open(spec.options, (stream, records) => send({ type: 'event', stream, records }));
    serve(plugin);
    send({ type: 'ready', kernel: os.release(), hookSet: plugin.hookSet, info: plugin.info });
  } catch (e) {
    const err = e as Error & { code?: string };
    send({ type: 'fatal', code: err.code ?? 'EBPF_LOAD', message: err.message });
    // Let the IPC message flush before exiting.
    setTimeout(() => process.exit(3), 50);
  }
}

if (require.main === module) main();
