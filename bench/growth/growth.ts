// `bun run bench --growth [--quick]`: how costs grow with tenants, outbox rows and the unforwarded
// journal (issue 15). Each curve runs `sluice ingest` as a child process against a database of its
// own on the local Postgres; no Kafka is needed. See README.md, "Benchmarks", "Growth".
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KEY_SNAPSHOT_FILE } from '../../src/ingest/key-snapshot.ts';
import { claimForTenants, enteredPartitions, pendingPartitions, pendingTenants } from '../../src/outbox/claims.ts';
import { pendingByTenant } from '../../src/outbox/counts.ts';
import { freshDatabase, type BenchDatabase } from '../database.ts';
import { statusMiB } from '../proc.ts';
import { startServer, type ServerProcess } from '../server-process.ts';
import { NODE_LISTENING } from '../sluice.ts';
import { fillJournal } from './fill-journal.ts';
import { fillOutbox } from './fill-outbox.ts';

const ROOT = resolve(import.meta.dir, '..', '..');

export interface GrowthPoint {
  curve: 'tenants' | 'outbox_rows' | 'unforwarded' | 'published';
  /** Tenants, outbox rows, unforwarded journal records, or rows published (pending, then sent) since the outbox's last VACUUM. */
  x: number;
  /**
   * The point's variant: for `unforwarded`, how the node started (`full scan`, no dedupe snapshot, or
   * `snapshot`); for `published`, `no VACUUM` or `after VACUUM`; empty for other curves.
   */
  start?: string;
  start_ms?: number;
  rss_mib?: number;
  peak_rss_mib?: number;
  /** Median of 5 scrapes of /metrics, and the slowest. */
  scrape_ms?: number;
  scrape_max_ms?: number;
  series?: number;
  /** Median of 5 runs of the ingest backlog refresh query. */
  backlog_refresh_ms?: number;
  /** Single-event JSON writes a second over all tenants, sync mode. */
  throughput_rps?: number;
  /** published: median of 5 runs of the processor's regular poll over 16 partitions (`enteredPartitions`: rows since the last polls). */
  poll_ms?: number;
  /** published: median of 5 runs of its look at every pending row (`pendingPartitions`: its first poll, and an operator's replay). */
  full_poll_ms?: number;
  /** published: median of 5 runs of a partition task's tenant discovery (`pendingTenants`). */
  discovery_ms?: number;
  /** published: median of 5 claims of one tenant's single pending row (`claimForTenants`). */
  claim_ms?: number;
  /** published, `after VACUUM`: how long the VACUUM of the outbox took. */
  vacuum_ms?: number;
}

export interface GrowthPlan {
  tenants: number[];
  outboxRows: number[];
  unforwarded: number[];
  published: number[];
  loadSeconds: number;
}

export const GROWTH_FULL: GrowthPlan = { tenants: [10, 1_000, 10_000], outboxRows: [0, 1_000_000, 5_000_000], unforwarded: [0, 100_000, 1_000_000, 3_000_000], published: [0, 1_000_000, 3_000_000], loadSeconds: 10 };
export const GROWTH_QUICK: GrowthPlan = { tenants: [10, 10_000], outboxRows: [0, 1_000_000], unforwarded: [0, 100_000, 1_000_000], published: [0, 1_000_000], loadSeconds: 4 };

type Progress = (line: string) => void;

async function startIngest(workDir: string, env: Record<string, string>, name: string): Promise<{ node: ServerProcess; startMs: number }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLUICE_') && k !== 'DATABASE_URL' && k !== 'KAFKA_BROKERS'));
  const started = performance.now();
  const node = await startServer({
    cmd: ['bun', 'src/cli.ts', 'ingest'],
    cwd: ROOT,
    logPath: join(workDir, `growth-${name}.log`),
    ready: NODE_LISTENING,
    env: { ...inherited, SLUICE_HOST: '127.0.0.1', SLUICE_PORT: '0', SLUICE_NODE_ID: 'growth', ...env },
  });
  const startMs = performance.now() - started;
  // The signal handlers are installed just after the URL is logged: a SIGTERM before them would kill
  // the node without its clean stop (and without the snapshot the next start loads).
  await fetch(`${node.url}/healthz`);
  return { node, startMs };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}

/** Five timed scrapes after a warm-up one: median, slowest, and the number of series rendered. */
async function scrape(url: string): Promise<{ ms: number; max: number; series: number }> {
  let series = 0;
  const get = async (): Promise<void> => {
    const text = await (await fetch(`${url}/metrics`)).text();
    series = text.split('\n').filter((l) => l.length > 0 && !l.startsWith('#')).length;
  };
  await get();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push(await timed(get));
  return { ms: median(times), max: Math.max(...times), series };
}

/** Single JSON events from 32 concurrent clients, tenant by tenant in turn, for `seconds`. */
async function load(url: string, tenants: number, seconds: number, runId: string): Promise<number> {
  const post = (tenant: number, key: string): Promise<Response> =>
    fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': `t${tenant}` },
      body: JSON.stringify({ dedupe_key: key, payload: { kind: 'order.created', amount: 4200 } }),
    });
  // Every tenant writes once first, so each has its series before the measured part.
  for (let t = 0; t < tenants; t += 64) await Promise.all(Array.from({ length: Math.min(64, tenants - t) }, (_, i) => post(t + i, `${runId}-prime-${t + i}`)));
  let ok = 0;
  let next = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < deadline) {
        const n = next++;
        if ((await post(n % tenants, `${runId}-${n}`)).status === 202) ok++;
      }
    }),
  );
  return ok / ((performance.now() - started) / 1000);
}

async function tenantsCurve(plan: GrowthPlan, workDir: string, progress: Progress): Promise<GrowthPoint[]> {
  const db = await freshDatabase('sluice_growth');
  const points: GrowthPoint[] = [];
  try {
    for (const tenants of plan.tenants) {
      progress(`growth: ${tenants} tenants, ${plan.loadSeconds} s of single-event writes (sync)`);
      const journal = join(workDir, `journal-tenants-${tenants}`);
      const { node, startMs } = await startIngest(workDir, { DATABASE_URL: db.url, SLUICE_JOURNAL_DIR: journal, SLUICE_WRITE_MODE: 'sync' }, `tenants-${tenants}`);
      try {
        const throughput = await load(node.url, tenants, plan.loadSeconds, `t${tenants}`);
        const s = await scrape(node.url);
        points.push({ curve: 'tenants', x: tenants, start_ms: startMs, rss_mib: statusMiB(node.pid, 'VmRSS'), peak_rss_mib: node.peakRssMiB(), scrape_ms: s.ms, scrape_max_ms: s.max, series: s.series, throughput_rps: throughput });
      } finally {
        await node.stop();
        rmSync(journal, { recursive: true, force: true });
        await db.reset();
      }
    }
  } finally {
    await db.close();
  }
  return points;
}

async function outboxCurve(plan: GrowthPlan, workDir: string, progress: Progress): Promise<GrowthPoint[]> {
  const db = await freshDatabase('sluice_growth');
  const points: GrowthPoint[] = [];
  let rows = 0;
  try {
    for (const target of plan.outboxRows) {
      if (target > rows) {
        progress(`growth: filling the outbox to ${target} rows over 10,000 tenants (1% pending)`);
        await fillOutbox(db.sql, { rows: target - rows, tenants: 10_000, pending: Math.round((target - rows) / 100), partitions: 16 }, `o${target}`);
        rows = target;
      }
      const journal = join(workDir, `journal-outbox-${target}`);
      const { node, startMs } = await startIngest(workDir, { DATABASE_URL: db.url, SLUICE_JOURNAL_DIR: journal, SLUICE_WRITE_MODE: 'sync' }, `outbox-${target}`);
      try {
        const s = await scrape(node.url);
        const refresh: number[] = [];
        for (let i = 0; i < 5; i++) refresh.push(await timed(() => pendingByTenant(db.sql)));
        points.push({ curve: 'outbox_rows', x: target, start_ms: startMs, rss_mib: statusMiB(node.pid, 'VmRSS'), scrape_ms: s.ms, scrape_max_ms: s.max, series: s.series, backlog_refresh_ms: median(refresh) });
        progress(`  ${target} rows: scrape ${s.ms.toFixed(1)} ms (max ${s.max.toFixed(1)}), ${s.series} series, backlog refresh ${median(refresh).toFixed(1)} ms`);
      } finally {
        await node.stop();
        rmSync(journal, { recursive: true, force: true });
      }
    }
  } finally {
    await db.close();
  }
  return points;
}

const PARTITIONS = 16;

type Statements = Pick<GrowthPoint, 'poll_ms' | 'full_poll_ms' | 'discovery_ms' | 'claim_ms'>;

/** The processor's three statements whose cost follows the pending index (median of 5 after one warm-up). */
async function processorStatements(sql: BenchDatabase['sql'], after: string): Promise<Statements> {
  const all = Array.from({ length: PARTITIONS }, (_, p) => p);
  const medianOf = async (f: () => Promise<unknown>): Promise<number> => {
    await f();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push(await timed(f));
    return median(times);
  };
  return {
    poll_ms: await medianOf(() => enteredPartitions(sql, all, after)),
    full_poll_ms: await medianOf(() => pendingPartitions(sql, all)),
    discovery_ms: await medianOf(() => pendingTenants(sql, 0)),
    claim_ms: await medianOf(() => claimForTenants(sql, 0, new Map([['g0', 500]]))),
  };
}

/**
 * What publishing leaves behind: each published row was pending, then marked sent, and the pending
 * index keeps the entry of its pending version until a VACUUM of the outbox removes it. Each point
 * fills a fresh outbox with `x` pending rows over 16 tenants (one a partition, as a node with a few big
 * tenants has), marks them sent as the processor does (an UPDATE), adds one pending row for partition
 * 0, and times the processor's regular poll (rows since the last polls), its full poll (every
 * pending row), a partition's tenant discovery and a claim; then VACUUMs and times them again. Autovacuum is off for the table, so the server's own schedule does not decide it.
 */
async function publishedCurve(plan: GrowthPlan, progress: Progress): Promise<GrowthPoint[]> {
  const db = await freshDatabase('sluice_growth');
  const points: GrowthPoint[] = [];
  try {
    for (const target of plan.published) {
      await db.reset();
      await db.sql`ALTER TABLE outbox SET (autovacuum_enabled = false)`;
      progress(`growth: ${target} rows published (pending, then marked sent) since the outbox's last VACUUM`);
      if (target > 0) {
        await fillOutbox(db.sql, { rows: target, tenants: PARTITIONS, pending: target, partitions: PARTITIONS }, `p${target}`);
        const [range] = await db.sql<{ lo: string; hi: string }[]>`SELECT min(id)::text AS lo, max(id)::text AS hi FROM outbox WHERE status = 'pending'`;
        const chunk = 500_000n;
        for (let from = BigInt(range?.lo ?? '1'); from <= BigInt(range?.hi ?? '0'); from += chunk) {
          await db.sql`UPDATE outbox SET status = 'sent', sent_at = now() WHERE id >= ${from.toString()} AND id < ${(from + chunk).toString()} AND status = 'pending'`;
        }
      }
      // The last poll saw the outbox up to here; one row has entered since.
      const { top } = await enteredPartitions(db.sql, [], '0');
      await db.sql`
        INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, ingested_at)
        VALUES ('g0', ${`fresh-${target}`}, 0, 'sluice.events', '{}', '{}', now())`;
      const before = await processorStatements(db.sql, top);
      points.push({ curve: 'published', x: target, start: 'no VACUUM', ...before });
      const vacuumMs = await timed(() => db.sql`VACUUM outbox`);
      const after = await processorStatements(db.sql, top);
      points.push({ curve: 'published', x: target, start: 'after VACUUM', ...after, vacuum_ms: vacuumMs });
      const ms = (p: Statements): string =>
        `poll ${p.poll_ms?.toFixed(2)} / full poll ${p.full_poll_ms?.toFixed(2)} / discovery ${p.discovery_ms?.toFixed(2)} / claim ${p.claim_ms?.toFixed(2)} ms`;
      progress(`  ${target} published: ${ms(before)}; VACUUM ${vacuumMs.toFixed(0)} ms, then ${ms(after)}`);
    }
  } finally {
    await db.close();
  }
  return points;
}

async function unforwardedCurve(plan: GrowthPlan, workDir: string, progress: Progress): Promise<GrowthPoint[]> {
  const db: BenchDatabase = await freshDatabase('sluice_growth');
  // Forwarding blocked: every insert fails, so the whole journal stays unforwarded across restarts.
  await db.sql`ALTER TABLE outbox RENAME TO outbox_blocked`;
  const journal = join(workDir, 'journal-unforwarded');
  mkdirSync(journal, { recursive: true });
  const env = { DATABASE_URL: db.url, SLUICE_JOURNAL_DIR: journal, SLUICE_WRITE_MODE: 'fast_ack', SLUICE_MAX_UNFORWARDED: '100000000' };
  const points: GrowthPoint[] = [];
  let records = 0;
  try {
    for (const target of plan.unforwarded) {
      if (target > records) {
        progress(`growth: journal to ${target} unforwarded records`);
        await fillJournal(journal, 'growth', target - records, `j${target}`);
        records = target;
      }
      for (const start of ['full scan', 'snapshot'] as const) {
        if (start === 'full scan') rmSync(join(journal, 'growth', KEY_SNAPSHOT_FILE), { force: true });
        const { node, startMs } = await startIngest(workDir, env, `unforwarded-${target}-${start.replace(' ', '-')}`);
        try {
          const point: GrowthPoint = { curve: 'unforwarded', x: target, start, start_ms: startMs, rss_mib: statusMiB(node.pid, 'VmRSS'), peak_rss_mib: node.peakRssMiB() };
          points.push(point);
          progress(`  ${target} records, ${start}: listening after ${startMs.toFixed(0)} ms, RSS ${point.rss_mib?.toFixed(0)} MiB (peak ${point.peak_rss_mib?.toFixed(0)})`);
        } finally {
          // A clean stop writes the snapshot the next start loads.
          await node.stop(120_000);
        }
      }
    }
  } finally {
    await db.close();
  }
  return points;
}

export async function runGrowth(plan: GrowthPlan, workDir: string, progress: Progress): Promise<GrowthPoint[]> {
  return [
    ...(await unforwardedCurve(plan, workDir, progress)),
    ...(await outboxCurve(plan, workDir, progress)),
    ...(await tenantsCurve(plan, workDir, progress)),
    ...(await publishedCurve(plan, progress)),
  ];
}

const fmt = (v: number | undefined, digits = 0): string => (v === undefined ? '' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

export function formatGrowth(points: GrowthPoint[]): string {
  const lines = [
    '| curve | point | start | ready after (ms) | RSS (MiB) | peak RSS (MiB) | scrape median / max (ms) | series | backlog refresh (ms) | writes/s |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const p of points.filter((p) => p.curve !== 'published')) {
    const scrapeCell = p.scrape_ms === undefined ? '' : `${fmt(p.scrape_ms, 1)} / ${fmt(p.scrape_max_ms, 1)}`;
    lines.push(`| ${p.curve} | ${fmt(p.x)} | ${p.start ?? ''} | ${fmt(p.start_ms)} | ${fmt(p.rss_mib)} | ${fmt(p.peak_rss_mib)} | ${scrapeCell} | ${fmt(p.series)} | ${fmt(p.backlog_refresh_ms, 1)} | ${fmt(p.throughput_rps)} |`);
  }
  const published = points.filter((p) => p.curve === 'published');
  if (published.length > 0) {
    lines.push(
      '',
      '| published since VACUUM | outbox | poll, 16 partitions (ms) | full poll (ms) | tenant discovery (ms) | claim (ms) | VACUUM took (ms) |',
      '| ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const p of published) {
      lines.push(`| ${fmt(p.x)} | ${p.start ?? ''} | ${fmt(p.poll_ms, 2)} | ${fmt(p.full_poll_ms, 2)} | ${fmt(p.discovery_ms, 2)} | ${fmt(p.claim_ms, 2)} | ${fmt(p.vacuum_ms)} |`);
    }
  }
  return lines.join('\n');
}
