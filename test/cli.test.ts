import { describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTopic, testBrokers } from './support/kafka.ts';

const CLI = join(import.meta.dir, '..', 'src', 'cli.ts');

describe('sluice command line', () => {
  test('invalid configuration: exit code 2 and every bad variable named', async () => {
    const proc = Bun.spawn({
      cmd: ['bun', CLI, 'serve'],
      env: { ...process.env, SLUICE_PORT: 'eighty', SLUICE_PARTITIONS: '0', KAFKA_BROKERS: 'nohost', SLUICE_WRITE_MODE: 'yolo' },
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(code).toBe(2);
    const line = JSON.parse(stderr.trim().split('\n').at(-1) ?? '{}') as { level: string; msg: string; errors: string[] };
    expect(line.level).toBe('error');
    expect(line.msg).toBe('invalid configuration');
    const named = line.errors.map((e) => e.split(' ')[0]).sort();
    expect(named).toEqual(['KAFKA_BROKERS', 'SLUICE_PARTITIONS', 'SLUICE_PORT', 'SLUICE_WRITE_MODE']);
  });

  test('serve on the embedded database: accepts a write, publishes it, and exits 0 on SIGTERM', async () => {
    const brokers = await testBrokers();
    const dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    const topic = `cli.${Bun.randomUUIDv7()}`;
    const env: Record<string, string | undefined> = {
      ...process.env,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_PORT: '0',
      SLUICE_DATA_DIR: join(dir, 'data'),
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_KAFKA_TOPIC: topic,
      SLUICE_TRANSACTIONAL_ID_PREFIX: `cli-${Bun.randomUUIDv7()}`,
    };
    delete env.DATABASE_URL;
    const proc = Bun.spawn({ cmd: ['bun', CLI, 'serve'], env, stdout: 'pipe', stderr: 'pipe' });
    const logs: Record<string, unknown>[] = [];
    const url = await new Promise<string>((resolve, reject) => {
      const decoder = new TextDecoder();
      let buffer = '';
      void (async () => {
        for await (const chunk of proc.stderr) {
          buffer += decoder.decode(chunk, { stream: true });
          const lines = buffer.split('\n');
          buffer = lines.pop() ?? '';
          for (const l of lines) {
            if (!l.startsWith('{')) continue;
            const entry = JSON.parse(l) as Record<string, unknown>;
            logs.push(entry);
            if (entry.msg === 'sluice listening') resolve(String(entry.url));
          }
        }
        reject(new Error(`sluice exited before listening: ${JSON.stringify(logs)}`));
      })();
    });
    try {
      const res = await fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'cli' },
        body: JSON.stringify({ dedupe_key: 'k1', payload: { via: 'embedded' } }),
      });
      expect(res.status).toBe(202);
      expect(((await res.json()) as { durability: string }).durability).toBe('outbox');
      const records = await readTopic(brokers, topic, { expected: 1 });
      expect(records.map((r) => [r.key, r.value])).toEqual([['cli:k1', '{"via":"embedded"}']]);
      proc.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      expect(logs.some((l) => l.msg === 'shutdown complete')).toBe(true);
      expect(logs.find((l) => l.msg === 'sluice listening')?.database).toBe('embedded');
    } finally {
      proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
