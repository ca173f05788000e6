import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../bench/server-process.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';

// The durable minimum is a ceiling the budget verdicts lean on ("out of reach here"): it must do the
// work it claims, or a verdict would rest on a server that skips the fsync or the insert.
let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dir = mkdtempSync(join(tmpdir(), 'durable-minimum-'));
});
afterAll(async () => {
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

const SCRIPT = join(import.meta.dir, '../../bench/baselines/durable-minimum.ts');

const CASES = [
  { mode: 'fast_ack', publish: false },
  { mode: 'sync', publish: false },
  { mode: 'fast_ack', publish: true },
  { mode: 'sync', publish: true },
] as const;

for (const { mode, publish } of CASES) {
  const what = `every event answered 202 is a line of the file and, ${mode === 'sync' ? 'by its answer' : 'soon after'}, an outbox row`;
  test(`${mode}${publish ? ', publishing' : ''}: ${what}${publish ? ', then a committed Kafka record keyed tenant:dedupe_key and the row marked sent' : ''}`, async () => {
    await db.sql`DELETE FROM outbox`;
    const name = `${mode}${publish ? '-publish' : ''}`;
    const file = join(dir, `${name}.jsonl`);
    const topic = `durable-minimum-${name}-${Bun.randomUUIDv7()}`;
    const brokers = publish ? await testBrokers() : [];
    const server = await startServer({
      cmd: ['bun', SCRIPT, mode, file, '4'],
      cwd: dir,
      env: { ...process.env, DATABASE_URL: db.url, ...(publish ? { KAFKA_BROKERS: brokers.join(','), MINIMUM_TOPIC: topic } : {}) },
      logPath: join(dir, `${name}.log`),
      ready: /^listening (\S+)\n/m,
    });
    try {
      const bodies = Array.from({ length: 60 }, (_, i) => JSON.stringify({ dedupe_key: `${name}-${i}`, payload: { n: i, s: 'é' } }));
      const answers = await Promise.all(
        bodies.map((body) => fetch(server.url, { method: 'POST', body, headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme' } })),
      );
      expect(answers.map((a) => a.status)).toEqual(bodies.map(() => 202));
      const rows = async (): Promise<string[]> =>
        (await db.sql<{ k: string; p: string; t: string }[]>`SELECT dedupe_key AS k, payload_text AS p, tenant_id AS t FROM outbox ORDER BY id`).map((r) => `${r.t} ${r.k} ${r.p}`);
      const payloadOf = (b: string): string => JSON.stringify((JSON.parse(b) as { payload: unknown }).payload);
      const expected = bodies.map((b, i) => `acme ${name}-${i} ${payloadOf(b)}`);
      if (mode === 'sync') expect((await rows()).sort()).toEqual(expected.sort());
      else {
        const deadline = Date.now() + 10_000;
        while ((await rows()).length < bodies.length && Date.now() < deadline) await Bun.sleep(20);
        expect((await rows()).sort()).toEqual(expected.sort());
      }
      // The file is preallocated (4 MiB of zeros): its lines end at the first NUL.
      const bytes = readFileSync(file);
      expect(bytes.length).toBe(4 * 1024 * 1024);
      const written = bytes.subarray(0, bytes.indexOf(0)).toString('utf8');
      expect(written.split('\n').slice(0, -1).sort()).toEqual([...bodies].sort());
      if (publish) {
        const records = await readTopic(brokers, topic, { expected: bodies.length, graceMs: 300 });
        expect(records.map((r) => `${r.key} ${r.value}`).sort()).toEqual(bodies.map((b, i) => `acme:${name}-${i} ${payloadOf(b)}`).sort());
        const deadline = Date.now() + 10_000;
        const pending = async (): Promise<number> => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status <> 'sent'`)[0]?.n ?? -1;
        while ((await pending()) > 0 && Date.now() < deadline) await Bun.sleep(20);
        expect(await pending()).toBe(0);
      } else expect((await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`)[0]?.n).toBe(0);
    } finally {
      await server.stop();
    }
  });
}
