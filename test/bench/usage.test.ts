import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';

const RUN = join(import.meta.dir, '..', '..', 'bench', 'run.ts');

async function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn({ cmd: ['bun', RUN, ...args], stdout: 'pipe', stderr: 'pipe' });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

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
