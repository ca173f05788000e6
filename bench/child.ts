/** Runs a command to completion and returns its stdout; a non-zero exit throws with the output's tail. */
export async function childOutput(cmd: string[], env: Record<string, string | undefined> = process.env, timeoutMs = 600_000): Promise<string> {
  const proc = Bun.spawn({ cmd, env, stdout: 'pipe', stderr: 'pipe', timeout: timeoutMs, killSignal: 'SIGKILL' });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    const tail = `${out}${err}`.trimEnd().split('\n').slice(-30).join('\n');
    throw new Error(`${cmd[0]} exited with ${code}:\n${tail}`);
  }
  return out;
}

