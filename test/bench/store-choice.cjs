// One-off measurement behind the console's store choice (README, "The store"):
// better-sqlite3 12.x against DuckDB (@duckdb/node-api) on the issue's data set
// (48 h x 20 hosts x 100 flow keys every 30 s = 11.52 M points), batched commits
// of 5,000 points, then the 48-hour queries of the host view, the connection
// table and the map, from raw points and (SQLite) from rollups. better-sqlite3
// is not a dependency of the project; to run this again:
//   npm install --no-save better-sqlite3@12     (compiles its addon; 13.x needs Node 22)
//   node test/bench/store-choice.cjs sqlite 48  /  node test/bench/store-choice.cjs duckdb 48
// Databases go to $TMPDIR/store-choice-<engine>; results are printed, not kept.

const fs = require('fs');
const which = process.argv[2];
if (which !== 'sqlite' && which !== 'duckdb') {
  console.error('usage: node test/bench/store-choice.cjs sqlite|duckdb [hours]');
  process.exit(2);
}
const DIV = which === 'duckdb' ? '//' : '/'; // integer division in each dialect
const N_HOSTS = 20, N_KEYS = 100, STEP = 30_000, HOURS = Number(process.argv[3] || 48);
const T0 = Date.UTC(2025, 0, 1);
const NT = HOURS * 3600_000 / STEP;
const BATCH = 5000;
function* points() {
  for (let t = 0; t < NT; t++) for (let h = 0; h < N_HOSTS; h++) for (let k = 0; k < N_KEYS; k++) {
    const s = h * N_KEYS + k;
    yield [s, T0 + t * STEP, 1000 + k, 2000 + h, k % 3, 100 + k, 10 + k, k % 2, k % 2];
  }
}
function series(s) { const h = Math.floor(s / N_KEYS), k = s % N_KEYS; return [s, `host-${h}`, k % 4 ? 'tcp' : 'udp', k % 2 ? 'incoming' : 'outgoing', `10.0.0.${h}`, '*', `10.0.${k}.${(h + 1) % N_HOSTS}`, String(400 + k % 50), `proc${k % 7}`]; }
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;
const dir = require('path').join(require('os').tmpdir(), `store-choice-${which}`); fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir);
const q = {
  hostview: (tbl, bcol, step) => `SELECT (${bcol} ${DIV} ${step}) * ${step} AS b, sum(br), sum(bw), sum(rtt_s)/sum(rtt_n) FROM ${tbl} r JOIN series s ON s.id = r.sid WHERE s.host = 'host-3' AND s.transport = 'tcp' AND s.direction = 'outgoing' GROUP BY 1 ORDER BY 1`,
  conns: (tbl) => `SELECT r.sid, sum(br), sum(bw), sum(est), sum(rtt_s)/sum(rtt_n) FROM ${tbl} r JOIN series s ON s.id = r.sid WHERE s.dst_port = '443' OR 1=1 GROUP BY r.sid ORDER BY 2 DESC LIMIT 500`,
  map: (tbl) => `SELECT s.host, s.src_ip, s.dst_ip, s.direction, sum(br), sum(bw), sum(est), sum(rtt_s)/sum(rtt_n) FROM ${tbl} r JOIN series s ON s.id = r.sid GROUP BY 1,2,3,4`,
};
async function main() {
  if (which === 'sqlite') {
    const D = require('better-sqlite3');
    const db = new D(`${dir}/c.db`);
    db.pragma('journal_mode = WAL'); db.pragma('synchronous = FULL'); db.pragma('cache_size = -65536');
    db.exec(`CREATE TABLE series(id INTEGER PRIMARY KEY, host, transport, direction, src_ip, src_port, dst_ip, dst_port, process_name);
      CREATE TABLE points(sid INTEGER, ts INTEGER, br, bw, rtr, rtt, rtt_var, est, clo);
      CREATE INDEX points_ts ON points(ts);
      CREATE TABLE r5m(sid INTEGER, b INTEGER, br, bw, rtr, rtt_s, rtt_n, est, clo, PRIMARY KEY(sid, b)) WITHOUT ROWID;
      CREATE TABLE r1h(sid INTEGER, b INTEGER, br, bw, rtr, rtt_s, rtt_n, est, clo, PRIMARY KEY(sid, b)) WITHOUT ROWID;`);
    const insS = db.prepare('INSERT INTO series VALUES (?,?,?,?,?,?,?,?,?)');
    db.transaction(() => { for (let s = 0; s < N_HOSTS * N_KEYS; s++) insS.run(series(s)); })();
    const ins = db.prepare('INSERT INTO points VALUES (?,?,?,?,?,?,?,?,?)');
    const up = (t) => db.prepare(`INSERT INTO ${t} VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(sid,b) DO UPDATE SET br=br+excluded.br, bw=bw+excluded.bw, rtr=rtr+excluded.rtr, rtt_s=rtt_s+excluded.rtt_s, rtt_n=rtt_n+excluded.rtt_n, est=est+excluded.est, clo=clo+excluded.clo`);
    const up5 = up('r5m'), up1 = up('r1h');
    let batch = [];
    const flush = db.transaction((rows) => {
      const agg5 = new Map(), agg1 = new Map();
      for (const r of rows) {
        ins.run(r);
        for (const [m, w] of [[agg5, 300_000], [agg1, 3600_000]]) {
          const b = Math.floor(r[1] / w) * w, k = r[0] * 1e13 + b; let a = m.get(k);
          if (!a) m.set(k, a = [r[0], b, 0, 0, 0, 0, 0, 0, 0]);
          a[2] += r[2]; a[3] += r[3]; a[4] += r[4]; a[5] += r[5]; a[6] += 1; a[7] += r[7]; a[8] += r[8];
        }
      }
      for (const a of agg5.values()) up5.run(a);
      for (const a of agg1.values()) up1.run(a);
    });
    let t = process.hrtime.bigint(), n = 0, tFirst;
    for (const p of points()) { batch.push(p); if (batch.length === BATCH) { flush(batch); n += batch.length; batch = []; if (n === 1_000_000) { tFirst = ms(t); console.log(`sqlite ingest first 1M: ${(1e6 / tFirst * 1000).toFixed(0)} pts/s`); } } }
    if (batch.length) { flush(batch); n += batch.length; }
    const el = ms(t); console.log(`sqlite ingest ${n} pts in ${el.toFixed(0)} ms: ${(n / el * 1000).toFixed(0)} pts/s`);
    db.pragma('wal_checkpoint(TRUNCATE)');
    for (const [name, sql] of [['hostview raw', q.hostview('(SELECT sid, ts, br, bw, rtt AS rtt_s, 1 AS rtt_n FROM points)', 'ts', 300000)], ['hostview r5m', q.hostview('r5m', 'b', 300000)], ['conns r1h', q.conns('r1h')], ['map r1h', q.map('r1h')], ['conns raw', q.conns('(SELECT sid, br, bw, est, rtt AS rtt_s, 1 AS rtt_n FROM points)')]]) {
      const st = db.prepare(sql); st.all(); t = process.hrtime.bigint(); const rows = st.all(); console.log(`sqlite ${name}: ${ms(t).toFixed(1)} ms (${rows.length} rows)`);
    }
    db.close();
  } else {
    const { DuckDBInstance } = require('@duckdb/node-api');
    const inst = await DuckDBInstance.create(`${dir}/c.duckdb`);
    const c = await inst.connect();
    await c.run(`CREATE TABLE series(id INTEGER PRIMARY KEY, host VARCHAR, transport VARCHAR, direction VARCHAR, src_ip VARCHAR, src_port VARCHAR, dst_ip VARCHAR, dst_port VARCHAR, process_name VARCHAR);
      CREATE TABLE points(sid INTEGER, ts BIGINT, br BIGINT, bw BIGINT, rtr BIGINT, rtt BIGINT, rtt_var BIGINT, est BIGINT, clo BIGINT);`);
    for (let s = 0; s < N_HOSTS * N_KEYS; s++) { const v = series(s); await c.run(`INSERT INTO series VALUES (${v[0]}, ${v.slice(1).map((x) => `'${x}'`).join(',')})`); }
    let t = process.hrtime.bigint(), n = 0, batch = [];
    const flush = async (rows) => {
      const a = await c.createAppender('points');
      for (const r of rows) { a.appendInteger(r[0]); for (let i = 1; i < 9; i++) a.appendBigInt(BigInt(r[i])); a.endRow(); }
      a.closeSync();
    };
    for (const p of points()) { batch.push(p); if (batch.length === BATCH) { await flush(batch); n += batch.length; batch = []; if (n === 1_000_000) console.log(`duckdb ingest first 1M: ${(1e6 / ms(t) * 1000).toFixed(0)} pts/s`); } }
    if (batch.length) { await flush(batch); n += batch.length; }
    const el = ms(t); console.log(`duckdb ingest ${n} pts in ${el.toFixed(0)} ms: ${(n / el * 1000).toFixed(0)} pts/s (appender, no rollups)`);
    await c.run('CHECKPOINT');
    for (const [name, sql] of [['hostview raw', q.hostview('(SELECT sid, ts, br, bw, rtt AS rtt_s, 1 AS rtt_n FROM points)', 'ts', 300000)], ['conns raw', q.conns('(SELECT sid, br, bw, est, rtt AS rtt_s, 1 AS rtt_n FROM points)')], ['map raw', q.map('(SELECT sid, br, bw, est, rtt AS rtt_s, 1 AS rtt_n FROM points)')]]) {
      await c.runAndReadAll(sql); t = process.hrtime.bigint(); const r = await c.runAndReadAll(sql); console.log(`duckdb ${name}: ${ms(t).toFixed(1)} ms (${r.getRows().length} rows)`);
    }
    c.closeSync();
  }
  const du = require('child_process').execSync(`du -sm ${dir}`).toString().trim(); console.log(`${which} size: ${du}`);
}
main();
