import { createWriteStream } from 'node:fs';
import type { Subprocess } from 'bun';
import { statusMiB } from './proc.ts';

export interface ServerProcess {
  readonly url: string;
  readonly pid: number;
  /** The process's own peak RSS so far (VmHWM). */
  peakRssMiB(): number;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;

/**
 * Starts a server as a child process and waits for the line announcing its URL. Both output streams
 * go to `logPath`, so a failed start can be read there and a chatty child never blocks on a full pipe.
 */
export async function startServer(opts: {
  cmd: string[];
  env: Record<string, string | undefined>;
  cwd: string;
  logPath: string;
  /** Matches the line that announces the URL; group 1 is the URL. */
  ready: RegExp;
}): Promise<ServerProcess> {
  const log = createWriteStream(opts.logPath);
  const child: Subprocess<'ignore', 'pipe', 'pipe'> = Bun.spawn({
    cmd: opts.cmd,
    cwd: opts.cwd,
    env: opts.env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const { promise: announced, resolve, reject } = Promise.withResolvers<string>();
  const pumps = Promise.all([child.stdout, child.stderr].map((s) => pump(s, log, opts.ready, resolve)));
  void child.exited.then((code) => reject(new Error(`${opts.cmd.join(' ')} exited with ${code} before it was ready; see ${opts.logPath}`)));
  const timer = setTimeout(() => reject(new Error(`${opts.cmd.join(' ')} not ready after ${START_TIMEOUT_MS} ms; see ${opts.logPath}`)), START_TIMEOUT_MS);
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 20_000): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await child.exited;
        clearTimeout(killer);
      }
      await pumps;
      await new Promise<void>((done) => log.end(() => done()));
    })();
    return stopping;
  };
  let url: string;
  try {
    url = await announced;
  } catch (err) {
    await stop(1_000);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return { url, pid: child.pid, peakRssMiB: () => statusMiB(child.pid, 'VmHWM'), stop };
}

async function pump(
  stream: ReadableStream<Uint8Array>,
  sink: ReturnType<typeof createWriteStream>,
  ready: RegExp,
  found: (url: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let partial = '';
  let seen = false;
  for await (const chunk of stream) {
    sink.write(chunk);
    if (seen) continue;
    partial += decoder.decode(chunk, { stream: true });
    const match = ready.exec(partial);
    if (match?.[1] !== undefined) {
      seen = true;
      found(match[1]);
    }
    partial = partial.slice(partial.lastIndexOf('\n') + 1);
  }
}
