// The collector's own counters: what was collected, sent, spooled, dropped,
// retried, and what the kernel side lost. Logged periodically and served as
// Prometheus text on the status endpoint.

type Labels = Record<string, string>;

export class Metrics {
  private readonly counters = new Map<string, { name: string; labels: Labels; value: number }>();
  private readonly gauges = new Map<string, () => number>();

  add(name: string, value: number, labels: Labels = {}): void {
    if (value === 0) return;
    const key = `${name}${JSON.stringify(labels)}`;
    const c = this.counters.get(key);
    if (c) c.value += value;
    else this.counters.set(key, { name, labels, value });
  }

  /** A value read when metrics are reported (spool size, map occupancy). */
  gauge(name: string, read: () => number): void {
    this.gauges.set(name, read);
  }

  /** Totals per counter name (labels summed) plus the gauges. */
  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.counters.values()) out[c.name] = (out[c.name] ?? 0) + c.value;
    for (const [name, read] of this.gauges) out[name] = read();
    return out;
  }

  /** Prometheus text exposition format. */
  prometheus(): string {
    const lines: string[] = [];
    const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
    const fmt = (labels: Labels): string => {
      const parts = Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`);
      return parts.length ? `{${parts.join(',')}}` : '';
    };
    const byName = new Map<string, string[]>();
    for (const c of this.counters.values()) {
      const rows = byName.get(c.name) ?? [];
      rows.push(`datakit_ebpf_${c.name}_total${fmt(c.labels)} ${c.value}`);
      byName.set(c.name, rows);
    }
    for (const [name, rows] of byName) lines.push(`# TYPE datakit_ebpf_${name}_total counter`, ...rows);
    for (const [name, read] of this.gauges) lines.push(`# TYPE datakit_ebpf_${name} gauge`, `datakit_ebpf_${name} ${read()}`);
    return `${lines.join('\n')}\n`;
  }
}
