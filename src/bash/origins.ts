// Where the shells of containers run, as the bash loader reports it
// (DKE_FRAME_BASH_ORIGINS, sent before a shell's first line and again when
// its uid changes): the user name from the container's own /etc/passwd and
// the container's id from its cgroup path. Lines of pids without an origin
// are host shells, named from the host's users as before.
import { forEachRecord, readField, readString, type Frame } from '../loader/frames';
import { dke_bash_origin } from '../loader/layout.generated';

export interface BashOrigin {
  pid: number;
  /** The uid `user` names. */
  uid: number;
  /** "" when the loader leaves naming to the daemon. */
  user: string;
  /** "" when the cgroup path names no container. */
  containerId: string;
}

/** A DKE_FRAME_BASH_ORIGINS frame: dke_bash_origin records. */
export function decodeBashOrigins(frame: Frame): BashOrigin[] {
  const F = dke_bash_origin.fields;
  const buf = frame.payload;
  const out: BashOrigin[] = [];
  forEachRecord(frame, dke_bash_origin, (off) => {
    out.push({
      pid: readField(buf, off, F.pid),
      uid: readField(buf, off, F.uid),
      user: readString(buf, off, F.user),
      containerId: readString(buf, off, F.container_id),
    });
  });
  return out;
}

/** The origins of live shells by pid. */
export class BashOrigins {
  private readonly byPid = new Map<number, BashOrigin>();

  /** An origin with neither user nor container id ends the pid's (the shell exited). */
  apply(records: readonly BashOrigin[]): void {
    for (const r of records) {
      if (r.user === '' && r.containerId === '') this.byPid.delete(r.pid);
      else this.byPid.set(r.pid, r);
    }
  }

  get(pid: number): BashOrigin | undefined {
    return this.byPid.get(pid);
  }

  /** A new loader knows nothing of what the last one said. */
  clear(): void {
    this.byPid.clear();
  }

  get size(): number {
    return this.byPid.size;
  }
}
