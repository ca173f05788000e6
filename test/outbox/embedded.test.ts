import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { EMBEDDED_SHARED_BUFFERS, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/outbox/embedded.ts';
import { quietLog } from '../support/postgres.ts';

describe('embedded postgres', () => {
  let dir: string;
  let pg: EmbeddedPostgres;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-embedded-'));
    pg = await startEmbeddedPostgres(dir, quietLog);
  }, 60_000);
  afterAll(async () => {
    await pg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('runs with small shared_buffers: Postgres\'s 128MB default was most of the embedded RSS', async () => {
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql<{ shared_buffers: string }[]>`SHOW shared_buffers`;
      expect(row?.shared_buffers).toBe(EMBEDDED_SHARED_BUFFERS);
      expect(EMBEDDED_SHARED_BUFFERS).toBe('16MB');
    } finally {
      await sql.end();
    }
  });
});
