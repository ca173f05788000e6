import { join } from 'node:path';

const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** From spawn to exit. */
  ms: number;
}

/**
 * The test runner's environment without any sluice setting (the suite's own SLUICE_TEST_* and the
 * like aside, which sluice tolerates), so a test says exactly what it sets.
 */
export function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('SLUICE_') && k !== 'DATABASE_URL' && k !== 'KAFKA_BROKERS') env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs `sluice <args>` as a real child process to its end; `clean` starts from `cleanEnv` instead of the whole environment. */
export function runCli(args: string[], env: Record<string, string>, opts: { clean?: boolean } = {}): Promise<CliResult> {
  return runScript(CLI, args, env, opts);
}

/** Runs `bun <script> <args>` (a project script: the bench, the torture run) as runCli runs sluice. */
export async function runScript(script: string, args: string[], env: Record<string, string> = {}, opts: { clean?: boolean } = {}): Promise<CliResult> {
  const started = performance.now();
  const proc = Bun.spawn({
    cmd: ['bun', script, ...args],
    env: opts.clean === true ? cleanEnv(env) : { ...process.env, ...env },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr, ms: Math.round(performance.now() - started) };
}

/** The JSON log lines of a run's stderr. */
export function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A count from `sluice replay`'s summary (`  inserted    12`). */
export function summaryField(stdout: string, name: string): number {
  const m = new RegExp(`^\\s+${name}\\s+(\\d+)`, 'm').exec(stdout);
  if (m?.[1] === undefined) throw new Error(`no "${name}" in:\n${stdout}`);
  return Number(m[1]);
}
