import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Envelope } from '../../src/core/record.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { Forwarder } from '../../src/ingest/forwarder.ts';
import { OutboxProgress } from '../../src/ingest/outbox-progress.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { Outbox } from '../../src/outbox/outbox.ts';

/**
 * Issue 10: a journal line Postgres refused (54001 at 20,000 levels of nesting then) was retried by
 * the forwarder forever, and in fast_ack every later write of every tenant stayed journal-only. Now
 * such a line is quarantined with its position and the forwarder goes on. The poison here is a
 * header value jsonb cannot hold (`\u0000`), written straight into the journal as an old or foreign
 * line would be (ingest refuses it).
 */
describe('issue 10: a journal line the outbox refuses for good', () => {
  let db: TestDatabase;
  let dir: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sluice-poison-'));
  });
  afterAll(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const envelope = (i: number, headers: Record<string, string> = {}): Envelope => ({
    tenant_id: 'acme', dedupe_key: `k${i}`, topic: 'events', request_id: `r${i}`, headers, payload: `{"i":${i}}`,
  });

  test('is quarantined with its segment and seq, counted and logged; the lines around it are forwarded', async () => {
    const metrics = createMetrics();
    const w = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 1 << 20, log: quietLog, metrics });
    const lines: string[] = [];
    const log = { ...quietLog, error: (msg: string, fields?: Record<string, unknown>) => lines.push(JSON.stringify({ msg, ...fields })) };
    const batch = [envelope(1), envelope(2, { h: 'x\u0000y' }), envelope(3), envelope(4), envelope(5, { h: '\u0000' }), envelope(6)];
    await w.append(batch);
    const f = new Forwarder({
      nodeId: 'n1', journal: w, outbox: new Outbox(db.sql, 16), batchSize: 100, pollMs: 10, log, metrics,
      progress: new OutboxProgress(w),
    });
    await f.init();
    f.start();
    try {
      await eventually(async () => f.checkpoint.seq === 6, 10_000, 'the forwarder past every line');
      const keys = await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY id`;
      expect(keys.map((r) => r.dedupe_key)).toEqual(['k1', 'k3', 'k4', 'k6']);
      const q = await db.sql<{ node_id: string; segment: string; seq: string; tenant_id: string; dedupe_key: string; error: string }[]>`
        SELECT node_id, segment, seq::text, tenant_id, dedupe_key, error FROM forwarder_quarantine ORDER BY seq`;
      expect(q.map((r) => [r.node_id, r.segment, r.seq, r.tenant_id, r.dedupe_key])).toEqual([
        ['n1', '00000000000000000001.jsonl', '2', 'acme', 'k2'],
        ['n1', '00000000000000000001.jsonl', '5', 'acme', 'k5'],
      ]);
      expect(q[0]?.error).toContain('22P05');
      expect(f.lastError).toBeUndefined();
      expect(f.failingMs()).toBe(0);
      expect(await metrics.registry.getSingleMetricAsString('sluice_forwarder_quarantined_total')).toContain('sluice_forwarder_quarantined_total 2');
      expect(lines.filter((l) => l.includes('quarantined')).length).toBe(2);
    } finally {
      await f.stop();
      await w.close();
    }
  });
});
