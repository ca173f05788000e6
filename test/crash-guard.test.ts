import { expect, test } from 'bun:test';
import { join } from 'node:path';

const GUARD = join(import.meta.dir, '..', 'src', 'crash-guard.ts');
const LOG = join(import.meta.dir, '..', 'src', 'log.ts');

/**
 * Issue 10: a TypeError thrown from a Kafka client callback ended the process (and, on restart, again).
 * A process with the guard logs such an exception, or a rejection nobody awaits, and goes on.
 */
test('an exception thrown from a callback and an unhandled rejection are logged, and the process goes on', async () => {
  const script = `
    const { guardProcess } = await import(${JSON.stringify(GUARD)});
    const { createLogger } = await import(${JSON.stringify(LOG)});
    guardProcess(createLogger());
    setTimeout(() => { throw new TypeError("undefined is not an object (evaluating 'metadata.topics.get(message.topic).partitionsCount')"); }, 5);
    void Promise.reject(new Error('a rejection nobody awaits'));
    setTimeout(() => console.log('still alive'), 100);
  `;
  const proc = Bun.spawn({ cmd: ['bun', '-e', script], stdout: 'pipe', stderr: 'pipe' });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  expect(stdout.trim()).toBe('still alive');
  const lines = stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string; error: string });
  expect(lines.map((l) => [l.level, l.msg]).sort()).toEqual([
    ['error', 'uncaught exception; sluice goes on'],
    ['error', 'unhandled promise rejection; sluice goes on'],
  ]);
  expect(lines.some((l) => l.error.startsWith('TypeError: undefined is not an object'))).toBe(true);
});
