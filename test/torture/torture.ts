import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { startLocalBroker, type LocalBroker } from '../../src/kafka/local-broker.ts';
import { brokerOptions, readTopic } from '../support/kafka.ts';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.ts';
import { restartablePort } from '../support/ports.ts';
import { mountSmallDisk, type SmallDisk } from '../support/small-disk.ts';
import { checkHistory, type CheckResult, type Mode, type Op } from './history.ts';
import { runStream } from './load.ts';
import { SluiceProcess, type ProcessIncident } from './processes.ts';
import { seededRandom } from './prng.ts';

export interface TortureOptions {
  durationMs: number;
  seed: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** How long sluice may take to be ready again after a fault ends. */
  recoveryBoundMs?: number;
  tenantsPerMode?: number;
}

export interface Recovery {
  fault: string;
  ms: number;
}

export interface TortureReport {
  seed: number;
  durationMs: number;
  /** Faults by what was done (`kill serve`, `pg-stop`, …). */
  faults: Record<string, number>;
  /** Faults by kind: every kind comes once before any comes twice. */
  kinds: Record<string, number>;
  check: CheckResult;
  recoveries: Recovery[];
  longestRecovery: Recovery | undefined;
  incidents: ProcessIncident[];
  journalVerify: { ok: boolean; output: string };
  /** Every broken promise, in words; empty when the run passed. */
  violations: string[];
}

const PARTITIONS = 8;
const SHUTDOWN_TIMEOUT_MS = 10_000;
export const FAULTS = ['kill-serve', 'kill-ingest', 'kill-process', 'term', 'pg-terminate', 'pg-stop', 'pg-freeze', 'broker-kill', 'broker-freeze', 'disk-full'] as const;
type Fault = (typeof FAULTS)[number];

/**
 * A randomized fault run over real processes: `serve` (sync), two `ingest` (fast_ack and
 * background) and a `process`, on a Postgres cluster, a Kafka broker and a journal disk of the
 * run's own, with tiny segments and fast maintenance. One fault at a time, chosen by the seeded
 * schedule; after each, the time until every instance is ready again. After the load stops and the
 * pipeline drains, the history is checked against what a read_committed reader finds in Kafka.
 */
export async function runTorture(opts: TortureOptions): Promise<TortureReport> {
  const log = opts.log ?? (() => {});
  const rng = seededRandom(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
  const recoveryBoundMs = opts.recoveryBoundMs ?? 60_000;
  const violations: string[] = [];
  const incidents: ProcessIncident[] = [];
  const cleanup: (() => Promise<void> | void)[] = [];
  const runCleanup = async (): Promise<void> => {
    for (const c of cleanup.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log('torture: cleanup failed', { error: String(err) });
      }
    }
  };
  // Interrupted (Ctrl-C, a CI timeout): the cluster, broker, children and mount still go.
  const interrupted = (): void => {
    void runCleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    const cluster: PgCluster = await startPgCluster();
    cleanup.push(() => cluster.destroy());
    const disk: SmallDisk = mountSmallDisk(64 << 20);
    cleanup.push(() => disk.unmount());
    const journalDir = join(disk.dir, 'journal');
    mkdirSync(journalDir);
    const brokerDir = mkdtempSync(join(tmpdir(), 'sluice-torture-kafka-'));
    cleanup.push(() => rmSync(brokerDir, { recursive: true, force: true }));
    const brokerPort = await restartablePort();
    let broker: LocalBroker = await startLocalBroker(brokerOptions({ port: brokerPort, dataDir: brokerDir }));
    cleanup.push(() => broker.stop());
    const topic = `torture.${opts.seed}`;
    log('torture: dependencies up', { postgres: cluster.url, kafka: broker.bootstrap, journal: journalDir });

    const env: Record<string, string> = {
      DATABASE_URL: cluster.url,
      KAFKA_BROKERS: broker.bootstrap,
      SLUICE_JOURNAL_DIR: journalDir,
      SLUICE_JOURNAL_SEGMENT_BYTES: '8192',
      SLUICE_JOURNAL_SEGMENT_MAX_AGE_MS: '500',
      SLUICE_JOURNAL_MAINTENANCE_MS: '100',
      // Retention by bytes: forwarded segments are deleted all run long, and the last ones stay for verify.
      SLUICE_JOURNAL_RETENTION_BYTES: String(256 << 10),
      SLUICE_MAX_BODY_BYTES: '65536',
      SLUICE_PARTITIONS: String(PARTITIONS),
      SLUICE_REBALANCE_MS: '300',
      SLUICE_KAFKA_TOPIC: topic,
      SLUICE_TRANSACTIONAL_ID_PREFIX: `torture-${opts.seed}`,
      SLUICE_MAX_ATTEMPTS: '1000',
      SLUICE_RETRY_MAX_MS: '2000',
      SLUICE_SYNC_OUTBOX_WAIT_MS: '1000',
      SLUICE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      // info: the children announce their URL at info, which is how a start is recognised.
      SLUICE_LOG_LEVEL: 'info',
    };
    const ports: number[] = [];
    while (ports.length < 4) {
      const port = await restartablePort();
      if (port !== brokerPort && !ports.includes(port)) ports.push(port);
    }
    const serve = new SluiceProcess('serve', 'serve', ports[0] ?? 0, { ...env, SLUICE_NODE_ID: 'serve', SLUICE_WRITE_MODE: 'sync' }, incidents);
    const fast = new SluiceProcess('ingest-fast_ack', 'ingest', ports[1] ?? 0, { ...env, SLUICE_NODE_ID: 'fast', SLUICE_WRITE_MODE: 'fast_ack' }, incidents);
    const bg = new SluiceProcess('ingest-background', 'ingest', ports[2] ?? 0, { ...env, SLUICE_NODE_ID: 'bg', SLUICE_WRITE_MODE: 'background' }, incidents);
    const proc = new SluiceProcess('process', 'process', ports[3] ?? 0, env, incidents);
    const all = [serve, fast, bg, proc];
    const front: Record<Mode, SluiceProcess> = { sync: serve, fast_ack: fast, background: bg };
    cleanup.push(async () => {
      for (const p of all) await p.kill();
    });
    await serve.start();
    await Promise.all([fast.start(), bg.start(), proc.start()]);

    const ready = async (): Promise<string | undefined> => {
      for (const p of [serve, fast, bg]) {
        const res = await fetch(`${p.url}/readyz`, { signal: AbortSignal.timeout(3_000) }).catch(() => undefined);
        if (res?.status !== 200) return `${p.name} /readyz ${res?.status ?? 'unreachable'}: ${(await res?.text().catch(() => '')) ?? ''}`;
      }
      const owned = (await Promise.all([serve, proc].map((p) => partitionsOwned(p.url)))).reduce((a, b) => a + b, 0);
      if (owned !== PARTITIONS) return `partitions owned ${owned} of ${PARTITIONS}`;
      return undefined;
    };
    const waitReady = async (boundMs: number): Promise<{ ms: number; why: string | undefined }> => {
      const started = performance.now();
      let why: string | undefined = 'not checked';
      while (performance.now() - started < boundMs) {
        why = await ready();
        if (why === undefined) break;
        await Bun.sleep(200);
      }
      return { ms: Math.round(performance.now() - started), why };
    };
    const first = await waitReady(recoveryBoundMs);
    if (first.why !== undefined) throw new Error(`sluice never became ready: ${first.why}`);

    // Load: one stream per tenant, tenants per write mode.
    const ops: Op[] = [];
    let stopped = false;
    const perMode = opts.tenantsPerMode ?? 4;
    const streams = (['sync', 'fast_ack', 'background'] as const).flatMap((mode) =>
      Array.from({ length: perMode }, (_, i) =>
        runStream({ url: () => front[mode].url, tenant: `${mode}-${i}`, mode, ops, stopped: () => stopped, pauseMs: 20, requestTimeoutMs: 10_000 }),
      ),
    );

    const faults: Record<string, number> = {};
    const kinds: Record<string, number> = {};
    let deck: Fault[] = [];
    const recoveries: Recovery[] = [];
    const hold = (): number => 1_000 + Math.floor(rng() * 3_000);
    const started = performance.now();
    // At least one fault of every kind, however short the run.
    for (let done = 0; performance.now() - started < opts.durationMs || done < FAULTS.length; done++) {
      await Bun.sleep(1_000 + Math.floor(rng() * 3_000));
      // A shuffled deck: every kind of fault once per round, in the seed's order.
      if (deck.length === 0) deck = [...FAULTS].map((f) => ({ f, r: rng() })).sort((a, b) => a.r - b.r).map((x) => x.f);
      const fault = deck.shift() as Fault;
      kinds[fault] = (kinds[fault] ?? 0) + 1;
      let name: string = fault;
      const heldMs = hold();
      log('torture: fault', { fault, hold_ms: heldMs, acknowledged: ops.filter((o) => o.outcome === 'ok').length });
      switch (fault) {
        case 'kill-serve':
        case 'kill-process':
        case 'kill-ingest': {
          const victim = fault === 'kill-serve' ? serve : fault === 'kill-process' ? proc : pick([fast, bg]);
          name = `kill ${victim.name}`;
          await victim.kill();
          await Bun.sleep(heldMs / 2);
          await victim.start();
          break;
        }
        case 'term': {
          const victim = pick(all);
          name = `SIGTERM ${victim.name}`;
          await victim.terminate(SHUTDOWN_TIMEOUT_MS + 5_000);
          await victim.start();
          break;
        }
        case 'pg-terminate':
          await cluster.terminate('sluice');
          break;
        case 'pg-stop': {
          await cluster.stop('immediate');
          // A sync node needs the outbox to be ready; a fast_ack one stays ready (it still makes writes
          // durable) and only shows the outbox down.
          const seen = await watch(
            heldMs,
            async () => (await ownedTotal([serve, proc])) === 0 && (await notReady(serve.url, 'outbox')) && (await shownDown(fast.url, 'outbox')),
          );
          if (!seen) violations.push(`Postgres down ${heldMs} ms: /readyz or sluice_partitions_owned never said so`);
          // Sometimes an instance is also asked to stop while Postgres is away: it must still exit 0 in time.
          const stopping = rng() < 0.3 ? pick(all) : undefined;
          if (stopping !== undefined) {
            name = `pg-stop + SIGTERM ${stopping.name}`;
            await stopping.terminate(SHUTDOWN_TIMEOUT_MS + 5_000);
          }
          await cluster.start();
          await stopping?.start();
          break;
        }
        case 'pg-freeze':
          cluster.freeze();
          await Bun.sleep(heldMs);
          cluster.thaw();
          break;
        case 'broker-kill':
          await broker.kill();
          await Bun.sleep(heldMs / 2);
          broker = await restartBroker(brokerPort, brokerDir, log);
          break;
        case 'broker-freeze': {
          // A broker that hangs (a long GC pause, a stalled VM) with every connection open: requests in
          // flight wait for the client's timeout. 2 to 8 s, about the 10 s of unreachable Kafka after
          // which an instance gives its partitions up: often the tasks keep them and must recover on
          // their own, the path a broker restart under 10 s (or one broker of several) takes.
          const frozen = broker.pid;
          process.kill(frozen, 'SIGSTOP');
          try {
            await Bun.sleep(heldMs * 2);
          } finally {
            process.kill(frozen, 'SIGCONT');
          }
          break;
        }
        case 'disk-full': {
          disk.fill(0);
          // Full for the whole hold: retention deletes forwarded segments every 100 ms here, and the
          // room it frees is taken back, or the node would rightly be ready again (seed 708428116
          // freed enough before /readyz was asked).
          const seen = await watch(heldMs, () => {
            disk.topUp(0);
            return notReady(fast.url, 'journal');
          });
          if (!seen) violations.push(`journal disk full ${heldMs} ms: /readyz never said so`);
          disk.free();
          break;
        }
      }
      faults[name] = (faults[name] ?? 0) + 1;
      const recovered = await waitReady(recoveryBoundMs);
      recoveries.push({ fault: name, ms: recovered.ms });
      if (recovered.why !== undefined) violations.push(`not ready ${recoveryBoundMs} ms after "${name}": ${recovered.why}`);
      log('torture: recovered', { fault: name, ms: recovered.ms, why: recovered.why });
    }

    stopped = true;
    await Promise.all(streams);
    log('torture: load stopped; draining', { ops: ops.length });
    const drained = await drain(cluster.url, [serve, fast, bg], 120_000);
    if (!drained) violations.push('the pipeline did not drain within 120 s after the load stopped');

    const acked = ops.filter((o) => o.outcome === 'ok').length;
    const records = await readTopic([broker.bootstrap], topic, { expected: acked, timeoutMs: 30_000, graceMs: 2_000 });
    const check = checkHistory(ops, records);

    for (const p of all) await p.terminate(SHUTDOWN_TIMEOUT_MS + 5_000);
    const journalVerify = await verifyJournal(journalDir);

    if (check.lost.length > 0) violations.push(`${check.lost.length} acknowledged sync/fast_ack writes not in Kafka: ${check.lost.slice(0, 10).join(', ')}`);
    if (check.duplicated.length > 0) violations.push(`${check.duplicated.length} keys in Kafka more than once: ${check.duplicated.slice(0, 10).join(', ')}`);
    if (check.outOfOrder.length > 0) violations.push(`${check.outOfOrder.length} records out of acknowledgement order: ${check.outOfOrder.slice(0, 10).join(', ')}`);
    if (check.phantom.length > 0) violations.push(`${check.phantom.length} records in Kafka that no client sent: ${check.phantom.slice(0, 10).join(', ')}`);
    if (!journalVerify.ok) violations.push(`journal verify: ${journalVerify.output.slice(0, 2_000)}`);
    for (const i of incidents) violations.push(`${i.name} ${i.what}; last log lines:\n${i.tail.join('\n')}`);

    const longestRecovery = recoveries.reduce<Recovery | undefined>((a, r) => (a === undefined || r.ms > a.ms ? r : a), undefined);
    return { seed: opts.seed, durationMs: opts.durationMs, faults, kinds, check, recoveries, longestRecovery, incidents, journalVerify, violations };
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await runCleanup();
  }
}

/**
 * A broker SIGKILLed under load sometimes fails its next start on this machine (KRaft's raft manager
 * not created, a JVM that never gets ready): that is the test broker's trouble, not sluice's, so the
 * start is tried again. sluice's side of the outage only gets longer.
 */
async function restartBroker(port: number, dataDir: string, log: (msg: string, fields?: Record<string, unknown>) => void): Promise<LocalBroker> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startLocalBroker(brokerOptions({ port, dataDir }));
    } catch (err) {
      if (attempt >= 3) throw err;
      log('torture: broker did not start again; retrying', { attempt, error: String(err).slice(0, 500) });
    }
  }
}

async function partitionsOwned(url: string): Promise<number> {
  const text = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3_000) })
    .then((r) => r.text())
    .catch(() => '');
  const m = /^sluice_partitions_owned (\d+)/m.exec(text);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}

async function ownedTotal(ps: SluiceProcess[]): Promise<number> {
  return (await Promise.all(ps.map((p) => partitionsOwned(p.url)))).reduce((a, b) => a + b, 0);
}

/** /readyz answers 503 and names the component as not ok. */
async function notReady(url: string, component: string): Promise<boolean> {
  return componentDown(url, component, true);
}

/** The component is reported down, whether or not the node's role needs it (/readyz may be 200). */
async function shownDown(url: string, component: string): Promise<boolean> {
  return componentDown(url, component, false);
}

async function componentDown(url: string, component: string, required: boolean): Promise<boolean> {
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(3_000) }).catch(() => undefined);
  if (res === undefined || (required && res.status !== 503)) return false;
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return JSON.stringify(body).includes(`"${component}":{"ok":false`);
}

/** Holds for `ms`, polling `check`; true if it held at least once. */
async function watch(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const until = performance.now() + ms;
  let seen = false;
  while (performance.now() < until) {
    if (!seen) seen = await check().catch(() => false);
    await Bun.sleep(100);
  }
  return seen;
}

/** Every journal forwarded and every outbox row sent, twice in a row. */
async function drain(url: string, ingest: SluiceProcess[], timeoutMs: number): Promise<boolean> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const deadline = Date.now() + timeoutMs;
  let streak = 0;
  try {
    while (Date.now() < deadline) {
      const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status <> 'sent'`.catch(() => [{ n: -1 }]);
      const lags = await Promise.all(ingest.map((p) => metric(p.url, 'sluice_forwarder_lag_records')));
      streak = row?.n === 0 && lags.every((l) => l === 0) ? streak + 1 : 0;
      if (streak >= 2) return true;
      await Bun.sleep(500);
    }
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function metric(url: string, name: string): Promise<number> {
  const text = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3_000) })
    .then((r) => r.text())
    .catch(() => '');
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m?.[1] === undefined ? -1 : Number(m[1]);
}

async function verifyJournal(dir: string): Promise<{ ok: boolean; output: string }> {
  const cli = join(import.meta.dir, '..', '..', 'src', 'cli.ts');
  const p = Bun.spawn({ cmd: ['bun', cli, 'journal', 'verify', dir], stdout: 'pipe', stderr: 'pipe' });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { ok: code === 0, output: `${out}${err}` };
}
