import { afterEach, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquirePidLock, pidLockHolder } from '../src/pid-lock.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function lockPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pid-lock-'));
  dirs.push(dir);
  return join(dir, 'x.lock');
}

const refuse = (holder: number): Error => new Error(`held by ${holder}`);

describe('pid lock files', () => {
  test('taken whole with this pid; a second take is refused while held; released, it can be taken again', () => {
    const path = lockPath();
    const release = acquirePidLock(path, refuse);
    expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
    expect(pidLockHolder(path)).toBe(process.pid);
    expect(() => acquirePidLock(path, refuse)).toThrow(`held by ${process.pid}`);
    release();
    expect(existsSync(path)).toBe(false);
    expect(pidLockHolder(path)).toBeUndefined();
    acquirePidLock(path, refuse)();
    // Nothing is left beside it: no side file, no stale copy.
    expect(readdirSync(join(path, '..'))).toEqual([]);
  });

  test('a live other holder refuses; a dead one, an empty file and this pid not held by this process are taken over', async () => {
    const path = lockPath();
    const sleeper = Bun.spawn({ cmd: ['sleep', '30'] });
    try {
      writeFileSync(path, `${sleeper.pid}\n`);
      expect(() => acquirePidLock(path, refuse)).toThrow(`held by ${sleeper.pid}`);
      expect(readFileSync(path, 'utf8')).toBe(`${sleeper.pid}\n`);
    } finally {
      sleeper.kill('SIGKILL');
      await sleeper.exited;
    }
    for (const stale of [`${sleeper.pid}\n`, '', `${process.pid}\n`]) {
      writeFileSync(path, stale);
      const release = acquirePidLock(path, refuse);
      expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
      release();
    }
  });
});
