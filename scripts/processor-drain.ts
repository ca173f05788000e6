// The processor alone: `bun scripts/processor-drain.ts <rows> <runs> [root ...] [--tenants T] [--batch B]
// [--guarantee at_least_once] [--prof DIR] [--statements]`. Starts a local broker and a fresh database
// (SLUICE_BENCH_DATABASE_URL, as the bench), then for each run and each project root (default: this
// one; give a checkout of another commit to compare, back to back): starts `bun <root>/src/cli.ts
// process`, inserts the rows in one transaction (one tenant by default, the bench's payload), and
// times until none is pending. Prints rows/s and CPU µs per record of sluice, Postgres and the broker
// over the drain alone (start-up and the insert are left out). --statements adds Postgres's time
// and WAL per record of each statement over the drain, from pg_stat_statements (the server must load
// it: shared_preload_libraries); its times are wall time in the executor, not CPU.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { brokerSelector, postgresSelector } from '../bench/cpu-meter.ts';
import { writeBenchTenant } from '../bench/bench-tenant.ts';
import { freshDatabase } from '../bench/database.ts';
import { createTopic } from '../bench/kafka-reader.ts';
import { allStats, readStat } from '../bench/proc.ts';
import { startServer } from '../bench/server-process.ts';
import { kafkaTools } from '../src/config.ts';
import { startLocalBroker } from '../src/kafka/local-broker.ts';
import { partitionOf } from '../src/outbox/partition.ts';

const args = process.argv.slice(2);
function option(name: string): string | undefined {
  const at = args.indexOf(name);
  if (at === -1) return undefined;
  const [value] = args.splice(at, 2).slice(1);
  return value;
}
function flag(name: string): boolean {
  const at = args.indexOf(name);
  if (at !== -1) args.splice(at, 1);
  return at !== -1;
}
const profileDir = option('--prof');
const statements = flag('--statements');
const tenantCount = Number(option('--tenants') ?? '1');
const batch = option('--batch');
const guarantee = option('--guarantee') ?? 'exactly_once';
const [rowsArg, runsArg, ...given] = args;
const rows = Number(rowsArg);
const runs = Number(runsArg ?? '1');
const roots = given.length > 0 ? given.map((r) => resolve(r)) : [resolve(import.meta.dir, '..')];
if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(runs) || runs < 1) {
  console.error('usage: bun scripts/processor-drain.ts <rows> <runs> [root ...] [--tenants T] [--batch B] [--guarantee G] [--prof DIR] [--statements]');
  process.exit(2);
}
// The bench's event payload (bench/run.ts).
const PAYLOAD = JSON.stringify({ kind: 'order.created', amount: 4200, currency: 'EUR', customer: 'c-1234567', items: [{ sku: 'A-100', qty: 2 }, { sku: 'B-220', qty: 1 }] });
const PARTITIONS = 16;
/** Time for the started process to take its partitions before the rows arrive. */
const SETTLE_MS = 3_000;
const TICK_US = 10_000;

const work = mkdtempSync(join(tmpdir(), 'sluice-drain-'));
const broker = await startLocalBroker({ tools: kafkaTools(process.env) });
const db = await freshDatabase('sluice_drain');
const tenant = writeBenchTenant(work);
const names = Array.from({ length: tenantCount }, (_, t) => (t === 0 ? tenant.id : `${tenant.id}${t}`));
if (tenantCount > 1) {
  const file = (await Bun.file(tenant.file).json()) as { tenants: Record<string, object> };
  const policy = file.tenants[tenant.id] ?? {};
  for (const name of names.slice(1)) file.tenants[name] = { ...policy, tokens: [] };
  writeFileSync(tenant.file, JSON.stringify(file));
}
if (statements) {
  try {
    await db.sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    await db.sql`SELECT 1 FROM pg_stat_statements LIMIT 1`;
  } catch (err) {
    console.error(`--statements needs pg_stat_statements in shared_preload_libraries: ${String(err)}`);
    await db.close();
    await broker.stop();
    process.exit(2);
  }
}
const postgresPids = await postgresSelector(db.sql, db.name);
const brokerPids = brokerSelector(broker.dataDir);
const ticks = (pids: number[]): number => pids.reduce((sum, pid) => sum + (readStat(pid)?.cpuTicks ?? 0), 0);
/** The statements of the drain's database by executor time, per record drained. */
async function printStatements(records: number): Promise<void> {
  const top = await db.sql<{ calls: number; ms: number; wal: number; query: string }[]>`
    SELECT calls::int, total_exec_time AS ms, wal_bytes::float8 AS wal, query FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel
    ORDER BY total_exec_time DESC LIMIT 6`;
  for (const t of top) {
    console.log(
      `  ${((t.ms * 1000) / records).toFixed(2)} µs/record, ${(t.wal / records).toFixed(0)} B WAL/record, ${t.calls} calls: ` +
        t.query.replace(/\s+/g, ' ').slice(0, 80),
    );
  }
}

try {
  for (let run = 0; run < runs; run++) {
    for (const [i, root] of roots.entries()) {
      const topic = `drain.${run}.${i}.${Date.now()}`;
      await createTopic([broker.bootstrap], topic);
      await db.sql`TRUNCATE outbox`;
      const server = await startServer({
        cmd: ['bun', ...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]), join(root, 'src/cli.ts'), 'process'],
        cwd: root,
        logPath: join(work, `process-${run}-${i}.log`),
        ready: /"msg":"sluice listening".*?"url":"([^"]+)"/,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          DATABASE_URL: db.url,
          KAFKA_BROKERS: broker.bootstrap,
          SLUICE_GUARANTEE: guarantee,
          SLUICE_KAFKA_TOPIC: topic,
          SLUICE_TENANTS_FILE: tenant.file,
          SLUICE_PARTITIONS: String(PARTITIONS),
          SLUICE_HOST: '127.0.0.1',
          SLUICE_PORT: '0',
          ...(batch === undefined ? {} : { SLUICE_PUBLISH_BATCH: batch }),
        },
      });
      try {
        await Bun.sleep(SETTLE_MS);
        const stats = allStats();
        const pg = postgresPids?.(stats) ?? [];
        const kafka = brokerPids?.(stats) ?? [];
        await db.sql`
          INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, request_id, ingested_at)
          SELECT (${db.sql.array(names)}::text[])[1 + g % ${tenantCount}], 'k' || g,
                 (${db.sql.array(names.map((n) => partitionOf(n, PARTITIONS)))}::int[])[1 + g % ${tenantCount}],
                 ${topic}, ${PAYLOAD}, '{}'::jsonb, 'r' || g, now()
          FROM generate_series(1, ${rows}) g`;
        if (statements) await db.sql`SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)`;
        const started = performance.now();
        const before = { app: readStat(server.pid)?.cpuTicks ?? 0, pg: ticks(pg), kafka: ticks(kafka) };
        for (;;) {
          const [row] = await db.sql<{ pending: boolean }[]>`SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending') AS pending`;
          if (row?.pending === false) break;
          await Bun.sleep(50);
        }
        const s = (performance.now() - started) / 1000;
        const perRecord = (from: number, to: number): string => (((to - from) * TICK_US) / rows).toFixed(1);
        const app = perRecord(before.app, readStat(server.pid)?.cpuTicks ?? 0);
        console.log(
          `${root} run ${run}: ${rows} rows in ${s.toFixed(2)} s (${(rows / s).toFixed(0)}/s); CPU µs/record: sluice ${app}, ` +
            `postgres ${perRecord(before.pg, ticks(pg))}, kafka ${perRecord(before.kafka, ticks(kafka))}`,
        );
        if (statements) await printStatements(rows);
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  await db.close();
  await broker.stop();
  rmSync(work, { recursive: true, force: true });
}
