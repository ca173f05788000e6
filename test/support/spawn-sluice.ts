import { expect } from 'bun:test';
import { join } from 'node:path';

const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');

export interface SpawnedSluice {
  proc: Bun.Subprocess<'ignore', 'ignore', 'pipe'>;
  url: string;
  /** Every log line the child wrote to stderr so far. */
  logLines(): string[];
}

/**
 * Starts `sluice serve` (or `ingest`, `process`) as a real child process and resolves once it logs its
 * URL. It inherits this process's environment; a variable given as undefined is removed from it (an
 * empty value is a setting sluice refuses, not an unset one). `bunFlags` go to bun before the script.
 */
export async function spawnSluice(
  env: Record<string, string | undefined>,
  command: 'serve' | 'ingest' | 'process' = 'serve',
  bunFlags: string[] = [],
): Promise<SpawnedSluice> {
  const merged = Object.entries({ ...process.env, ...env }).filter((e): e is [string, string] => e[1] !== undefined);
  const proc = Bun.spawn({ cmd: ['bun', ...bunFlags, CLI, command], env: Object.fromEntries(merged), stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
  const decoder = new TextDecoder();
  const reader = proc.stderr.getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    // The node's line: under a supervisor each worker logs one of its own first (with `worker`).
    const m = /"msg":"sluice listening"(?![^\n]*"worker":)[^\n]*"url":"([^"]+)"/.exec(buffer);
    if (m?.[1] !== undefined) {
      // Keep reading stderr, so the child never blocks on a full pipe and later lines can be checked.
      void (async () => {
        for (let r = await reader.read(); !r.done; r = await reader.read()) buffer += decoder.decode(r.value, { stream: true });
      })();
      return { proc, url: m[1], logLines: () => buffer.split('\n').filter((l) => l.length > 0) };
    }
  }
  throw new Error(`sluice exited before listening:\n${buffer}`);
}

/** A part sluice cannot run without died (its broker, its embedded database): it exits 1 and logs why. */
export async function expectStoppedBecause(sluice: SpawnedSluice, reasonStart: string): Promise<void> {
  expect(await sluice.proc.exited).toBe(1);
  const stopped = JSON.parse(sluice.logLines().find((l) => l.includes('a part it cannot run without failed')) ?? '{}') as { level?: string; reason?: string };
  expect(stopped.level).toBe('error');
  expect(stopped.reason).toStartWith(reasonStart);
}
