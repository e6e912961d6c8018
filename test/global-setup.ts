// Once per run: pins left by an earlier run that died (its test pin roots
// carry the pid of the process that made them) would keep programs attached.
import fs from 'node:fs';

export default function removeStaleTestPins(): void {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync('/sys/fs/bpf');
  } catch {
    return; // bpffs is mounted by scripts/setup; nothing to clean without it
  }
  for (const d of entries) {
    const m = /^dke-test-(\d+)-\d+$/.exec(d);
    if (m && !fs.existsSync(`/proc/${m[1]}`)) fs.rmSync(`/sys/fs/bpf/${d}`, { recursive: true, force: true });
  }
}
