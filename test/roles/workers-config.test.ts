import { afterAll, describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { strandedNodeIds, workerNodeIds } from '../../src/roles/stranded.ts';

const DB = 'postgres://postgres@127.0.0.1:5432/x';

function errorsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.details?.map((d) => d.message) ?? [];
  }
}

describe('SLUICE_WORKERS', () => {
  test('defaults to 1; a whole number from 1 to 64', () => {
    expect(loadConfig({}).workers).toBe(1);
    expect(loadConfig({ SLUICE_WORKERS: '4', DATABASE_URL: DB }).workers).toBe(4);
    expect(errorsOf({ SLUICE_WORKERS: '0' })).toEqual(['SLUICE_WORKERS must be at least 1: set it to a whole number from 1 to 64, or unset it for the default 1']);
    expect(errorsOf({ SLUICE_WORKERS: '65', DATABASE_URL: DB })).toEqual(['SLUICE_WORKERS must be at most 64: set it to a whole number from 1 to 64, or unset it for the default 1']);
  });

  test('above 1 it needs DATABASE_URL, and a node id that takes the `-<i>` suffix', () => {
    expect(errorsOf({ SLUICE_WORKERS: '2' })).toEqual([
      'SLUICE_WORKERS 2 needs DATABASE_URL: the embedded database serves one connection of one process, so several worker processes cannot share it; set DATABASE_URL to a Postgres, or SLUICE_WORKERS to 1',
    ]);
    expect(errorsOf({ SLUICE_WORKERS: '12', DATABASE_URL: DB, SLUICE_NODE_ID: 'n'.repeat(62) })).toEqual([
      `SLUICE_NODE_ID ${'n'.repeat(62)} is too long for SLUICE_WORKERS 12: worker node ids (${'n'.repeat(62)}-12) must be at most 64 characters; shorten SLUICE_NODE_ID`,
    ]);
  });

  test('SLUICE_WORKER is the supervisor\'s to set: a worker index or `processor`, anything else refused', () => {
    const supervised = { supervised: true };
    expect(loadConfig({}).worker).toBeUndefined();
    expect(loadConfig({ SLUICE_WORKER: '3', SLUICE_WORKERS: '4', DATABASE_URL: DB }, supervised).worker).toEqual({ kind: 'ingest', index: 3 });
    expect(loadConfig({ SLUICE_WORKER: 'processor', SLUICE_WORKERS: '2', DATABASE_URL: DB }, supervised).worker).toEqual({ kind: 'processor' });
    expect(errorsOf({ SLUICE_WORKER: 'yes' })).toEqual(['SLUICE_WORKER is set by sluice for its own worker processes; unset it']);
  });
});

describe('SLUICE_PROCESSOR', () => {
  const apart = (env: Record<string, string>, cores: number): boolean => loadConfig(env, { cores }).processorApart;

  test('auto: serve\'s processor in a process of its own with a Postgres, a Kafka cluster and a second core; inline otherwise', () => {
    const kafka = { KAFKA_BROKERS: '127.0.0.1:9092' };
    expect(apart({ DATABASE_URL: DB, ...kafka }, 2)).toBe(true);
    expect(apart({ DATABASE_URL: DB, ...kafka }, 1)).toBe(false);
    // The embedded database serves one process; the local broker is the one process's.
    expect(apart({ ...kafka }, 8)).toBe(false);
    expect(apart({ DATABASE_URL: DB }, 8)).toBe(false);
    // Several ingest workers never run the processor inline, whatever the cores.
    expect(apart({ DATABASE_URL: DB, SLUICE_WORKERS: '2' }, 1)).toBe(true);
    expect(apart({ DATABASE_URL: DB, ...kafka, SLUICE_PROCESSOR: 'auto' }, 2)).toBe(true);
  });

  test('process and inline are taken as set, where the rest of the configuration allows them', () => {
    expect(apart({ DATABASE_URL: DB, SLUICE_PROCESSOR: 'process' }, 1)).toBe(true);
    expect(apart({ DATABASE_URL: DB, SLUICE_PROCESSOR: 'inline' }, 8)).toBe(false);
    expect(errorsOf({ SLUICE_PROCESSOR: 'process' })).toEqual([
      'SLUICE_PROCESSOR process needs DATABASE_URL: the embedded database serves one connection of one process, so a processor process of its own could not share it; set DATABASE_URL to a Postgres, or SLUICE_PROCESSOR to auto or inline',
    ]);
    expect(errorsOf({ SLUICE_PROCESSOR: 'inline', SLUICE_WORKERS: '3', DATABASE_URL: DB })).toEqual([
      "SLUICE_PROCESSOR inline needs SLUICE_WORKERS 1: with 3 ingest workers serve's processor runs in a process of its own; set SLUICE_PROCESSOR to auto or process, or SLUICE_WORKERS to 1",
    ]);
    expect(errorsOf({ SLUICE_PROCESSOR: 'thread' })[0]).toStartWith('SLUICE_PROCESSOR ');
  });
});

describe('worker journal directories', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-stranded-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const config = (workers: number) => loadConfig({ SLUICE_NODE_ID: 'edge', SLUICE_JOURNAL_DIR: dir, SLUICE_WORKERS: String(workers), DATABASE_URL: DB });

  test('one worker keeps the node id; several get `<id>-1` … `<id>-<n>`', () => {
    expect(workerNodeIds('edge', 1)).toEqual(['edge']);
    expect(workerNodeIds('edge', 3)).toEqual(['edge-1', 'edge-2', 'edge-3']);
  });

  test('stranded: the node\'s own directory under several workers; `<id>-<k>` only as far as the recorded count reaches', () => {
    for (const d of ['edge', 'edge-1', 'edge-2', 'edge-3', 'edge-9', 'other']) mkdirSync(join(dir, d), { recursive: true });
    // No record of several workers: `edge-9` (or any `edge-<k>`) may be another node's; one worker looks at none.
    expect(strandedNodeIds(config(1))).toEqual([]);
    expect(strandedNodeIds(config(2))).toEqual(['edge']);
    writeFileSync(join(dir, 'edge.workers'), '3\n');
    expect(strandedNodeIds(config(1))).toEqual(['edge-1', 'edge-2', 'edge-3']);
    expect(strandedNodeIds(config(2))).toEqual(['edge', 'edge-3']);
    expect(strandedNodeIds(config(4))).toEqual(['edge']);
  });
});
