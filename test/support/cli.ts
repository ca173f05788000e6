import { join } from 'node:path';

const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `sluice <args>` as a real child process to its end. */
export async function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const proc = Bun.spawn({ cmd: ['bun', CLI, ...args], env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'pipe' });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

/** A count from `sluice replay`'s summary (`  inserted    12`). */
export function summaryField(stdout: string, name: string): number {
  const m = new RegExp(`^\\s+${name}\\s+(\\d+)`, 'm').exec(stdout);
  if (m?.[1] === undefined) throw new Error(`no "${name}" in:\n${stdout}`);
  return Number(m[1]);
}
