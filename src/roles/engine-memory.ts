/**
 * How much memory the JavaScript engine sizes a sluice process's heap for (SLUICE_MEMORY_MIB).
 *
 * JavaScriptCore decides when to collect from the machine's RAM. On a machine of 16 GiB or more it
 * lets the heap grow to ~3× what the last full collection left, and garbage that outlived a young
 * collection (a write's body and objects while its fsync, insert or publish is under way; the
 * hand-off's lines until the forwarder's insert) waits for the next full one: under the NDJSON bench
 * ~40 MB stay live and the process peaked at 311–454 MiB. Told that the machine has
 * SLUICE_MEMORY_MIB (BUN_JSC_forceRAMSize), it grows the heap 2× while the process's footprint is
 * below 80 % of that, 1.5× below 90 %, and collects fully at every collection past it, so the peak
 * follows the setting on any machine, at more collection work as the live set nears it. The process's
 * resident memory is more than the engine counts (the mapped binary, the runtime's native buffers):
 * under the NDJSON bench a `serve` sized for 256 MiB peaked at 268–315 MiB, for 192 at 236–249. It is
 * not a limit: a process whose live set needs more still runs, collecting more often.
 *
 * The engine reads its options from the environment once, as the process starts. A process started
 * without the variable therefore replaces itself (execve: the same pid, executable, flags and
 * arguments; nothing opened yet) with it set, so `bun start`, `bun src/cli.ts …`, the systemd unit and
 * a supervisor's workers (which inherit it) all run sized alike. A BUN_JSC_forceRAMSize the operator
 * set is kept as given.
 *
 * The same start tells the allocator (mimalloc) to keep the memory it frees for reuse rather than
 * give it back to the system 100 ms later (MIMALLOC_PURGE_DELAY=-1), unless the operator set that;
 * the process is replaced unless both variables are set. The collector frees and takes back its
 * blocks all the time, and each purge was paid again as page faults: by the allocator's scavenger,
 * the engine's block warm-up thread, its compiler threads and the main thread (README.md,
 * SLUICE_MEMORY_MIB, for the runs). Resident memory then stays near its peak after a burst.
 *
 * Not under Bun's sampling profiler (`--cpu-prof`): it suspends the main thread with SIGPWR at every
 * sample, and one still pending at the execve reached the new image before its engine handled the
 * signal again, whose default action ended the process (exit 158, one profiled start in three or four).
 * A profiled process runs unsized unless both variables are set, and says which to set.
 */
export const ENGINE_RAM_VARIABLE = 'BUN_JSC_forceRAMSize';
export const PURGE_DELAY_VARIABLE = 'MIMALLOC_PURGE_DELAY';

const MiB = 1024 * 1024;

/**
 * The environment to start this process again with, or undefined when both variables are set already
 * (by an earlier start, a supervisor, or the operator, whose values are kept).
 */
export function engineMemoryEnv(memoryMiB: number, env: Record<string, string | undefined>): Record<string, string> | undefined {
  if (env[ENGINE_RAM_VARIABLE] !== undefined && env[PURGE_DELAY_VARIABLE] !== undefined) return undefined;
  const next: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) next[k] = v;
  next[ENGINE_RAM_VARIABLE] ??= String(memoryMiB * MiB);
  next[PURGE_DELAY_VARIABLE] ??= '-1';
  return next;
}

/** Bun's flags that start its sampling profiler: `--cpu-prof`, `--cpu-prof-md`, and their options. */
export function underSamplingProfiler(execArgv: readonly string[]): boolean {
  return execArgv.some((a) => a.startsWith('--cpu-prof'));
}

/**
 * Replaces this process with itself under a sized engine, unless it already runs under one. Under the
 * sampling profiler it stays as it is and answers the warning to log (the logger does not exist yet).
 */
export function sizeEngineMemory(memoryMiB: number): string | undefined {
  const env = engineMemoryEnv(memoryMiB, process.env);
  // Without execve (not POSIX) the engine sizes the heap from the machine, as it would without sluice.
  if (env === undefined || process.execve === undefined) return undefined;
  if (underSamplingProfiler(process.execArgv)) {
    const missing = Object.entries(env).filter(([k]) => process.env[k] === undefined);
    return `under bun --cpu-prof sluice does not restart itself to size its engine and allocator as SLUICE_MEMORY_MIB says (the profiler's signal can end the restarted process); set ${missing.map(([k, v]) => `${k}=${v}`).join(' ')} to profile it as it runs`;
  }
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], env);
}
