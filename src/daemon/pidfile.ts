// --pidfile: written before the privilege drop (its directory is usually
// root's), removed at exit. After the drop the daemon may not be allowed to
// unlink it; it then empties the file through the descriptor it kept open, so
// nobody reads a stale pid from it. The file stays root's: a pidfile the
// unprivileged user could rewrite would let it aim root's `kill $(cat ...)`.
import fs from 'node:fs';
import type { Logger } from 'pino';

export class Pidfile {
  private fd?: number;
  private removed = false;

  private constructor(readonly path: string) {}

  /** @throws the OS error when the file cannot be written. */
  static write(file: string, pid = process.pid): Pidfile {
    const p = new Pidfile(file);
    p.fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW, 0o644);
    fs.writeSync(p.fd, `${pid}\n`);
    return p;
  }

  /** Idempotent; never throws. */
  remove(log?: Logger): void {
    if (this.removed) return;
    this.removed = true;
    try {
      fs.unlinkSync(this.path);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'ENOENT') {
        let emptied = false;
        try {
          if (this.fd !== undefined) {
            fs.ftruncateSync(this.fd, 0);
            emptied = true;
          }
        } catch {
          /* reported below */
        }
        log?.info(
          { pidfile: this.path, err: e.code },
          `cannot remove the pidfile ${this.path} (${e.code}: its directory is not writable by this user); ${emptied ? 'emptied it instead' : 'it is stale now'}`,
        );
      }
    }
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* closed */
      }
      this.fd = undefined;
    }
  }
}
