// Runs dke-loader directly, as the daemon does (commands on stdin, frames on
// fd 3), for tests of the loader's own behaviour.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { encodeFrame, encodeStopCmd, FrameReader, type Frame } from '../../src/loader/frames';
import { DKE_CMD_STOP, DKE_FRAME_FATAL, DKE_FRAME_READY } from '../../src/loader/layout.generated';
import { LOADER_BIN } from '../../src/paths';

export interface RunningLoader {
  proc: ChildProcess;
  frames: Frame[];
  /** The READY (or FATAL) JSON. */
  first: { type: number; body: Record<string, unknown> };
  stop(unpin?: boolean): Promise<number | null>;
}

export async function startLoader(args: string[], timeoutMs = 10_000): Promise<RunningLoader> {
  const proc = spawn(LOADER_BIN, args, { stdio: ['pipe', 'inherit', 'inherit', 'pipe'] });
  const frames: Frame[] = [];
  const reader = new FrameReader();
  (proc.stdio[3] as Readable).on('data', (c: Buffer) => reader.push(c, (f) => frames.push({ ...f, payload: Buffer.from(f.payload) })));
  const first = await new Promise<Frame>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dke-loader ${args.join(' ')} sent neither READY nor FATAL within ${timeoutMs} ms`)), timeoutMs);
    const poll = setInterval(() => {
      const f = frames.find((x) => x.type === DKE_FRAME_READY || x.type === DKE_FRAME_FATAL);
      if (!f) return;
      clearTimeout(timer);
      clearInterval(poll);
      resolve(f);
    }, 20);
  });
  return {
    proc,
    frames,
    first: { type: first.type, body: JSON.parse(first.payload.toString('utf8')) as Record<string, unknown> },
    stop: (unpin = true) =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.stdin!.write(encodeFrame(DKE_CMD_STOP, encodeStopCmd(unpin)));
      }),
  };
}
