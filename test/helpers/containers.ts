// "Containers" for the ebpf-bash tests without a container runtime: an image
// directory holding bash, the libraries it links and an /etc/passwd of its
// own; overlay mounts of that image as root filesystems (two containers of
// one image share the layer's files, as under Docker's overlay2); a cgroup
// named the way a runtime names its containers; and the command that starts
// a shell inside (its own mount namespace and root, its own uid).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Copies /bin/bash and every library `ldd` lists into `dir`, and writes `passwd` as its /etc/passwd. */
export function bashImage(dir: string, passwd: string): string {
  const files = ['/bin/bash'];
  for (const line of execFileSync('ldd', ['/bin/bash'], { encoding: 'utf8' }).split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) files.push(m[1]!);
  }
  for (const f of files) {
    const to = path.join(dir, f);
    fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o755 });
    fs.copyFileSync(f, to); // follows symlinks: the image holds the files themselves
    fs.chmodSync(to, 0o755);
  }
  fs.mkdirSync(path.join(dir, 'etc'), { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'etc/passwd'), passwd, { mode: 0o644 });
  // Reachable by an unprivileged collector, as an image's files are.
  fs.chmodSync(dir, 0o755);
  return dir;
}

export interface Mounted {
  dir: string;
  remove(): void;
}

/** An overlay mount of `image` at `<scratch>/merged`, writable in `<scratch>/upper`. */
export function overlayRoot(image: string, scratch: string): Mounted {
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => path.join(scratch, d)) as [string, string, string];
  for (const d of [scratch, upper, work, merged]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${image},upperdir=${upper},workdir=${work}`, merged]);
  fs.chmodSync(merged, 0o755);
  return {
    dir: merged,
    remove: () => {
      try {
        execFileSync('umount', [merged], { stdio: 'ignore' });
      } catch {
        /* not mounted */
      }
    },
  };
}

/** Where cgroup v2 is mounted (/sys/fs/cgroup/unified in the hybrid layout of our VMs). */
export function cgroup2Mount(): string {
  const line = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[2] === 'cgroup2');
  if (!line) throw new Error('cgroup2 is not mounted: the container-id test needs it (mount -t cgroup2 none /sys/fs/cgroup/unified)');
  return line.split(' ')[1]!;
}

/** A cgroup v2 directory `relative` to the mount, e.g. `docker-<id>.scope` as Docker's systemd driver names one. */
export function cgroupNamed(relative: string): Mounted {
  const dir = path.join(cgroup2Mount(), relative);
  fs.mkdirSync(dir, { recursive: true });
  return {
    dir,
    remove: () => {
      try {
        fs.rmdirSync(dir);
      } catch {
        /* a process is still in it, or gone already */
      }
    },
  };
}

/**
 * The command (for bash-pty's `via`) that runs a shell as `uid` in its own
 * mount namespace with `root` as its root, after joining `cgroup` (so its
 * cgroup path is set before the shell's exec, as a runtime does).
 */
export function inContainer(root: string, uid: number, cgroup?: Mounted): string[] {
  const enter = ['unshare', '--mount', `--root=${root}`, '--setuid', String(uid), '--setgid', String(uid)];
  if (!cgroup) return enter;
  return ['sh', '-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', path.join(cgroup.dir, 'cgroup.procs'), ...enter];
}
