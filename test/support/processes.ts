/** The pids of the processes `pid` started (`pgrep -P`), none when it started none. */
export function childPids(pid: number): number[] {
  return Bun.spawnSync({ cmd: ['pgrep', '-P', String(pid)] })
    .stdout.toString()
    .split('\n')
    .filter((l) => l.length > 0)
    .map(Number);
}
