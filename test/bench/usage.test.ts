import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { runScript, type CliResult } from '../support/cli.ts';

const RUN = join(import.meta.dir, '..', '..', 'bench', 'run.ts');

const bench = (args: string[]): Promise<CliResult> => runScript(RUN, args);

describe('bun run bench usage', () => {
  test('regression: --help prints the usage and exits 0 before any work (it used to start a full run)', async () => {
    const r = await bench(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('usage: bun run bench [--quick] [--only name,name] [--profile] [--growth]');
    expect(r.stdout).not.toContain('[bench');
  });

  test('an unknown option exits 2 naming it, with the usage', async () => {
    const r = await bench(['--quick', '--only', 'json-sync', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('bench: unknown option --frobnicate');
    expect(r.stdout).not.toContain('[bench');
  });
});
