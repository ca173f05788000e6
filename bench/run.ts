// `bun run bench [--quick] [--only name,name] [--profile] [--growth]`: checks (and installs) what it
// needs, starts a Postgres database, a Kafka broker and sluice itself, measures the ceilings and every
// scenario in the same run with the CPU each process spent, prints the tables and writes
// bench/results/<date>.json and .svg. See README.md, "Benchmarks".
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkaTools } from '../src/config.ts';
import { startLocalBroker } from '../src/kafka/local-broker.ts';
import { measureProducerCeiling } from './baselines/kafka-perf.ts';
import { measureInsertCeiling } from './baselines/postgres-insert.ts';
import { writeBenchTenant, type BenchTenant } from './bench-tenant.ts';
import { chartFile } from './chart.ts';
import { warmBrokerTransactions } from './broker-warmup.ts';
import { budgetOf, budgetPlan, minimumLatencyName, minimumLatencyNote } from './budget.ts';
import { brokerSelector, ownChildren, postgresSelector, startCpuMeter, treeOf, type Selector } from './cpu-meter.ts';
import { freshDatabase, type BenchDatabase } from './database.ts';
import { runEndToEnd } from './end-to-end.ts';
import { formatGrowth, GROWTH_FULL, GROWTH_QUICK, runGrowth } from './growth/growth.ts';
import { createTopic } from './kafka-reader.ts';
import { runPublishLatency } from './publish-latency.ts';
import { allStats, flushDirtyPages, processTree, statusMiB } from './proc.ts';
import { readProfiles, type StageProfile } from './profile.ts';
import { ensureRequirements } from './requirements.ts';
import { RSS_LIMIT_MIB, type BaselineResult, type BenchReport, type Measured, type ScenarioResult } from './result.ts';
import { scalingOf } from './scaling.ts';
import {
  BATCH_CONNECTIONS,
  BATCH_LINES,
  FULL,
  PUBLISH_RATE,
  QUICK,
  SCALING_WORKERS,
  SCENARIOS,
  SINGLE_CONNECTIONS,
  WORKERS_SETTING,
  type Durations,
  type Scenario,
} from './scenarios.ts';
import { startServer } from './server-process.ts';
import { startSluice, type SluiceSettings } from './sluice.ts';
import { formatTables } from './table.ts';
import { runWrk, type LoadShape, type LoadTarget } from './wrk.ts';

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
const profile = args.includes('--profile');
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
  /** The processes that take part, for the CPU meter; undefined where /proc does not show them. */
  postgres: Selector | undefined;
  kafka: Selector | undefined;
}

type Selectors = Parameters<typeof startCpuMeter>[0];

/** Runs `measure` with the CPU meter on, and divides each process group's CPU time by the events it measured. */
async function metered(selectors: Selectors, measure: () => Promise<Measured>): Promise<Measured> {
  const meter = startCpuMeter(selectors);
  const measured = await measure();
  return { ...measured, cpu: meter.stop(measured.events) };
}

/** wrk's command line starts with its name; its warm-up run has exited before the meter starts. */
const WRK: Selector = ownChildren('wrk ');

async function measureWrk(url: string, ctx: Context, name: string, shape: Omit<LoadShape, 'durationS'>, selectors: Selectors): Promise<Measured> {
  const target: LoadTarget = { url, token: ctx.tenant.token, tenant: ctx.tenant.id, template: TEMPLATE, runId: `${runId}-${name}-warm` };
  await runWrk(target, { ...shape, durationS: durations.warmupS });
  return metered({ ...selectors, load: WRK }, async () => {
    const r = await runWrk({ ...target, runId: `${runId}-${name}` }, { ...shape, durationS: durations.httpS });
    return wrkMeasured(r, shape.lines);
  });
}

function wrkMeasured(r: Awaited<ReturnType<typeof runWrk>>, perRequest: number): Measured {
  return {
    unit: perRequest === 1 ? 'req/s' : 'events/s',
    throughput: r.requestsPerS * perRequest,
    events: r.ok * perRequest,
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
    return await measureWrk(server.url, ctx, `raw-${lines}`, { lines, connections }, { app: treeOf(server.pid) });
  } finally {
    await server.stop();
  }
}

/**
 * Runs `measure` against the durable minimum of a write mode (bench/baselines/durable-minimum.ts),
 * publishing to a fresh topic of its own when `publish`. Its process, Postgres and (publishing) the
 * broker are metered like sluice's. The outbox is emptied before and after.
 */
async function withDurableMinimum(
  ctx: Context,
  mode: 'fast_ack' | 'sync',
  publish: boolean,
  /** Names this run's file, log and topic: one per run. */
  label: string,
  measure: (url: string, topic: string, selectors: Selectors) => Promise<Measured>,
): Promise<Measured> {
  await ctx.db.reset();
  const name = `durable-minimum-${label}`;
  const file = join(ctx.workDir, `${name}.jsonl`);
  const topic = `bench.${runId}.${name}`;
  if (publish) await createTopic(ctx.brokers, topic);
  const server = await startServer({
    cmd: ['bun', join(import.meta.dir, 'baselines', 'durable-minimum.ts'), mode, file],
    cwd: import.meta.dir,
    env: { ...process.env, DATABASE_URL: ctx.db.url, ...(publish ? { KAFKA_BROKERS: ctx.brokers.join(','), MINIMUM_TOPIC: topic } : {}) },
    logPath: join(ctx.workDir, `${name}.log`),
    ready: /^listening (\S+)\n/m,
  });
  try {
    return await measure(server.url, topic, { app: treeOf(server.pid), postgres: ctx.postgres, ...(publish ? { kafka: ctx.kafka } : {}) });
  } finally {
    await server.stop();
    rmSync(file, { force: true });
    await settle(ctx);
  }
}

/** The durable minimum under the single-JSON load of the HTTP scenarios. */
function durableMinimumCeiling(ctx: Context, mode: 'fast_ack' | 'sync', publish = false): Promise<Measured> {
  const label = `${mode}${publish ? '-publish' : ''}`;
  return withDurableMinimum(ctx, mode, publish, label, (url, _topic, selectors) =>
    measureWrk(url, ctx, `minimum-${label}`, { lines: 1, connections: SINGLE_CONNECTIONS }, selectors),
  );
}

/**
 * The durable minimums that publish, after the broker's warm-up (as the `serve` scenarios): each write
 * mode under the single-JSON load, and fast_ack under publish latency's fixed-rate load.
 */
async function measurePublishingMinimums(ctx: Context): Promise<BaselineResult[]> {
  progress(`ceiling: the durable minimum publishing, fast_ack, ${SINGLE_CONNECTIONS} connections`);
  const fastAck = await durableMinimumCeiling(ctx, 'fast_ack', true);
  progress(`ceiling: the durable minimum publishing, sync, ${SINGLE_CONNECTIONS} connections`);
  const sync = await durableMinimumCeiling(ctx, 'sync', true);
  progress(`ceiling: the durable minimum publishing, fast_ack, at a fixed ${PUBLISH_RATE} events/s`);
  const latency = await withDurableMinimum(ctx, 'fast_ack', true, `publish-latency-${PUBLISH_RATE}`, (url, topic, selectors) => {
    const load: Selector = (stats) => [process.pid, ...ownChildren('fixed-rate-load.ts')(stats)];
    const opts = { url, brokers: ctx.brokers, topic, tenant: ctx.tenant, payload: PAYLOAD, runId: `${runId}-minimum-latency`, rate: PUBLISH_RATE, seconds: durations.latencyS };
    return metered({ ...selectors, load }, () => runPublishLatency(opts));
  });
  const what = 'the durable minimum, also publishing each insert in a Kafka transaction and marking it sent';
  return [
    { name: 'durable-minimum-serve-json-fast_ack', description: `${what}; fast_ack`, ...fastAck },
    { name: 'durable-minimum-serve-json-sync', description: `${what}; sync`, ...sync },
    { name: minimumLatencyName(PUBLISH_RATE), description: `${what}; fast_ack at ${PUBLISH_RATE} events/s, send to read_committed arrival`, ...latency },
  ];
}

async function measureBaselines(ctx: Context): Promise<BaselineResult[]> {
  progress(`ceiling: raw Bun.serve, single JSON events, ${SINGLE_CONNECTIONS} connections`);
  const json = await rawServeCeiling(ctx, 1, SINGLE_CONNECTIONS);
  progress(`ceiling: raw Bun.serve, NDJSON batches of ${BATCH_LINES}, ${BATCH_CONNECTIONS} connections`);
  const ndjson = await rawServeCeiling(ctx, BATCH_LINES, BATCH_CONNECTIONS);
  progress('ceiling: Postgres batched INSERT (insertRows), 1000 rows a batch, 4 connections');
  // The client is this process: it does nothing else meanwhile but poll the meter.
  const insert = await metered({ app: () => [process.pid], postgres: ctx.postgres }, async () => {
    const r = await measureInsertCeiling({
      url: ctx.db.url,
      tenant: ctx.tenant.id,
      topic: 'sluice.events',
      payload: PAYLOAD,
      runId: `${runId}-ceiling`,
      connections: 4,
      batch: 1000,
      durationS: durations.insertS,
    });
    return { unit: 'events/s', throughput: r.eventsPerS, events: r.rows, p50_ms: r.p50Ms, p99_ms: r.p99Ms, max_ms: r.maxMs };
  });
  progress(`ceiling: the durable minimum, fast_ack: single JSON events journaled (O_DSYNC group commits), then inserted, ${SINGLE_CONNECTIONS} connections`);
  const minimumFastAck = await durableMinimumCeiling(ctx, 'fast_ack');
  progress(`ceiling: the durable minimum, sync: single JSON events journaled and inserted before the answer, ${SINGLE_CONNECTIONS} connections`);
  const minimumSync = await durableMinimumCeiling(ctx, 'sync');
  const recordBytes = Buffer.byteLength(JSON.stringify(PAYLOAD));
  progress(`ceiling: Kafka ProducerPerformance, ${durations.kafkaRecords} records of ${recordBytes} bytes, acks=all`);
  const kafka = await metered({ app: ownChildren('ProducerPerformance'), kafka: ctx.kafka }, async () => {
    const r = await measureProducerCeiling({
      bootstrap: ctx.brokers.join(','),
      topic: `bench.${runId}.producer-perf`,
      records: durations.kafkaRecords,
      recordBytes,
      timeoutMs: 180_000,
    });
    return { unit: 'events/s', throughput: r.recordsPerS, events: r.records, p50_ms: r.p50Ms, p99_ms: r.p99Ms, max_ms: r.maxMs };
  });
  await settle(ctx);
  return [
    { name: 'raw-bun-serve-json', description: 'Bun.serve parsing the same JSON body, 202', ...json },
    { name: 'raw-bun-serve-ndjson-1000', description: 'Bun.serve parsing the same NDJSON batch, 202', ...ndjson },
    { name: 'postgres-batched-insert', description: 'insertRows, batches of 1000 over 4 connections; latency per batch', ...insert },
    { name: 'kafka-producer-perf', description: `org.apache.kafka.tools.ProducerPerformance, ${recordBytes}-byte records, acks=all`, ...kafka },
    { name: 'durable-minimum-json-fast_ack', description: 'Bun.serve + O_DSYNC group commit, answered when durable; insertRows every 10 ms', ...minimumFastAck },
    { name: 'durable-minimum-json-sync', description: 'Bun.serve + O_DSYNC group commit + insertRows, answered when inserted', ...minimumSync },
  ];
}

/**
 * Between measurements: the outbox emptied and checkpointed (bench/database.ts), then the machine's
 * dirty pages written out, so that no measurement pays for the writes of the one before. The Kafka
 * ceiling left ~300 MB of broker log in the page cache, and the scenario after it (ingest-json-fast_ack,
 * whose answers wait for journal fsyncs on the same disk) read p99 453 and 627 ms in two full runs
 * against 47 ms when it ran again later in the same run.
 */
async function settle(ctx: Context): Promise<void> {
  await ctx.db.reset();
  await flushDirtyPages();
}

interface ScenarioRun {
  measured: Measured;
  peakRssPerProcess: number[];
  profile: StageProfile | undefined;
}

async function measureScenario(ctx: Context, s: Scenario): Promise<ScenarioRun> {
  const topic = `bench.${runId}.${s.name}`;
  if (s.command === 'serve') await createTopic(ctx.brokers, topic);
  const embedded = s.database === 'embedded';
  const profileDir = profile ? join(ctx.workDir, `profile-${s.name}`) : undefined;
  const settings: SluiceSettings = {
    command: s.command,
    databaseUrl: embedded ? undefined : ctx.db.url,
    dataDir: join(ctx.workDir, `data-${s.name}`),
    brokers: ctx.brokers,
    tenantsFile: ctx.tenant.file,
    topic,
    mode: s.kind === 'http' ? s.mode : 'fast_ack',
    guarantee: s.kind === 'end-to-end' ? s.guarantee : 'exactly_once',
    workDir: ctx.workDir,
    label: s.name,
    ...(s.workers === undefined ? {} : { workers: s.workers }),
  };
  const notes: string[] = [];
  if (embedded) {
    // The first start creates the database (PGlite's initdb), a one-off peak of its own; the measured
    // start reopens it, as every later start of a node does.
    const first = await startSluice({ ...settings, label: `${s.name}-first-start` });
    // Per process: the database runs in a process of its own (src/outbox/embedded-server.ts).
    const firstPeaks = processTree(first.pid).map((p) => statusMiB(p.pid, 'VmHWM').toFixed(0));
    notes.push(`first start (creating the embedded database) peaked at ${firstPeaks.join(' + ')} MiB`);
    await first.stop();
  }
  const sluice = await startSluice({ ...settings, ...(profileDir === undefined ? {} : { profileDir }) });
  let measured: Measured;
  let peakRssPerProcess: number[];
  try {
    const selectors: Selectors = { app: treeOf(sluice.pid), postgres: embedded ? undefined : ctx.postgres, kafka: s.command === 'serve' ? ctx.kafka : undefined };
    const common = { url: sluice.url, brokers: ctx.brokers, topic, tenant: ctx.tenant, runId: `${runId}-${s.name}` };
    if (s.kind === 'http') {
      measured = await measureWrk(sluice.url, ctx, s.name, { lines: s.lines, connections: s.connections }, selectors);
    } else if (s.kind === 'end-to-end') {
      const events = durations.endToEndEvents;
      const line = (key: string): string => TEMPLATE.replace('%s', key);
      // The load is the bench itself: its request senders and its Kafka reader.
      const load: Selector = () => [process.pid];
      measured = await metered({ ...selectors, load }, () => runEndToEnd({ ...common, line, events, batch: BATCH_LINES, concurrency: 4, timeoutMs: durations.endToEndTimeoutMs }));
    } else {
      // The load is the fixed-rate load process and the bench's own Kafka reader.
      const load: Selector = (stats) => [process.pid, ...ownChildren('fixed-rate-load.ts')(stats)];
      measured = await metered({ ...selectors, load }, () => runPublishLatency({ ...common, payload: PAYLOAD, rate: s.rate, seconds: durations.latencyS }));
    }
    peakRssPerProcess = processTree(sluice.pid).map((p) => statusMiB(p.pid, 'VmHWM'));
  } finally {
    await sluice.stop();
    await settle(ctx);
  }
  if (profileDir !== undefined) notes.push('run under bun --cpu-prof: slower than without');
  if (measured.note !== undefined) notes.unshift(measured.note);
  const note = notes.join('; ');
  return {
    measured: { ...measured, ...(note === '' ? {} : { note }) },
    peakRssPerProcess,
    profile: profileDir === undefined ? undefined : readProfiles(profileDir),
  };
}

/** The problems alone, without a stack trace: they are instructions for the person running the bench. */
async function requirementsMet(growth: boolean): Promise<boolean> {
  try {
    await ensureRequirements({ growth, say: progress });
    return true;
  } catch (err) {
    console.error((err as Error).message);
    return false;
  }
}

/** `--growth`: the growth curves alone (bench/growth/growth.ts), a table and results/growth-<date>.json and .svg. */
async function growth(): Promise<number> {
  if (!(await requirementsMet(true))) return 1;
  const workDir = mkdtempSync(join(tmpdir(), 'sluice-growth-'));
  progress(`${quick ? 'quick' : 'full'} growth run ${runId}; work files in ${workDir}`);
  const points = await runGrowth(quick ? GROWTH_QUICK : GROWTH_FULL, workDir, progress);
  rmSync(workDir, { recursive: true, force: true });
  console.log(`\n${formatGrowth(points)}\n`);
  const date = new Date().toISOString().slice(0, 10);
  const file = join(import.meta.dir, 'results', `growth-${date}${quick ? '-quick' : ''}.json`);
  await Bun.write(file, `${JSON.stringify({ date, quick, cores: availableParallelism(), bun: Bun.version, points }, null, 2)}\n`);
  progress(`wrote ${file} and ${await chartFile(file)}`);
  return 0;
}

const USAGE = `usage: bun run bench [--quick] [--only name,name] [--profile] [--growth]

  --quick     shorter loads (~5 min); results go to bench/results/<date>-quick.* (not committed)
  --only      these scenarios (names as in the tables), with every ceiling (the publishing ones with a serve scenario)
  --profile   sluice under bun --cpu-prof, its CPU split by stage (slower: throughput is not comparable)
  --growth    the growth curves instead: tenants, outbox rows, unforwarded journal

Needs Linux, Postgres (SLUICE_BENCH_DATABASE_URL), wrk, Java and Maven; see README.md, "Benchmarks".`;
const KNOWN = new Set(['--quick', '--only', '--profile', '--growth']);

async function main(): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const unknown = args.filter((a, i) => a.startsWith('-') && !KNOWN.has(a) && args[i - 1] !== '--only');
  if (unknown.length > 0) {
    console.error(`bench: unknown option ${unknown.join(', ')}\n\n${USAGE}`);
    return 2;
  }
  if (args.includes('--growth')) return growth();
  const loadAtStart = loadavg()[0] ?? Number.NaN;
  progress('checking what the bench needs (wrk, Java, Maven, the Kafka jars, Postgres)');
  if (!(await requirementsMet(false))) return 1;
  const workDir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  progress(`${quick ? 'quick' : 'full'} run ${runId}; work files in ${workDir}; load average ${loadAtStart.toFixed(1)} on ${availableParallelism()} cores`);
  progress('fresh database sluice_bench on the local Postgres');
  const db = await freshDatabase();
  progress('starting a local Kafka broker');
  const broker = await startLocalBroker({ tools: kafkaTools(process.env) });
  const ctx: Context = {
    db,
    brokers: [broker.bootstrap],
    tenant: writeBenchTenant(workDir),
    workDir,
    postgres: await postgresSelector(db.sql, db.name),
    kafka: brokerSelector(broker.dataDir),
  };
  if (ctx.postgres === undefined) progress('Postgres runs where /proc does not show it: its CPU per event is not measured');
  if (ctx.kafka === undefined) progress('the broker JVM was not found in /proc: its CPU per event is not measured');
  const scenarios: ScenarioResult[] = [];
  let baselines: BaselineResult[];
  let brokerWarmup: BenchReport['broker_warmup'];
  let finished = false;
  try {
    baselines = await measureBaselines(ctx);
    for (const b of baselines) progress(`  ${b.name}: ${b.throughput.toFixed(0)} ${b.unit}, p99 ${b.p99_ms.toFixed(2)} ms${cpuLine(b)}`);
    const selected = SCENARIOS.filter((x) => only === undefined || only.includes(x.name));
    const brokerPid = ctx.kafka?.(allStats())[0];
    if (selected.some((x) => x.command === 'serve') && brokerPid !== undefined) {
      progress('warming the broker\'s transaction code (its Kafka ceiling ran none)');
      const w = await warmBrokerTransactions({
        brokers: ctx.brokers,
        topic: `bench.${runId}.warmup`,
        brokerPid,
        minS: durations.brokerWarmupMinS,
        maxS: durations.brokerWarmupMaxS,
        settledCores: 0.1,
        say: progress,
      });
      brokerWarmup = { seconds: w.seconds, transactions: w.transactions, compiler_cores: w.compilerCores };
      await settle(ctx);
      const publishing = await measurePublishingMinimums(ctx);
      for (const b of publishing) progress(`  ${b.name}: ${b.throughput.toFixed(0)} ${b.unit}, p50 ${b.p50_ms.toFixed(2)} / p99 ${b.p99_ms.toFixed(2)} ms${cpuLine(b)}`);
      baselines.push(...publishing);
    }
    for (const s of selected) {
      progress(`scenario ${s.name} (sluice ${s.command}${s.database === 'embedded' ? ', embedded database' : ''} restarted)`);
      const run = await measureScenario(ctx, s);
      const { measured } = run;
      const ceiling = baselines.find((b) => b.name === s.baseline)?.throughput ?? Number.NaN;
      const ratio = measured.throughput / ceiling;
      const peakRssMiB = Math.max(...run.peakRssPerProcess);
      const plan = budgetPlan(s);
      const result: ScenarioResult = {
        name: s.name,
        command: s.command,
        database: s.database ?? 'postgres',
        workers: s.workers ?? null,
        ...measured,
        peak_rss_mib: peakRssMiB,
        peak_rss_per_process_mib: run.peakRssPerProcess,
        baseline: s.baseline,
        ratio,
        target: s.target?.text ?? null,
        target_met: s.target === undefined ? null : s.target.met(measured, ratio),
        rss_target_met: peakRssMiB <= RSS_LIMIT_MIB,
        ...(run.profile === undefined ? {} : { profile: run.profile }),
      };
      if (plan !== undefined) result.budget = budgetOf(plan, result, baselines, availableParallelism());
      const reach = minimumLatencyNote(s, measured, baselines);
      if (reach !== undefined) result.note = result.note === undefined ? reach : `${result.note}; ${reach}`;
      scenarios.push(result);
      progress(
        `  ${s.name}: ${measured.throughput.toFixed(0)} ${measured.unit} (${ratio.toFixed(2)} x ${s.baseline}), ` +
          `p50 ${measured.p50_ms.toFixed(2)} / p99 ${measured.p99_ms.toFixed(2)} ms, peak RSS ${peakRssMiB.toFixed(0)} MiB${cpuLine(measured)}` +
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
      load_average: { start: loadAtStart, end: loadavg()[0] ?? Number.NaN },
      busy_note: 'figures are ratios to ceilings measured in the same run on the same machine',
    },
    baselines,
    ...(brokerWarmup === undefined ? {} : { broker_warmup: brokerWarmup }),
    scenarios,
    scaling: scalingOf(scenarios, WORKERS_SETTING, availableParallelism(), Math.max(...SCALING_WORKERS)),
  };
  console.log(`\n${formatTables(report)}\n`);
  const base = join(import.meta.dir, 'results', quick ? `${date}-quick` : date);
  await Bun.write(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  progress(`wrote ${base}.json and ${await chartFile(`${base}.json`)}`);
  const missed = scenarios.filter((s) => s.target_met === false || !s.rss_target_met).map((s) => s.name);
  if (missed.length > 0) progress(`targets missed: ${missed.join(', ')}`);
  return 0;
}

function cpuLine(m: Measured): string {
  const c = m.cpu;
  if (c === undefined) return '';
  const us = (v: number | null): string => (v === null ? '-' : v.toFixed(1));
  const machine = c.machine === undefined ? '' : `; machine ${c.machine.busy_cores.toFixed(2)} cores busy (${c.machine.other_cores.toFixed(2)} other)`;
  return `; CPU µs/event: app ${us(c.us_per_event.app)}, postgres ${us(c.us_per_event.postgres)}, kafka ${us(c.us_per_event.kafka)}, load ${us(c.us_per_event.load ?? null)}${machine}`;
}

// Ctrl-C: exit through process.exit so the children (broker, sluice, servers) are killed by their exit hooks.
process.once('SIGINT', () => process.exit(130));
process.exit(await main());
