import { expect, test } from 'bun:test';
import postgres from 'postgres';
import { SluiceError } from '../../src/errors.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { restartablePort } from '../support/ports.ts';

test('an outbox whose database does not answer fails with outbox_unavailable, the database error as its cause', async () => {
  const port = await restartablePort();
  const sql = postgres(`postgres://postgres@127.0.0.1:${port}/postgres`, { max: 1, connect_timeout: 2, onnotice: () => {} });
  const outbox = new Outbox(sql, 16);
  const row = outbox.rowFor({ tenant_id: 'acme', dedupe_key: 'k1', topic: 't', payload: '{}', headers: {}, request_id: 'r1', ts: new Date().toISOString() });
  try {
    const calls: [string, () => Promise<unknown>][] = [
      ['insert', () => outbox.insert([row])],
      ['insertIsolating', () => outbox.insertIsolating([row])],
      ['existingPairs', () => outbox.existingPairs([row])],
      ['exists', () => outbox.exists()],
    ];
    for (const [name, call] of calls) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect([name, err instanceof SluiceError ? err.code : err]).toEqual([name, 'outbox_unavailable']);
      expect(((err as Error).cause as { code?: unknown }).code).toBe('ECONNREFUSED');
      expect((err as Error).message).toContain('ECONNREFUSED');
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
});
