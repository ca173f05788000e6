// `bun run bench [--quick] [--only name,name] [--growth]`: starts Postgres database, Kafka broker and sluice
// itself, measures the ceilings and every scenario in the same run, prints the tables and writes
// bench/results/<date>.json and .png. See README.md, "Benchmarks".
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBroker } from '../src/kafka/local-broker.ts';
import { measureProducerCeiling } from './baselines/kafka-perf.ts';
import { measureInsertCeiling } from './baselines/postgres-insert.ts';
import { writeBenchTenant, type BenchTenant } from './bench-tenant.ts';
import { renderChart } from './chart.ts';
import { freshDatabase, type BenchDatabase } from './database.ts';
import { runEndToEnd } from './end-to-end.ts';
import { formatGrowth, GROWTH_FULL, GROWTH_QUICK, runGrowth } from './growth/growth.ts';
import { createTopic } from './kafka-reader.ts';
import { runPublishLatency } from './publish-latency.ts';
import { RSS_LIMIT_MIB, type BaselineResult, type BenchReport, type Measured, type ScenarioResult } from './result.ts';
import { BATCH_CONNECTIONS, BATCH_LINES, FULL, QUICK, SCENARIOS, SINGLE_CONNECTIONS, type Durations, type Scenario } from './scenarios.ts';
import { startServer } from './server-process.ts';
import { startSluice } from './sluice.ts';
import { formatTables } from './table.ts';
import { ensureWrk, runWrk, type LoadShape, type LoadTarget } from './wrk.ts';

const PAYLOAD = {
  kind: 'order.created',
  amount: 4200,
  currency: 'EUR',
  customer: 'c-1234567',
  items: [
    { sku: 'A-100', qty: 2 },
    { sku: 'B-220', qty: 1 },
  ],
};
const TEMPLATE = `{"dedupe_key":"%s","payload":${JSON.stringify(PAYLOAD)}}`;

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyAt = args.indexOf('--only');
const only = onlyAt === -1 ? undefined : args[onlyAt + 1]?.split(',');
const durations: Durations = quick ? QUICK : FULL;
const started = performance.now();
const runId = Date.now().toString(36);

function progress(line: string): void {
  console.log(`[bench ${((performance.now() - started) / 1000).toFixed(0).padStart(4)}s] ${line}`);
}

interface Context {
  db: BenchDatabase;
  brokers: string[];
  tenant: BenchTenant;
  workDir: string;
}

async function measureWrk(url: string, ctx: Context, name: string, shape: Omit<LoadShape, 'durationS'>): Promise<Measured> {
  const target: LoadTarget = { url, token: ctx.tenant.token, tenant: ctx.tenant.id, template: TEMPLATE, runId: `${runId}-${name}-warm` };
  await runWrk(target, { ...shape, durationS: durations.warmupS });
  const r = await runWrk({ ...target, runId: `${runId}-${name}` }, { ...shape, durationS: durations.httpS });
  const perRequest = shape.lines;
  return {
    unit: perRequest === 1 ? 'req/s' : 'events/s',
    throughput: r.requestsPerS * perRequest,
    p50_ms: r.p50Ms,
    p99_ms: r.p99Ms,
    max_ms: r.maxMs,
    ...(r.errors > 0 ? { note: `${r.errors} of ${r.requests} requests failed (non-2xx, socket error or timeout)` } : {}),
  };
}

async function rawServeCeiling(ctx: Context, lines: number, connections: number): Promise<Measured> {
  const server = await startServer({
    cmd: ['bun', join(import.meta.dir, 'baselines', 'raw-server.ts')],
    cwd: import.meta.dir,
    env: process.env,
    logPath: join(ctx.workDir, 'raw-server.log'),
    ready: /^listening (\S+)\n/m,
  });
  try {
    return await measureWrk(server.url, ctx, `raw-${lines}`, { lines, connections });
  } finally {
    await server.stop();
  }
}

async function measureBaselines(ctx: Context): Promise<BaselineResult[]> {
  progress(`ceiling: raw Bun.serve, single JSON events, ${SINGLE_CONNECTIONS} connections`);
  const json = await rawServeCeiling(ctx, 1, SINGLE_CONNECTIONS);
  progress(`ceiling: raw Bun.serve, NDJSON batches of ${BATCH_LINES}, ${BATCH_CONNECTIONS} connections`);
  const ndjson = await rawServeCeiling(ctx, BATCH_LINES, BATCH_CONNECTIONS);
  progress('ceiling: Postgres batched INSERT (insertRows), 1000 rows a batch, 4 connections');
  const insert = await measureInsertCeiling({
    url: ctx.db.url,
    tenant: ctx.tenant.id,
    topic: 'sluice.events',
    payload: PAYLOAD,
    runId: `${runId}-ceiling`,
    connections: 4,
    batch: 1000,
    durationS: durations.insertS,
  });
  await ctx.db.reset();
  const recordBytes = Buffer.byteLength(JSON.stringify(PAYLOAD));
  progress(`ceiling: Kafka ProducerPerformance, ${durations.kafkaRecords} records of ${recordBytes} bytes, acks=all`);
  const kafka = await measureProducerCeiling({
    bootstrap: ctx.brokers.join(','),
    topic: `bench.${runId}.producer-perf`,
    records: durations.kafkaRecords,
    recordBytes,
    timeoutMs: 180_000,
  });
  return [
    { name: 'raw-bun-serve-json', description: 'Bun.serve parsing the same JSON body, 202', ...json },
    { name: 'raw-bun-serve-ndjson-1000', description: 'Bun.serve parsing the same NDJSON batch, 202', ...ndjson },
    {
      name: 'postgres-batched-insert',
      description: 'insertRows, batches of 1000 over 4 connections; latency per batch',
      unit: 'events/s',
      throughput: insert.eventsPerS,
      p50_ms: insert.p50Ms,
      p99_ms: insert.p99Ms,
      max_ms: insert.maxMs,
    },
    {
      name: 'kafka-producer-perf',
      description: `org.apache.kafka.tools.ProducerPerformance, ${recordBytes}-byte records, acks=all`,
      unit: 'events/s',
      throughput: kafka.recordsPerS,
      p50_ms: kafka.p50Ms,
      p99_ms: kafka.p99Ms,
      max_ms: kafka.maxMs,
    },
  ];
}

async function measureScenario(ctx: Context, s: Scenario): Promise<{ measured: Measured; peakRssMiB: number }> {
  const topic = `bench.${runId}.${s.name}`;
  await createTopic(ctx.brokers, topic);
  const sluice = await startSluice({
    databaseUrl: ctx.db.url,
    brokers: ctx.brokers,
    tenantsFile: ctx.tenant.file,
    topic,
    mode: s.kind === 'http' ? s.mode : 'fast_ack',
    guarantee: s.kind === 'end-to-end' ? s.guarantee : 'exactly_once',
    workDir: ctx.workDir,
  });
  try {
    const common = { url: sluice.url, brokers: ctx.brokers, topic, tenant: ctx.tenant, runId: `${runId}-${s.name}` };
    let measured: Measured;
    if (s.kind === 'http') {
      measured = await measureWrk(sluice.url, ctx, s.name, { lines: s.lines, connections: s.connections });
    } else if (s.kind === 'end-to-end') {
      measured = await runEndToEnd({
        ...common,
        line: (key) => TEMPLATE.replace('%s', key),
        events: durations.endToEndEvents,
        batch: BATCH_LINES,
        concurrency: 4,
        timeoutMs: durations.endToEndTimeoutMs,
      });
    } else {
      measured = await runPublishLatency({ ...common, payload: PAYLOAD, rate: s.rate, seconds: durations.latencyS });
    }
    return { measured, peakRssMiB: await sluice.peakRssMiB() };
  } finally {
    await sluice.stop();
    await ctx.db.reset();
  }
}

/** `--growth`: the growth curves alone (bench/growth/growth.ts), a table and results/growth-<date>.json. */
async function growth(): Promise<number> {
  const workDir = mkdtempSync(join(tmpdir(), 'sluice-growth-'));
  progress(`${quick ? 'quick' : 'full'} growth run ${runId}; work files in ${workDir}`);
  const points = await runGrowth(quick ? GROWTH_QUICK : GROWTH_FULL, workDir, progress);
  rmSync(workDir, { recursive: true, force: true });
  console.log(`\n${formatGrowth(points)}\n`);
  const date = new Date().toISOString().slice(0, 10);
  const file = join(import.meta.dir, 'results', `growth-${date}${quick ? '-quick' : ''}.json`);
  await Bun.write(file, `${JSON.stringify({ date, quick, cores: availableParallelism(), bun: Bun.version, points }, null, 2)}\n`);
  progress(`wrote ${file}`);
  return 0;
}

async function main(): Promise<number> {
  if (args.includes('--growth')) return growth();
  await ensureWrk();
  const workDir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  progress(`${quick ? 'quick' : 'full'} run ${runId}; work files in ${workDir}`);
  progress('fresh database sluice_bench on the local Postgres');
  const db = await freshDatabase();
  progress('starting a local Kafka broker');
  const broker = await startLocalBroker();
  const ctx: Context = { db, brokers: [broker.bootstrap], tenant: writeBenchTenant(workDir), workDir };
  const scenarios: ScenarioResult[] = [];
  let baselines: BaselineResult[];
  let finished = false;
  try {
    baselines = await measureBaselines(ctx);
    for (const b of baselines) progress(`  ${b.name}: ${b.throughput.toFixed(0)} ${b.unit}, p99 ${b.p99_ms.toFixed(2)} ms`);
    for (const s of SCENARIOS.filter((x) => only === undefined || only.includes(x.name))) {
      progress(`scenario ${s.name} (sluice restarted)`);
      const { measured, peakRssMiB } = await measureScenario(ctx, s);
      const ceiling = baselines.find((b) => b.name === s.baseline)?.throughput ?? Number.NaN;
      const ratio = measured.throughput / ceiling;
      const result: ScenarioResult = {
        name: s.name,
        ...measured,
        peak_rss_mib: peakRssMiB,
        baseline: s.baseline,
        ratio,
        target: s.target?.text ?? null,
        target_met: s.target === undefined ? null : s.target.met(measured, ratio),
        rss_target_met: peakRssMiB <= RSS_LIMIT_MIB,
      };
      scenarios.push(result);
      progress(
        `  ${s.name}: ${measured.throughput.toFixed(0)} ${measured.unit} (${ratio.toFixed(2)} x ${s.baseline}), ` +
          `p50 ${measured.p50_ms.toFixed(2)} / p99 ${measured.p99_ms.toFixed(2)} ms, peak RSS ${peakRssMiB.toFixed(0)} MiB` +
          (measured.note === undefined ? '' : ` — ${measured.note}`),
      );
    }
    finished = true;
  } finally {
    progress('stopping the broker and cleaning up');
    await broker.stop();
    await db.close();
    // Kept after a failure: the sluice and server logs in it say why.
    if (finished) rmSync(workDir, { recursive: true, force: true });
    else progress(`logs kept in ${workDir}`);
  }

  const date = new Date().toISOString().slice(0, 10);
  const report: BenchReport = {
    date,
    command: `bun run bench${args.length > 0 ? ` ${args.join(' ')}` : ''}`,
    quick,
    machine: {
      cores: availableParallelism(),
      bun: Bun.version,
      platform: `${process.platform}-${process.arch}`,
      busy_note: 'figures are ratios to ceilings measured in the same run on the same machine',
    },
    baselines,
    scenarios,
  };
  console.log(`\n${formatTables(report)}\n`);
  const base = join(import.meta.dir, 'results', quick ? `${date}-quick` : date);
  await Bun.write(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  await renderChart(report, `${base}.png`);
  progress(`wrote ${base}.json and ${base}.png`);
  const missed = scenarios.filter((s) => s.target_met === false || !s.rss_target_met).map((s) => s.name);
  if (missed.length > 0) progress(`targets missed: ${missed.join(', ')}`);
  return 0;
}

// Ctrl-C: exit through process.exit so the children (broker, sluice, servers) are killed by their exit hooks.
process.once('SIGINT', () => process.exit(130));
process.exit(await main());
