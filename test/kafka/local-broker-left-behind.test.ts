import { afterAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, logLines, runCli } from '../support/cli.ts';
import { freePort } from '../support/ports.ts';
import { eventually } from '../support/sluice.ts';

/**
 * Issue 13 ("never a foreign broker"), after an outside test: a `kill -9` of a sluice left its local
 * broker's JVM running on the port, and every restart was refused; a `kafka-local` whose JVM died
 * exited 0 without a word.
 */
const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');
const LEFT_BEHIND = 'stopped a local Kafka broker an earlier sluice left running';
const scratch = mkdtempSync(join(tmpdir(), 'sluice-left-behind-'));
const started: Bun.Subprocess[] = [];
afterAll(() => {
  for (const proc of started) proc.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

interface Running {
  proc: Bun.Subprocess<'ignore', 'ignore', 'pipe'>;
  lines(): Record<string, unknown>[];
}

/** Starts `sluice <args>` and resolves once it logs `msg`; its later lines keep being collected. */
async function startUntil(args: string[], env: Record<string, string>, msg: string): Promise<Running> {
  const proc = Bun.spawn({ cmd: ['bun', CLI, ...args], env: cleanEnv(env), stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
  started.push(proc);
  let text = '';
  const decoder = new TextDecoder();
  const reader = proc.stderr.getReader();
  const lines = (): Record<string, unknown>[] => logLines(text);
  while (!lines().some((l) => l.msg === msg)) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`sluice ${args[0]} exited (code ${await proc.exited}) before logging "${msg}":\n${text}`);
    text += decoder.decode(value, { stream: true });
  }
  void (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true });
  })();
  return { proc, lines };
}

/** The broker's JVM, from the pid file it keeps in its data directory. */
function brokerJvm(dataDir: string): number {
  return Number(readFileSync(join(dataDir, 'broker.pid'), 'utf8').split(' ')[0]);
}

/** Running, as far as a port is concerned: a zombie has no command line and holds no socket. */
function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== '';
  } catch {
    return false;
  }
}

function watchdogOf(sluicePid: number): number {
  const found = Bun.spawnSync(['pgrep', '-P', String(sluicePid), '-f', 'sluice-kafka-watchdog']).stdout.toString().trim().split('\n');
  expect(found.length).toBe(1);
  return Number(found[0]);
}

async function killHard(proc: Bun.Subprocess): Promise<void> {
  proc.kill('SIGKILL');
  await proc.exited;
}

describe('a local broker never outlives its sluice, and never blocks its restart', () => {
  test('kafka-local: SIGKILLed, its JVM goes too; one left behind anyway is stopped by the next start; its JVM dying is exit 1', async () => {
    const port = await freePort();
    const dataDir = join(scratch, 'kafka-local');
    const args = ['kafka-local', '--port', String(port), '--data-dir', dataDir];

    const first = await startUntil(args, {}, 'kafka ready');
    const firstJvm = brokerJvm(dataDir);
    expect(running(firstJvm)).toBe(true);
    await killHard(first.proc);
    await eventually(async () => !running(firstJvm), 5_000, 'the JVM of a SIGKILLed kafka-local to go');

    // Its watchdog killed too (as a process-group kill would): the JVM stays, orphaned, on the port.
    const second = await startUntil(args, {}, 'kafka ready');
    const secondJvm = brokerJvm(dataDir);
    process.kill(watchdogOf(second.proc.pid), 'SIGKILL');
    await killHard(second.proc);
    expect(running(secondJvm)).toBe(true);

    const third = await startUntil(args, {}, 'kafka ready');
    expect(running(secondJvm)).toBe(false);
    expect(third.lines().filter((l) => l.msg === LEFT_BEHIND).map((l) => [l.level, l.pid])).toEqual([['warn', secondJvm]]);

    process.kill(brokerJvm(dataDir), 'SIGKILL');
    expect(await third.proc.exited).toBe(1);
    const last = third.lines().at(-1);
    expect([last?.level, last?.msg, (last?.error as { message?: string } | undefined)?.message]).toEqual([
      'error',
      'kafka failed',
      `the local Kafka broker on 127.0.0.1:${port} exited on its own (code 137)`,
    ]);
    expect(existsSync(join(dataDir, 'broker.pid'))).toBe(false);
  }, 240_000);

  test('anything else on the port is still refused, even with a pid file naming a live process', async () => {
    const holder = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
    const dataDir = join(scratch, 'foreign');
    try {
      mkdirSync(dataDir, { recursive: true });
      // This test process: alive, but no broker of this directory, so never signalled.
      writeFileSync(join(dataDir, 'broker.pid'), `${process.pid} 1\n`);
      const r = await runCli(['kafka-local', '--port', String(holder.port), '--data-dir', dataDir], {}, { clean: true });
      expect(r.code).toBe(1);
      const lines = logLines(r.stderr);
      expect(lines.map((l) => l.msg)).toEqual(['kafka failed']);
      expect(JSON.stringify(lines[0])).toContain(`port ${holder.port} on 127.0.0.1 is already in use by another process`);
    } finally {
      holder.stop(true);
    }
  }, 60_000);

  test('serve: SIGKILLed, its broker goes too; one left behind is reported by check and stopped by the next start', async () => {
    const dataDir = join(scratch, 'serve-data');
    const env = {
      SLUICE_PORT: '0',
      SLUICE_KAFKA_LOCAL_PORT: String(await freePort()),
      SLUICE_DATA_DIR: dataDir,
      SLUICE_JOURNAL_DIR: join(scratch, 'serve-journal'),
    };
    const brokerDir = join(dataDir, 'kafka');

    const first = await startUntil(['serve'], env, 'local kafka ready');
    const firstJvm = brokerJvm(brokerDir);
    await killHard(first.proc);
    await eventually(async () => !running(firstJvm), 5_000, 'the JVM of a SIGKILLed serve to go');

    const second = await startUntil(['serve'], env, 'local kafka ready');
    const secondJvm = brokerJvm(brokerDir);
    process.kill(watchdogOf(second.proc.pid), 'SIGKILL');
    await killHard(second.proc);
    expect(running(secondJvm)).toBe(true);

    const check = await runCli(['check', '--timeout-ms', '2000'], env, { clean: true });
    expect(check.stdout.split('\n').find((l) => l.startsWith('kafka '))).toBe(
      `kafka      ok    no KAFKA_BROKERS: serve starts a local broker on 127.0.0.1:${env.SLUICE_KAFKA_LOCAL_PORT} (SLUICE_KAFKA_LOCAL_PORT); it stops first the one an earlier sluice left running there (pid ${secondJvm})`,
    );

    const third = await startUntil(['serve'], env, 'local kafka ready');
    expect(running(secondJvm)).toBe(false);
    expect(third.lines().filter((l) => l.msg === LEFT_BEHIND).map((l) => [l.level, l.pid, l.data_dir])).toEqual([['warn', secondJvm, brokerDir]]);
    third.proc.kill('SIGTERM');
    expect(await third.proc.exited).toBe(0);
  }, 240_000);
});
