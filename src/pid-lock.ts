import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { SluiceError } from './errors.ts';

/** State and parent pid from /proc/<pid>/stat; undefined when there is no such process (or no /proc). */
export function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    // After the command name in parentheses, which may itself hold spaces and parentheses: state, ppid.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state = '', ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs: a zombie (killed, not yet reaped by its parent) answers signal 0 but holds nothing. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return procStat(pid)?.state !== 'Z';
}

/** Lock files this process holds: its own pid in a lock file is stale only when not among them (a reused pid). */
const held = new Set<string>();

function lockHolder(lockPath: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function heldByOther(lockPath: string, holder: number | undefined): holder is number {
  if (holder === undefined) return false;
  return holder === process.pid ? held.has(lockPath) : isAlive(holder);
}

/** The live process holding the lock file, if any: what taking it would be refused for. */
export function pidLockHolder(lockPath: string): number | undefined {
  const holder = lockHolder(lockPath);
  return heldByOther(lockPath, holder) ? holder : undefined;
}

/**
 * Takes a lock file holding this process's pid, or throws `refuse(holder)` while a live process holds
 * it; a lock whose holder is gone (dead, a zombie, or this pid reused) is taken over. The file appears
 * whole (written aside, then hard-linked into place, which fails when one exists), so a reader never
 * sees it empty; a stale one is renamed aside first and checked to be the one judged stale, so two
 * starts racing for it cannot both win. Returns the release.
 */
export function acquirePidLock(lockPath: string, refuse: (holder: number) => Error): () => void {
  const mine = `${lockPath}.${process.pid}`;
  writeFileSync(mine, `${process.pid}\n`);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(mine, lockPath);
        held.add(lockPath);
        return () => {
          held.delete(lockPath);
          rmSync(lockPath, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = lockHolder(lockPath);
      if (heldByOther(lockPath, holder)) throw refuse(holder);
      const aside = `${lockPath}.stale.${process.pid}`;
      try {
        renameSync(lockPath, aside);
      } catch {
        continue; // Another start took it over first: look again.
      }
      const moved = lockHolder(aside);
      if (moved !== holder && heldByOther(lockPath, moved)) {
        // Between the look and the rename another start took the stale lock over: it is its, back it goes.
        try {
          linkSync(aside, lockPath);
        } finally {
          rmSync(aside, { force: true });
        }
        throw refuse(moved);
      }
      rmSync(aside, { force: true });
    }
    throw new SluiceError('file_unavailable', `could not take the lock ${lockPath}: it keeps changing`);
  } finally {
    rmSync(mine, { force: true });
  }
}
