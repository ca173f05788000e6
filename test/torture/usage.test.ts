import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { runScript, type CliResult } from '../support/cli.ts';

const RUN = join(import.meta.dir, 'run.ts');

const torture = (args: string[]): Promise<CliResult> => runScript(RUN, args);

describe('bun run torture usage', () => {
  test('regression: --help prints the usage and exits 0 before any work (it died with a parser stack trace)', async () => {
    const r = await torture(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('usage: bun run torture [--minutes N] [--seed S]');
    expect(r.stderr).not.toContain('torture: starting');
  });

  test('an unknown option or a bad value exits 2 naming it, with the usage', async () => {
    const unknown = await torture(['--frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.split('\n')[0]).toBe("torture: Unknown option '--frobnicate'");
    expect(unknown.stderr).toContain('usage: bun run torture');
    const bad = await torture(['--minutes', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe('torture: --minutes must be a positive number and --seed a whole number');
  });
});
