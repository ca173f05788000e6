export interface PromtoolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real promtool. A missing promtool throws, so the ops tests fail (never skip) and say how
 * to get it.
 */
export async function promtool(args: string[], stdin?: string): Promise<PromtoolResult> {
  const bin = Bun.which('promtool');
  if (bin === null) {
    throw new Error('promtool is not in PATH: install the Debian package `prometheus` (apt-get install -y prometheus)');
  }
  const proc = Bun.spawn({
    cmd: [bin, ...args],
    stdin: stdin === undefined ? 'ignore' : new TextEncoder().encode(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { exitCode, stdout, stderr };
}
