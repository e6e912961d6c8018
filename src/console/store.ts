// The console's embedded store: DuckDB (one file under --data), chosen over
// SQLite on measurements (README, "Local console"): 5x the ingest rate, 1/15 of
// the disk, and raw scans fast enough for exact edges of a rollup query.
//
// Tables (times are Unix ms):
//   series(id, measurement, tags JSON, host, transport, ...)   one row per tag set of netflow/dnsflow
//   netflow(sid, ts, batch, bytes_read, ..., tcp_closed)       one row per point received
//   netflow_5m / netflow_1h(sid, bucket, sums..., rtt_sum, rtt_n, ..., points)
//                                                              whole-bucket rollups (plan.ts explains exactness)
//   dnsflow(sid, ts, batch, count, rcode, latency, latency_max)
//   bash(ts, batch, host, pid, user, cmd, message, tags)
//   other(ts, batch, category, measurement, tags, fields)      anything else, kept as JSON
//   meta(k, v)                                                 rolled_batch: rollups include every batch <= v
//
// Writes: every write request waits for the commit that holds its points
// (group commit: requests that arrive while one commit runs share the next), so
// what was answered 200 is in DuckDB's WAL and survives a SIGKILL. Every
// operation (commit, rollup, retention, query) runs on one connection, one at a
// time, off the event loop (DuckDB's own threads). Rollups are recomputed for
// the buckets that commits touched, before any query reads them and every few
// seconds; after a crash the buckets of batches newer than rolled_batch are redone.

import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBAppender } from '@duckdb/node-api';
import { DNS_FIELDS, NETFLOW_FIELDS, sortedTagsJson, type CompactWrite, type NewSeries, type SeriesRows } from './compact';
import { MINUTE, ROLLUPS, SERIES_COLUMNS, rollupTable } from './plan';

export interface StoreOptions {
  /** Directory of the database file. */
  dir: string;
  retentionMs: number;
  /** DuckDB's memory limit, e.g. '512MB'. */
  memoryLimit?: string;
  threads?: number;
  /** How often dirty rollups are recomputed without a query asking (ms). */
  rollupEveryMs?: number;
  /** Current time (tests). */
  now?: () => number;
}

export interface StoreStats {
  commits: number;
  writes: number;
  points: number;
  rollups: number;
  lastCommitMs: number;
}

const FINEST = ROLLUPS[ROLLUPS.length - 1]!;
const RETENTION_EVERY_MS = 10 * MINUTE;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta(k VARCHAR PRIMARY KEY, v BIGINT);
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, measurement VARCHAR, tags VARCHAR, ${SERIES_COLUMNS.map((c) => `${c} VARCHAR`).join(', ')});
CREATE TABLE IF NOT EXISTS netflow(sid INTEGER, ts BIGINT, batch BIGINT, ${NETFLOW_FIELDS.map((f) => `${f} DOUBLE`).join(', ')});
CREATE TABLE IF NOT EXISTS dnsflow(sid INTEGER, ts BIGINT, batch BIGINT, ${DNS_FIELDS.map((f) => `${f} DOUBLE`).join(', ')});
CREATE TABLE IF NOT EXISTS bash(ts BIGINT, batch BIGINT, host VARCHAR, pid VARCHAR, "user" VARCHAR, cmd VARCHAR, message VARCHAR, tags VARCHAR);
CREATE TABLE IF NOT EXISTS other(ts BIGINT, batch BIGINT, category VARCHAR, measurement VARCHAR, tags VARCHAR, fields VARCHAR);
${ROLLUPS.map(
  (r) => `CREATE TABLE IF NOT EXISTS ${rollupTable(r)}(sid INTEGER, bucket BIGINT, bytes_read DOUBLE, bytes_written DOUBLE, retransmits DOUBLE, rtt_sum DOUBLE, rtt_n BIGINT, rtt_var_sum DOUBLE, rtt_var_n BIGINT, tcp_established DOUBLE, tcp_closed DOUBLE, points BIGINT);`,
).join('\n')}
INSERT INTO meta VALUES ('rolled_batch', 0) ON CONFLICT DO NOTHING;
`;

/** What a commit registered, to undo if it fails. */
interface Added {
  keys: string[];
  local: [number, number][];
  rows: Row[];
}

interface Pending {
  write: CompactWrite;
  resolve: () => void;
  reject: (err: Error) => void;
}

type Row = (string | number | null)[];

/** Canonical identity of a tag set: measurement and the tags sorted by key. */
export function seriesKey(measurement: string, tags: Record<string, string>): string {
  const keys = Object.keys(tags).sort();
  let k = measurement;
  for (const t of keys) k += `\u0000${t}\u0001${tags[t]}`;
  return k;
}

export class Store {
  private instance?: DuckDBInstance;
  private conn?: DuckDBConnection;
  /** Serializes every operation on the connection. */
  private chain: Promise<unknown> = Promise.resolve();
  private pending: Pending[] = [];
  private committing = false;
  private readonly series = new Map<string, number>();
  /** Our series ids by parser (source) and that parser's series id. */
  private readonly bySource = new Map<number, number[]>();
  /** Series a parser announced that are not registered yet: a parser sends a series' tags only once. */
  private readonly pendingTags = new Map<number, Map<number, NewSeries>>();
  private nextSeriesId = 1;
  private batch = 0;
  /** 5-minute buckets of netflow touched since the last rollup. */
  private dirty = new Set<number>();
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private closing?: Promise<void>;
  readonly stats: StoreStats = { commits: 0, writes: 0, points: 0, rollups: 0, lastCommitMs: 0 };
  private readonly now: () => number;

  constructor(private readonly opts: StoreOptions) {
    this.now = opts.now ?? Date.now;
  }

  get file(): string {
    return path.join(this.opts.dir, 'console.duckdb');
  }

  async open(): Promise<void> {
    fs.mkdirSync(this.opts.dir, { recursive: true, mode: 0o750 });
    this.instance = await DuckDBInstance.create(this.file, {
      threads: String(this.opts.threads ?? 2),
      memory_limit: this.opts.memoryLimit ?? '1GB',
    });
    this.conn = await this.instance.connect();
    await this.conn.run(SCHEMA);
    for (const r of await this.rows('SELECT id, measurement, tags FROM series')) {
      const id = Number(r.id);
      this.series.set(seriesKey(String(r.measurement), JSON.parse(String(r.tags)) as Record<string, string>), id);
      this.nextSeriesId = Math.max(this.nextSeriesId, id + 1);
    }
    const [b] = await this.rows(`SELECT (SELECT v FROM meta WHERE k = 'rolled_batch')::DOUBLE AS rolled, greatest(
        (SELECT coalesce(max(batch), 0) FROM netflow), (SELECT coalesce(max(batch), 0) FROM dnsflow),
        (SELECT coalesce(max(batch), 0) FROM bash), (SELECT coalesce(max(batch), 0) FROM other))::DOUBLE AS last`);
    this.batch = Number(b!.last);
    // Commits after the last rollup (a crash in between): redo their buckets.
    for (const r of await this.rows(`SELECT DISTINCT (ts // ${FINEST}) * ${FINEST} AS bucket FROM netflow WHERE batch > $1`, [Number(b!.rolled)])) {
      this.dirty.add(Number(r.bucket));
    }
    await this.exclusive(() => this.enforceRetention());
    const every = this.opts.rollupEveryMs ?? 2000;
    this.timers.push(setInterval(() => void this.exclusive(() => this.rollup()).catch(() => undefined), every));
    this.timers.push(setInterval(() => void this.exclusive(() => this.enforceRetention()).catch(() => undefined), RETENTION_EVERY_MS));
    for (const t of this.timers) t.unref();
  }

  /** Resolves once the write's points are committed (durable); rejects if the commit failed. */
  ingest(write: CompactWrite): Promise<void> {
    this.learn(write);
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ write, resolve, reject });
      if (!this.committing) this.startCommits();
    });
  }

  private startCommits(): void {
    this.committing = true;
    void this.exclusive(async () => {
      // Everything that arrived while the previous operation ran goes into one commit.
      while (this.pending.length > 0) {
        const group = this.pending;
        this.pending = [];
        try {
          await this.commit(group.map((p) => p.write));
          for (const p of group) p.resolve();
        } catch (err) {
          for (const p of group) p.reject(err as Error);
        }
      }
    }).finally(() => {
      this.committing = false;
      if (this.pending.length > 0) this.startCommits();
    });
  }

  /**
   * Remembers the series a parser numbered for the first time in this write.
   * Call it for every parsed write, even one that is then refused: the parser
   * will not send those tags again.
   */
  learn(write: CompactWrite): void {
    if (write.newSeries.length === 0) return;
    let pending = this.pendingTags.get(write.source);
    if (!pending) this.pendingTags.set(write.source, (pending = new Map()));
    for (const n of write.newSeries) pending.set(n.id, n);
  }

  /** Our series id for a parser's (source, id), registering a new series in `added`. */
  private seriesId(source: number, id: number, added: Added): number {
    let local = this.bySource.get(source);
    if (!local) this.bySource.set(source, (local = []));
    const known = local[id];
    if (known !== undefined) return known;
    const t = this.pendingTags.get(source)?.get(id);
    if (!t) throw new Error(`series ${id} of parser ${source} arrived without its tags`);
    const key = seriesKey(t.measurement, t.tags);
    let sid = this.series.get(key);
    if (sid === undefined) {
      sid = this.nextSeriesId++;
      this.series.set(key, sid);
      added.keys.push(key);
      added.rows.push([sid, t.measurement, sortedTagsJson(t.tags), ...SERIES_COLUMNS.map((c) => t.tags[c] ?? null)]);
    }
    local[id] = sid;
    added.local.push([source, id]);
    return sid;
  }

  private async appendSeriesRows(table: 'netflow' | 'dnsflow', source: number, rows: SeriesRows, width: number, batch: number, added: Added, touched?: Set<number>): Promise<void> {
    const n = rows.ids.length;
    if (n === 0) return;
    const a = await this.conn!.createAppender(table);
    try {
      const v = rows.values;
      for (let i = 0; i < n; i++) {
        const ts = rows.ts[i]!;
        a.appendInteger(this.seriesId(source, rows.ids[i]!, added));
        a.appendDouble(ts);
        a.appendDouble(batch);
        for (let f = i * width, end = f + width; f < end; f++) {
          const x = v[f]!;
          if (Number.isNaN(x)) a.appendNull();
          else a.appendDouble(x);
        }
        a.endRow();
        touched?.add(Math.floor(ts / FINEST) * FINEST);
      }
      a.flushSync();
    } finally {
      a.closeSync();
    }
  }

  private async commit(writes: CompactWrite[]): Promise<void> {
    const conn = this.conn!;
    const started = Date.now();
    const batch = this.batch + 1;
    const added: Added = { keys: [], local: [], rows: [] };
    const touched = new Set<number>();
    let points = 0;
    await conn.run('BEGIN TRANSACTION');
    try {
      for (const w of writes) {
        points += w.points;
        await this.appendSeriesRows('netflow', w.source, w.netflow, NETFLOW_FIELDS.length, batch, added, touched);
        await this.appendSeriesRows('dnsflow', w.source, w.dnsflow, DNS_FIELDS.length, batch, added);
        if (w.bash.length > 0) await this.append('bash', w.bash.map(([ts, ...rest]) => [ts!, batch, ...rest]));
        if (w.other.length > 0) await this.append('other', w.other.map(([ts, ...rest]) => [ts!, batch, ...rest]));
      }
      if (added.rows.length > 0) await this.append('series', added.rows);
      await conn.run('COMMIT');
    } catch (err) {
      await conn.run('ROLLBACK').catch(() => undefined);
      for (const k of added.keys) this.series.delete(k);
      for (const [source, id] of added.local) delete this.bySource.get(source)![id];
      throw err;
    }
    // Registered for good: the tags are in `series` now.
    for (const [source, id] of added.local) this.pendingTags.get(source)?.delete(id);
    this.batch = batch;
    for (const b of touched) this.dirty.add(b);
    this.stats.commits++;
    this.stats.writes += writes.length;
    this.stats.points += points;
    this.stats.lastCommitMs = Date.now() - started;
  }

  private async append(table: string, rows: Row[]): Promise<void> {
    const a: DuckDBAppender = await this.conn!.createAppender(table);
    try {
      for (const r of rows) {
        for (const v of r) {
          // Numbers go in as DOUBLE, which DuckDB casts to INTEGER/BIGINT columns exactly (all are safe integers).
          if (v === null || v === undefined) a.appendNull();
          else if (typeof v === 'number') a.appendDouble(v);
          else a.appendVarchar(String(v));
        }
        a.endRow();
      }
      a.flushSync();
    } finally {
      a.closeSync();
    }
  }

  /** Recomputes the rollup buckets that commits touched since the last rollup. */
  private async rollup(): Promise<void> {
    if (this.dirty.size === 0 || !this.conn) return;
    const fine = [...this.dirty].sort((x, y) => x - y);
    const rolledBatch = this.batch;
    const conn = this.conn;
    await conn.run('BEGIN TRANSACTION');
    try {
      for (const res of ROLLUPS) {
        const buckets = [...new Set(fine.map((b) => Math.floor(b / res) * res))];
        // Bucket lists are our own integers; ranges keep the scan to the row groups that hold them.
        for (let i = 0; i < buckets.length; i += 500) {
          const part = buckets.slice(i, i + 500);
          const list = part.join(', ');
          const lo = part[0]!;
          const hi = part[part.length - 1]! + res;
          await conn.run(`DELETE FROM ${rollupTable(res)} WHERE bucket IN (${list})`);
          await conn.run(`INSERT INTO ${rollupTable(res)}
            SELECT sid, (ts // ${res}) * ${res} AS bucket, sum(bytes_read), sum(bytes_written), sum(retransmits),
              sum(rtt), count(rtt), sum(rtt_var), count(rtt_var), sum(tcp_established), sum(tcp_closed), count(*)
            FROM netflow WHERE ts >= ${lo} AND ts < ${hi} AND (ts // ${res}) * ${res} IN (${list})
            GROUP BY ALL`);
        }
      }
      await conn.run(`UPDATE meta SET v = ${rolledBatch} WHERE k = 'rolled_batch'`);
      await conn.run('COMMIT');
    } catch (err) {
      await conn.run('ROLLBACK').catch(() => undefined);
      throw err;
    }
    for (const b of fine) this.dirty.delete(b);
    this.stats.rollups++;
  }

  /** Deletes what is older than the retention (whole rollup buckets only, so kept ranges stay exact). */
  private async enforceRetention(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    const cutoff = this.now() - this.opts.retentionMs;
    await conn.run('BEGIN TRANSACTION');
    try {
      for (const t of ['netflow', 'dnsflow', 'bash', 'other']) await conn.run(`DELETE FROM ${t} WHERE ts < $1`, [cutoff]);
      for (const r of ROLLUPS) await conn.run(`DELETE FROM ${rollupTable(r)} WHERE bucket + ${r} <= $1`, [cutoff]);
      await conn.run('COMMIT');
    } catch (err) {
      await conn.run('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /** Runs a read-only query after the pending rollups, with rows as plain objects (numbers, strings, null). */
  query(sql: string, params: (string | number)[] = []): Promise<Record<string, unknown>[]> {
    return this.exclusive(async () => {
      await this.rollup();
      return this.rows(sql, params);
    });
  }

  private async rows(sql: string, params: (string | number)[] = []): Promise<Record<string, unknown>[]> {
    const reader = await this.conn!.runAndReadAll(sql, params);
    return reader.getRowObjectsJS().map((r) => {
      const o: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) o[k] = typeof v === 'bigint' ? Number(v) : v;
      return o;
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => {
      if (!this.conn) throw new Error('the store is closed');
      return fn();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Size of the database and its WAL in bytes. */
  diskBytes(): number {
    let n = 0;
    for (const f of [this.file, `${this.file}.wal`]) {
      try {
        n += fs.statSync(f).size;
      } catch {
        /* not there */
      }
    }
    return n;
  }

  /** Finishes pending commits and rollups, checkpoints and closes. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const t of this.timers) clearInterval(t);
      await this.chain;
      while (this.committing || this.pending.length > 0) await this.chain;
      if (!this.conn) return;
      await this.exclusive(async () => {
        await this.rollup();
        await this.conn!.run('CHECKPOINT');
      }).catch(() => undefined);
      this.conn.closeSync();
      this.conn = undefined;
      this.instance?.closeSync();
      this.instance = undefined;
    })();
    return this.closing;
  }

  /** Closes at once; what was committed stays (DuckDB replays its WAL). Idempotent. */
  destroy(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const p of this.pending.splice(0)) p.reject(new Error('the store was destroyed'));
    try {
      this.conn?.closeSync();
      this.instance?.closeSync();
    } catch {
      /* already closed */
    }
    this.conn = undefined;
    this.instance = undefined;
  }
}

