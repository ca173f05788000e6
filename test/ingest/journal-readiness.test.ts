import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { journalReadiness } from '../../src/ingest/journal-readiness.ts';
import { mountSmallDisk, type SmallDisk } from '../support/small-disk.ts';

let disk: SmallDisk;
let nodeDir: string;
beforeAll(() => {
  disk = mountSmallDisk(4 << 20);
  nodeDir = join(disk.dir, 'n1');
  mkdirSync(nodeDir);
});
afterAll(() => disk.unmount());

const MIN_FREE = 256 << 10;

test('a disk with less room than one request is not ready before any write fails there; freed, it is', async () => {
  expect(await journalReadiness(nodeDir, undefined, MIN_FREE)).toEqual({ ok: true });
  disk.fill(64 << 10);
  const full = await journalReadiness(nodeDir, undefined, MIN_FREE);
  expect(full.ok).toBe(false);
  expect(full.detail).toMatch(/^journal disk full: \d+ bytes free, a request may need 262144$/);
  disk.free();
  expect(await journalReadiness(nodeDir, undefined, MIN_FREE)).toEqual({ ok: true });
});

test('after a failed write: ready once a probe write and fsync succeed, not while the disk is full', async () => {
  const failure = 'ENOSPC: no space left on device, write';
  disk.fill(64 << 10);
  expect(await journalReadiness(nodeDir, failure, MIN_FREE)).toMatchObject({ ok: false });
  disk.free();
  expect(await journalReadiness(nodeDir, failure, MIN_FREE)).toEqual({ ok: true });
  // The probe leaves nothing behind in the journal.
  expect(Array.from(new Bun.Glob('*').scanSync(nodeDir))).toEqual([]);
  // A journal directory that is gone: the failure stands.
  expect(await journalReadiness(join(nodeDir, 'missing'), failure, 1)).toEqual({ ok: false, detail: failure });
});
