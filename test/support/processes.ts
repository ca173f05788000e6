import { readFileSync } from 'node:fs';

/** An environment variable as the running process `pid` has it (after any execve), or undefined. */
export function environOf(pid: number, name: string): string | undefined {
  return readFileSync(`/proc/${pid}/environ`, 'utf8')
    .split('\0')
    .find((l) => l.startsWith(`${name}=`))
    ?.slice(name.length + 1);
}

/** The pids of the processes `pid` started (`pgrep -P`), none when it started none. */
export function childPids(pid: number): number[] {
  return Bun.spawnSync({ cmd: ['pgrep', '-P', String(pid)] })
    .stdout.toString()
    .split('\n')
    .filter((l) => l.length > 0)
    .map(Number);
}
