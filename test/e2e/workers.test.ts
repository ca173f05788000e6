import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLines, runCli } from '../support/cli.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { createTopic } from '../support/outbox-load.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';
import { sha256 } from '../../src/tenant-tokens.ts';
import { nodeJournalLines } from '../support/journal-files.ts';
import { childPids } from '../support/processes.ts';

type Line = Record<string, unknown>;

/** A node started with SLUICE_WORKERS: resolves once the supervisor says every worker is listening. */
async function spawnNode(env: Record<string, string>, command: 'serve' | 'ingest'): Promise<SpawnedSluice & { lines(): Line[]; pids: Record<string, number> }> {
  const node = await spawnSluice(env, command);
  const lines = (): Line[] => node.logLines().map((l) => JSON.parse(l) as Line);
  const supervisorLine = (): Line | undefined => lines().find((l) => l.msg === 'sluice listening' && l.workers !== undefined);
  await eventually(async () => supervisorLine() !== undefined, 60_000, 'every worker listening');
  return { ...node, lines, pids: supervisorLine()?.pids as Record<string, number> };
}

/** One write on a connection of its own: the kernel spreads connections, not requests, among the workers. */
async function write(url: string, tenant: { token?: string; id?: string }, key: string): Promise<number> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    keepalive: false,
    headers: {
      'Content-Type': 'application/json',
      Connection: 'close',
      ...(tenant.token === undefined ? {} : { Authorization: `Bearer ${tenant.token}` }),
      ...(tenant.id === undefined ? {} : { 'X-Tenant-Id': tenant.id }),
    },
    body: JSON.stringify({ dedupe_key: key, payload: { key } }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** Journal lines in one node directory (plain segments: these runs never rotate). */
function journalLines(dir: string): number {
  return nodeJournalLines(dir).length;
}

/** The admin API's token for the nodes that need one (16+ characters). */
const ADMIN_TOKEN = newToken('admin');

const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('a node with SLUICE_WORKERS=2', () => {
  let db: TestDatabase;
  let brokers: string[];
  let dir: string;
  const children: SpawnedSluice[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    dir = mkdtempSync(join(tmpdir(), 'sluice-workers-'));
  }, 60_000);

  afterAll(async () => {
    for (const c of children) c.proc.kill('SIGKILL');
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const outboxCount = async (tenant: string): Promise<{ rows: number; keys: number }> => {
    const [row] = await db.sql<{ rows: number; keys: number }[]>`
      SELECT count(*)::int AS rows, count(DISTINCT dedupe_key)::int AS keys FROM outbox WHERE tenant_id = ${tenant}`;
    return row ?? { rows: 0, keys: 0 };
  };

  test('serve: writes on the one port land in both journals, once each in the outbox and in Kafka; /metrics is the whole node; SIGHUP reaches every process; SIGTERM drains all, exit 0', async () => {
    const tenants = join(dir, 'tenants.json');
    const acme = newToken('acme');
    const beta = newToken('beta');
    writeTenantsFile(tenants, { acme: { tokens: [acme] } });
    const topic = `workers.${Bun.randomUUIDv7()}`;
    const node = await spawnNode(
      {
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers.join(','),
        SLUICE_WORKERS: '2',
        SLUICE_PORT: '0',
        SLUICE_NODE_ID: 'two',
        SLUICE_TENANTS_FILE: tenants,
        SLUICE_JOURNAL_DIR: join(dir, 'journal'),
        SLUICE_KAFKA_TOPIC: topic,
        SLUICE_TRANSACTIONAL_ID_PREFIX: `workers-${Bun.randomUUIDv7()}`,
        SLUICE_POLL_MS: '20',
      },
      'serve',
    );
    children.push(node);
    expect(Object.keys(node.pids)).toEqual(['worker 1', 'worker 2', 'processor']);

    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    expect(await Promise.all(keys.map((k) => write(node.url, { token: acme }, k)))).toEqual(keys.map(() => 202));
    const perWorker = [journalLines(join(dir, 'journal', 'two-1')), journalLines(join(dir, 'journal', 'two-2'))];
    expect(perWorker.every((n) => n > 0)).toBe(true);
    expect(perWorker[0]! + perWorker[1]!).toBe(40);
    expect(await outboxCount('acme')).toEqual({ rows: 40, keys: 40 });

    const records = await readTopic(brokers, topic, { expected: 40 });
    expect(records.length).toBe(40);
    expect(new Set(records.map((r) => r.key)).size).toBe(40);

    // Whichever worker a scrape lands on, it answers the node's sums (both workers' writes, the processor's publishes).
    await eventually(async () => (await (await fetch(`${node.url}/metrics`)).text()).includes('sluice_published_total{tenant="acme"} 40'), 20_000, 'published 40 in /metrics');
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${node.url}/metrics`, { keepalive: false, headers: { Connection: 'close' } });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toContain('sluice_ingest_events_total{tenant="acme",result="accepted"} 40');
      expect(text).toContain('sluice_published_total{tenant="acme"} 40');
    }

    writeTenantsFile(tenants, { acme: { tokens: [acme] }, beta: { tokens: [beta] } });
    node.proc.kill('SIGHUP');
    await eventually(async () => node.lines().filter((l) => l.msg === 'tenants file reloaded').length === 3, 10_000, 'three reloads logged');
    expect(node.lines().filter((l) => l.msg === 'tenants file reloaded').map((l) => l.worker).sort()).toEqual([1, 2, 'processor']);
    // Regression (outside test of issue 11): a SIGHUP to the whole group (what a service manager may
    // send) reaches every process; each still reloads once, not once from its own signal and once
    // from the supervisor's. A second SIGHUP to the supervisor alone then brings the count to three each.
    for (const pid of [node.proc.pid, ...Object.values(node.pids)]) process.kill(pid, 'SIGHUP');
    await eventually(async () => node.lines().filter((l) => l.msg === 'tenants file reloaded').length >= 6, 10_000, 'six reloads logged');
    node.proc.kill('SIGHUP');
    await eventually(async () => node.lines().filter((l) => l.msg === 'tenants file reloaded').length >= 9, 10_000, 'nine reloads logged');
    const reloads = node.lines().filter((l) => l.msg === 'tenants file reloaded').map((l) => String(l.worker));
    expect([reloads.length, reloads.filter((w) => w === '1').length, reloads.filter((w) => w === '2').length, reloads.filter((w) => w === 'processor').length]).toEqual([9, 3, 3, 3]);
    const betaKeys = Array.from({ length: 20 }, (_, i) => `b${i}`);
    expect(await Promise.all(betaKeys.map((k) => write(node.url, { token: beta }, k)))).toEqual(betaKeys.map(() => 202));

    node.proc.kill('SIGTERM');
    expect(await node.proc.exited).toBe(0);
    const complete = node.lines().filter((l) => l.msg === 'shutdown complete');
    expect(complete.map((l) => l.worker ?? 'supervisor').sort((a, b) => String(a).localeCompare(String(b)))).toEqual([1, 2, 'processor', 'supervisor']);
    expect(node.lines().filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
    expect(Object.values(node.pids).filter(isAlive)).toEqual([]);
    expect(await outboxCount('beta')).toEqual({ rows: 20, keys: 20 });
  }, 120_000);

  test('serve: a scrape one process does not answer (the processor, stopped) is a 503 saying how many of the node\'s processes did not answer', async () => {
    const node = await spawnNode(
      {
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers.join(','),
        SLUICE_WORKERS: '2',
        SLUICE_PORT: '0',
        SLUICE_NODE_ID: 'silent',
        SLUICE_JOURNAL_DIR: join(dir, 'journal-silent'),
        SLUICE_TRANSACTIONAL_ID_PREFIX: `workers-${Bun.randomUUIDv7()}`,
      },
      'serve',
    );
    children.push(node);
    expect((await fetch(`${node.url}/metrics`)).status).toBe(200);
    const processor = node.pids.processor!;
    process.kill(processor, 'SIGSTOP');
    try {
      // The processor has no port: the scrape lands on a worker, the supervisor asks all three.
      const res = await fetch(`${node.url}/metrics`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('not_ready');
      expect(body.error.message).toContain('1 of 3 processes did not answer');
    } finally {
      process.kill(processor, 'SIGCONT');
    }
    node.proc.kill('SIGTERM');
    await node.proc.exited;
  }, 60_000);

  test('sync: one client writing in turn on fresh connections (so on both workers) gets outbox ids, and so Kafka order, in acknowledgement order', async () => {
    const node = await spawnNode(
      { DATABASE_URL: db.url, SLUICE_WORKERS: '2', SLUICE_PORT: '0', SLUICE_NODE_ID: 'order', SLUICE_WRITE_MODE: 'sync', SLUICE_JOURNAL_DIR: join(dir, 'journal') },
      'ingest',
    );
    children.push(node);
    const answers: { id: string; durability: string }[] = [];
    for (let i = 0; i < 60; i++) {
      const res = await fetch(`${node.url}/v1/events`, {
        method: 'POST',
        keepalive: false,
        headers: { 'Content-Type': 'application/json', Connection: 'close', 'X-Tenant-Id': 'order' },
        body: JSON.stringify({ dedupe_key: `s${i}`, payload: { i } }),
      });
      expect(res.status).toBe(202);
      answers.push((await res.json()) as { id: string; durability: string });
    }
    // Both workers took part, or the test proves nothing about order across them.
    expect([journalLines(join(dir, 'journal', 'order-1')) > 0, journalLines(join(dir, 'journal', 'order-2')) > 0]).toEqual([true, true]);
    // The README's promise is for writes answered from the outbox (a write answered from the journal,
    // Postgres being slow, is inserted later by its worker's forwarder).
    const ids = answers.filter((a) => a.durability === 'outbox').map((a) => Number(a.id));
    expect(ids.length).toBeGreaterThan(30);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    node.proc.kill('SIGTERM');
    expect(await node.proc.exited).toBe(0);
  }, 120_000);

  test('serve with one worker and its processor apart (SLUICE_PROCESSOR=process): the journal is the node\'s own; each insert, and an operator\'s replay, reaches the processor through the supervisor, so writes are published long before its 60 s poll; SIGTERM drains all, exit 0', async () => {
    const topic = `apart.${Bun.randomUUIDv7()}`;
    const node = await spawnNode(
      {
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers.join(','),
        SLUICE_PROCESSOR: 'process',
        SLUICE_PORT: '0',
        SLUICE_NODE_ID: 'apart',
        SLUICE_JOURNAL_DIR: join(dir, 'journal'),
        SLUICE_KAFKA_TOPIC: topic,
        SLUICE_TRANSACTIONAL_ID_PREFIX: `apart-${Bun.randomUUIDv7()}`,
        // Nothing but the relay can wake the processor within the test: its poll and its tasks' own come every 60 s.
        SLUICE_POLL_MS: '60000',
        SLUICE_ADMIN_TOKEN: ADMIN_TOKEN,
      },
      'serve',
    );
    children.push(node);
    expect(Object.keys(node.pids)).toEqual(['worker 1', 'processor']);
    // Owning partitions takes a rebalance or two; a write before that is found by the tasks' first pass, not the relay.
    await eventually(async () => /^sluice_partitions_owned \d*[1-9]/m.test(await (await fetch(`${node.url}/metrics`)).text()), 30_000, 'partitions owned');
    await Bun.sleep(500);

    const started = performance.now();
    for (const round of [1, 2]) {
      const keys = Array.from({ length: 5 }, (_, i) => `r${round}-k${i}`);
      expect(await Promise.all(keys.map((k) => write(node.url, { id: 'apart' }, k)))).toEqual(keys.map(() => 202));
      const records = await readTopic(brokers, topic, { expected: 5 * round });
      expect(records.map((r) => r.key).sort()).toEqual(Array.from({ length: 5 * round }, (_, i) => `apart:r${Math.floor(i / 5) + 1}-k${i % 5}`).sort());
    }
    // Re-queued rows keep their ids: the processor's regular poll would not see them even if it ran.
    await eventually(async () => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'apart' AND status = 'sent'`)[0]?.n === 10, 20_000, 'all 10 marked sent');
    const replay = await fetch(`${node.url}/admin/outbox/replay/tenant`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ tenant_id: 'apart' }),
    });
    expect([replay.status, await replay.json()]).toEqual([200, { matched: 10, requeued: 10 }]);
    const again = await readTopic(brokers, topic, { expected: 20 });
    expect(again.filter((r) => r.headers.replay === 'true').map((r) => r.key).sort()).toEqual(again.filter((r) => r.headers.replay !== 'true').map((r) => r.key).sort());
    expect(performance.now() - started).toBeLessThan(30_000);
    // One worker keeps the node id, as one process would.
    expect(journalLines(join(dir, 'journal', 'apart'))).toBe(10);
    expect(node.lines().find((l) => l.msg === 'sluice listening' && l.workers !== undefined)?.workers).toBe(1);

    node.proc.kill('SIGTERM');
    expect(await node.proc.exited).toBe(0);
    expect(node.lines().filter((l) => l.msg === 'shutdown complete').map((l) => l.worker ?? 'supervisor').sort()).toEqual([1, 'processor', 'supervisor']);
  }, 120_000);

  test("serve with its processor apart: the admin API shows and resets the processor's breakers and quotas, answers 503 when it does not answer, and changes nothing late", async () => {
    // Outside testers: a worker answered from breakers and buckets of its own, which nothing uses; then,
    // with the processor stopped, calls got no answer at all (the HTTP idle timeout came first), a reset
    // answered 503 took effect once the processor ran again, and a reset did not wake the held rows.
    const tiny = `tiny.${Bun.randomUUIDv7()}`;
    // Every record of "bad" over 600 bytes is too large for its topic: dead at once, a failure for its breaker.
    await createTopic(brokers, tiny, 600);
    const good = newToken('good');
    const bad = newToken('bad');
    const entry = (token: string, extra: Record<string, unknown>) => ({ tokens: [`sha256:${sha256(token).toString('hex')}`], ...extra });
    const tenantsFile = join(dir, 'tenants-controls.json');
    writeFileSync(
      tenantsFile,
      JSON.stringify({
        tenants: {
          // One token an hour: what the processor took stays taken for the test.
          good: entry(good, { quota: { rate: 0.0003, burst: 100 } }),
          bad: entry(bad, { topic: tiny, breaker: { failure_threshold: 1, reset_ms: 600_000 } }),
        },
      }),
    );
    const node = await spawnNode(
      {
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers.join(','),
        SLUICE_PROCESSOR: 'process',
        SLUICE_PORT: '0',
        SLUICE_NODE_ID: 'controls',
        SLUICE_JOURNAL_DIR: join(dir, 'journal'),
        SLUICE_TENANTS_FILE: tenantsFile,
        SLUICE_KAFKA_TOPIC: `controls.${Bun.randomUUIDv7()}`,
        SLUICE_TRANSACTIONAL_ID_PREFIX: `controls-${Bun.randomUUIDv7()}`,
        SLUICE_ADMIN_TOKEN: ADMIN_TOKEN,
        // Only inserts and the reset can wake the processor within the test: its poll comes every 60 s.
        SLUICE_POLL_MS: '60000',
      },
      'serve',
    );
    children.push(node);
    const processor = node.pids.processor!;
    const adminCall = async (method: string, path: string): Promise<[number, Record<string, unknown>]> => {
      const res = await fetch(`${node.url}/admin${path}`, { method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      return [res.status, (await res.json()) as Record<string, unknown>];
    };
    const tenantsView = async (): Promise<Map<string, Record<string, unknown>>> => {
      const [, body] = await adminCall('GET', '/tenants');
      return new Map((body.tenants as Record<string, unknown>[]).map((t) => [String(t.tenant_id), t]));
    };
    const statuses = async (tenant: string): Promise<string[]> =>
      (await db.sql<{ status: string }[]>`SELECT status FROM outbox WHERE tenant_id = ${tenant} ORDER BY id`).map((r) => r.status);
    const post = async (token: string, key: string, pad: number): Promise<number> =>
      (
        await fetch(`${node.url}/v1/events`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ dedupe_key: key, payload: { pad: 'x'.repeat(pad) } }),
        })
      ).status;

    expect(await post(good, 'g1', 1)).toBe(202);
    await eventually(async () => (await statuses('good')).join() === 'sent', 30_000, "good's write sent");
    expect((await tenantsView()).get('good')).toMatchObject({ breaker: 'closed', quota_tokens: 99, sent: 1 });

    expect(await post(bad, 'b1', 1_000)).toBe(202);
    await eventually(async () => (await statuses('bad')).join() === 'dead', 30_000, "bad's record dead");
    expect((await tenantsView()).get('bad')).toMatchObject({ breaker: 'open', dead: 1 });
    // A small record behind the open breaker waits (for its 600 s reset_ms).
    expect(await post(bad, 'b2', 1)).toBe(202);
    await Bun.sleep(1_000);
    expect(await statuses('bad')).toEqual(['dead', 'pending']);

    // The processor does not answer: 503 before the HTTP idle timeout, and the reset is not done later.
    process.kill(processor, 'SIGSTOP');
    const asked = performance.now();
    const [stoppedStatus, stoppedBody] = await adminCall('POST', '/tenants/bad/breaker/reset');
    expect([stoppedStatus, (stoppedBody.error as { code?: string } | undefined)?.code]).toEqual([503, 'not_ready']);
    expect(performance.now() - asked).toBeLessThan(8_000);
    process.kill(processor, 'SIGCONT');
    await Bun.sleep(1_000);
    expect((await tenantsView()).get('bad')).toMatchObject({ breaker: 'open' });
    expect(await statuses('bad')).toEqual(['dead', 'pending']);

    // The reset closes the processor's breaker and lets the held record out at once (no poll for 60 s).
    expect(await adminCall('POST', '/tenants/bad/breaker/reset')).toEqual([200, { tenant_id: 'bad', breaker: 'closed', quota_tokens: 2_000 }]);
    await eventually(async () => (await statuses('bad')).join() === 'dead,sent', 15_000, "bad's held record sent after the reset");
    expect((await tenantsView()).get('bad')).toMatchObject({ breaker: 'closed' });

    // A call in flight when the processor dies is answered at once, not at its timeout; the node stops.
    process.kill(processor, 'SIGSTOP');
    const inFlight = adminCall('GET', '/tenants');
    await Bun.sleep(300);
    const killed = performance.now();
    process.kill(processor, 'SIGKILL');
    expect((await inFlight)[0]).toBe(503);
    expect(performance.now() - killed).toBeLessThan(3_000);
    expect(await node.proc.exited).toBe(1);
  }, 120_000);

  test('kill -9 of one worker stops the node (exit 1); every acknowledged write reaches the outbox after the restart; SIGINT drains', async () => {
    const env = {
      DATABASE_URL: db.url,
      SLUICE_WORKERS: '2',
      SLUICE_PORT: '0',
      SLUICE_NODE_ID: 'nine',
      SLUICE_WRITE_MODE: 'fast_ack',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
    };
    const node = await spawnNode(env, 'ingest');
    children.push(node);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const statuses = await Promise.all(keys.map((k) => write(node.url, { id: 'nine' }, k)));
    expect(statuses).toEqual(keys.map(() => 202));

    // The worker to be killed acknowledged some of them: they are in its journal.
    expect(journalLines(join(dir, 'journal', 'nine-1'))).toBeGreaterThan(0);
    const victim = node.pids['worker 1']!;
    process.kill(victim, 'SIGKILL');
    expect(await node.proc.exited).toBe(1);
    const [stopping] = node.lines().filter((l) => l.msg === 'sluice stopping: a part it cannot run without failed');
    expect(stopping?.reason).toBe(`worker 1 (pid ${victim}) exited on SIGKILL`);
    // The other worker drained and stopped: nothing is left holding the port or a journal.
    expect(node.lines().filter((l) => l.msg === 'shutdown complete' && l.worker !== undefined).map((l) => l.worker)).toEqual([2]);
    expect(isAlive(node.pids['worker 2']!)).toBe(false);

    const again = await spawnNode(env, 'ingest');
    children.push(again);
    await eventually(async () => (await outboxCount('nine')).rows >= 40, 20_000, 'every acknowledged write in the outbox');
    expect(await outboxCount('nine')).toEqual({ rows: 40, keys: 40 });
    // SIGINT (Ctrl-C) drains like SIGTERM.
    again.proc.kill('SIGINT');
    expect(await again.proc.exited).toBe(0);
    expect(again.lines().filter((l) => l.msg === 'shutdown complete').length).toBe(3);
  }, 120_000);

  test('kill -9 of the supervisor: each worker drains and exits, none is left holding the port', async () => {
    const node = await spawnNode({ DATABASE_URL: db.url, SLUICE_WORKERS: '2', SLUICE_PORT: '0', SLUICE_NODE_ID: 'orphan', SLUICE_JOURNAL_DIR: join(dir, 'journal') }, 'ingest');
    children.push(node);
    expect(await write(node.url, { id: 'orphan' }, 'k')).toBe(202);
    node.proc.kill('SIGKILL');
    await eventually(async () => !isAlive(node.pids['worker 1']!) && !isAlive(node.pids['worker 2']!), 20_000, 'both workers gone');
    expect(node.lines().filter((l) => l.msg === 'the supervisor exited: this worker stops').map((l) => l.worker).sort()).toEqual([1, 2]);
    expect(node.lines().filter((l) => l.msg === 'shutdown complete').map((l) => l.worker).sort()).toEqual([1, 2]);
    expect(await fetch(`${node.url}/healthz`).then(() => 'answered', () => 'refused')).toBe('refused');
    expect(await outboxCount('orphan')).toEqual({ rows: 1, keys: 1 });
  }, 60_000);

  test('kill -9 of the supervisor while its workers start: each stops once started, none is left holding the port', async () => {
    // Each worker applies the migrations at its start, under this lock: held, it keeps them starting
    // while the supervisor dies, as a slow database would (an outside tester's kill 0.3 s after the
    // start left both workers running, orphaned, one answering 202 on the node's port).
    const MIGRATION_LOCK = 0x511ce;
    const env = { ...process.env, DATABASE_URL: db.url, SLUICE_WORKERS: '2', SLUICE_PORT: '0', SLUICE_NODE_ID: 'early-orphan', SLUICE_JOURNAL_DIR: join(dir, 'journal') };
    const proc = Bun.spawn({ cmd: ['bun', CLI, 'ingest'], env, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
    const stderr = new Response(proc.stderr).text();
    const lock = await db.sql.reserve();
    let workers: number[] = [];
    try {
      // The supervisor applied the migrations before it started its workers.
      await eventually(async () => (workers = childPids(proc.pid)).length === 2, 30_000, 'both workers started');
      await lock`SELECT pg_advisory_lock(${MIGRATION_LOCK})`;
      proc.kill('SIGKILL');
      await proc.exited;
      // The workers have read the closed channel while they wait for the lock.
      await Bun.sleep(500);
      expect(workers.filter(isAlive)).toEqual(workers);
    } finally {
      await lock`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`;
      lock.release();
    }
    try {
      await eventually(async () => workers.every((pid) => !isAlive(pid)), 30_000, 'both workers gone');
    } finally {
      for (const pid of workers.filter(isAlive)) process.kill(pid, 'SIGKILL');
    }
    const lines = logLines(await stderr);
    expect(lines.filter((l) => l.msg === 'the supervisor exited: this worker stops').map((l) => l.worker).sort()).toEqual([1, 2]);
    expect(lines.filter((l) => l.msg === 'shutdown complete').map((l) => l.worker).sort()).toEqual([1, 2]);
    const urls = lines.filter((l) => l.msg === 'sluice listening').map((l) => String(l.url));
    expect(urls.length).toBe(2);
    for (const url of new Set(urls)) expect(await fetch(`${url}/healthz`).then(() => 'answered', () => 'refused')).toBe('refused');
  }, 90_000);

  test('a restart with another worker count forwards what the journals it no longer runs still hold', async () => {
    const journal = join(dir, 'journal-stranded');
    const env = (workers: number) => ({ DATABASE_URL: db.url, SLUICE_WORKERS: String(workers), SLUICE_PORT: '0', SLUICE_NODE_ID: 'st', SLUICE_WRITE_MODE: 'fast_ack', SLUICE_JOURNAL_DIR: journal });
    // Records journaled and never forwarded, as a node stopped before its forwarder caught up leaves them.
    const unforward = async (nodeIds: string[], tenant: string): Promise<void> => {
      for (const id of nodeIds) rmSync(join(journal, id, 'checkpoint.json'));
      await db.sql`DELETE FROM outbox WHERE tenant_id = ${tenant}`;
    };
    const run = async (workers: number, tenant: string, writes: number): Promise<Line[]> => {
      const node = workers === 1 ? await spawnSluice(env(1), 'ingest') : await spawnNode(env(workers), 'ingest');
      children.push(node);
      const keys = Array.from({ length: writes }, (_, i) => `k${i}`);
      expect(await Promise.all(keys.map((k) => write(node.url, { id: tenant }, k)))).toEqual(keys.map(() => 202));
      node.proc.kill('SIGTERM');
      expect(await node.proc.exited).toBe(0);
      return node.logLines().map((l) => JSON.parse(l) as Line);
    };
    const forwarded = (lines: Line[]) => lines.filter((l) => l.msg === 'journal of a worker no longer run forwarded').map((l) => [l.journal_node, l.records]);

    expect(forwarded(await run(1, 'one', 10))).toEqual([]);
    await unforward(['st'], 'one');
    // One → two: `st` is nobody's now; the supervisor forwards it before the workers start.
    const toTwo = await run(2, 'two', 30);
    expect(forwarded(toTwo)).toEqual([['st', 10]]);
    // regression (outside tester): the lines of the stranded journal's own stack name it, not only the node.
    expect(toTwo.filter((l) => l.journal_node === 'st').map((l) => String(l.msg)).sort()).toEqual(['dedupe index loaded', 'journal of a worker no longer run forwarded']);
    expect(await outboxCount('one')).toEqual({ rows: 10, keys: 10 });
    expect(journalLines(join(journal, 'st-1')) + journalLines(join(journal, 'st-2'))).toBe(30);
    expect(readFileSync(join(journal, 'st.workers'), 'utf8')).toBe('2\n');

    await unforward(['st-1', 'st-2'], 'two');
    // Two → one: both worker directories are forwarded by the single process before it listens.
    const back = forwarded(await run(1, 'three', 5));
    expect(back.map(([id]) => id)).toEqual(['st-1', 'st-2']);
    expect(back.reduce((n, [, r]) => n + Number(r), 0)).toBe(30);
    expect(await outboxCount('two')).toEqual({ rows: 30, keys: 30 });
    expect(existsSync(join(journal, 'st.workers'))).toBe(false);
    // Forwarded once: the next start leaves them alone.
    expect(forwarded(await run(1, 'four', 1))).toEqual([]);
  }, 180_000);

  test('start-up errors are explained as by one process: an unwritable journal root stops the supervisor (exit 1) before any worker starts', async () => {
    const file = join(dir, 'not-a-directory');
    writeFileSync(file, 'x');
    const { code, stderr } = await runCli(['ingest'], { DATABASE_URL: db.url, SLUICE_WORKERS: '2', SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: file }, { clean: true });
    expect(code).toBe(1);
    const lines = logLines(stderr);
    expect(lines.map((l) => [l.msg, l.code])).toEqual([['sluice cannot start', 'journal_unavailable']]);
    expect(String(lines[0]?.error)).toStartWith(`SLUICE_JOURNAL_DIR ${file}`);
  });

  test('several workers need DATABASE_URL: the embedded database serves one process (exit 2, naming both settings)', async () => {
    const { code, stderr } = await runCli(['serve'], { SLUICE_WORKERS: '2', SLUICE_DATA_DIR: join(dir, 'data'), SLUICE_JOURNAL_DIR: join(dir, 'journal-embedded') }, { clean: true });
    expect(code).toBe(2);
    expect(logLines(stderr).map((l) => l.errors)).toEqual([
      [
        'SLUICE_WORKERS 2 needs DATABASE_URL: the embedded database serves one connection of one process, so several worker processes cannot share it; set DATABASE_URL to a Postgres, or SLUICE_WORKERS to 1',
      ],
    ]);
  });
});
