// Where the project's files are, whether we run compiled (dist/src/...) or
// from TypeScript sources under vitest (src/...).
import fs from 'node:fs';
import path from 'node:path';

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    // A checkout has CMakeLists.txt; an installed copy (scripts/install) has our package.json only.
    if (fs.existsSync(path.join(dir, 'package.json')) && (fs.existsSync(path.join(dir, 'CMakeLists.txt')) || isOurPackage(dir))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the project root above ${start}`);
    dir = up;
  }
}

function isOurPackage(dir: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'datakit-ebpf';
  } catch {
    return false;
  }
}

export const PROJECT_ROOT = findRoot(__dirname);
export const ADDON_PATH = path.join(PROJECT_ROOT, 'build', 'Release', 'dke_native.node');
/** The native eBPF loader (native/loader, built by CMake beside the addon). */
export const LOADER_BIN = path.join(PROJECT_ROOT, 'build', 'Release', 'dke-loader');

export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}
