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

describe('the embedded database lock', () => {
  test('regression: a holder killed but not yet reaped (a zombie) does not keep a restart out', async () => {
    // The inner shell prints its pid and exits; its parent has exec'd `sleep` and never reaps it.
    const parent = Bun.spawn({ cmd: ['sh', '-c', 'sh -c \'echo $$\' & exec sleep 30'], stdout: 'pipe' });
    const dir = mkdtempSync(join(tmpdir(), 'sluice-embedded-lock-'));
    try {
      const zombie = Number(await firstLine(parent.stdout));
      expect(Number.isInteger(zombie)).toBe(true);
      // Wait until it is a zombie (state Z), as a sluice just killed with kill -9 can be.
      for (let i = 0; i < 100 && !(await Bun.file(`/proc/${zombie}/stat`).text()).includes(') Z '); i++) await Bun.sleep(20);
      expect(await Bun.file(`/proc/${zombie}/stat`).text()).toContain(') Z ');
      await Bun.write(join(dir, 'sluice.lock'), String(zombie));
      const pg = await startEmbeddedPostgres(dir, quietLog);
      await pg.close();
    } finally {
      parent.kill('SIGKILL');
      await parent.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** The first line a stream gives, without waiting for it to end. */
async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  let text = '';
  try {
    while (!text.includes('\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  } finally {
    reader.releaseLock();
  }
  return text.split('\n')[0] ?? '';
}
