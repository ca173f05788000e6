import { describe, expect, test } from 'bun:test';
import { partitionOf } from '../../src/outbox/partition.ts';
import { readTopic } from '../support/kafka.ts';
import { eventually, postEvent, sluiceFixture } from '../support/sluice.ts';

describe('serve: rows its ingest puts in the outbox wake their partitions at once', () => {
  // Neither the processor's poll nor a task's own idle poll comes within the test: only the wake can.
  const PARTITIONS = 16;
  const f = sluiceFixture({ SLUICE_POLL_MS: '60000', SLUICE_PARTITIONS: String(PARTITIONS) });

  test('writes of tenants in three partitions are published within seconds, each time, with a 60 s poll', async () => {
    const owned = async (): Promise<number> => ((await (await fetch(`${f.sluice.url}/healthz`)).json()) as { partitions_owned: number }).partitions_owned;
    await eventually(async () => (await owned()) === PARTITIONS, 30_000, 'every partition owned');
    const tenants = ['acme', 'beta', 'gamma'];
    expect(new Set(tenants.map((t) => partitionOf(t, PARTITIONS))).size).toBe(3);
    // Every task's first pass has found its partition empty and waits.
    await Bun.sleep(500);
    for (let round = 0; round < 2; round++) {
      const started = performance.now();
      const answers: string[] = [];
      for (const tenant of tenants) {
        const res = await postEvent(f.sluice.url, { dedupe_key: `k${round}`, payload: { round } }, { 'X-Tenant-Id': tenant });
        expect(res.status).toBe(202);
        answers.push(await res.text());
      }
      // The answers say, on a failure, whether a write went to the outbox or was answered from the journal.
      await eventually(async () => {
        const [row] = await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
        return row?.n === tenants.length * (round + 1);
      }, 20_000, `round ${round} sent (answers: ${answers.join(' ')})`);
      expect(performance.now() - started).toBeLessThan(15_000);
    }
    const records = await readTopic(f.brokers, f.sluice.topic, { expected: 6 });
    expect(records.map((r) => r.key).sort()).toEqual(tenants.flatMap((t) => [`${t}:k0`, `${t}:k1`]).sort());
  }, 120_000);
});
