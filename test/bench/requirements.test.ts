import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';

const RUN = join(import.meta.dir, '..', '..', 'bench', 'run.ts');

describe('bench requirements', () => {
  test('a missing Postgres stops the bench before any work, saying what to set', async () => {
    // Port 9 (discard) on loopback: nothing listens there. --growth needs Postgres alone.
    const proc = Bun.spawn({
      cmd: ['bun', RUN, '--growth', '--quick'],
      env: { ...process.env, SLUICE_BENCH_DATABASE_URL: 'postgres://postgres@127.0.0.1:9/postgres' },
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(1);
    expect(out).not.toContain('growth run');
    expect(err).toStartWith('the bench cannot run here yet:\n- Postgres is not reachable at 127.0.0.1:9');
    expect(err).toContain('point SLUICE_BENCH_DATABASE_URL at a server');
    expect(err).not.toContain('    at ');
  });
});
