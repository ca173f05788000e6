import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS } from '../src/cli-commands.ts';
import { testBrokers } from './support/kafka.ts';
import { freePort as closedPort, silentPort } from './support/ports.ts';
import { createTestDatabase, type TestDatabase } from './support/postgres.ts';

const CLI = join(import.meta.dir, '..', 'src', 'cli.ts');

/** The test runner's environment without any sluice setting, so each test says exactly what it sets. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('SLUICE_') && k !== 'DATABASE_URL' && k !== 'KAFKA_BROKERS') env[k] = v;
  }
  return { ...env, ...extra };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function sluice(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const started = performance.now();
  const proc = Bun.spawn({ cmd: ['bun', CLI, ...args], env: cleanEnv(env), stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr, ms: Math.round(performance.now() - started) };
}

/** Runs `fn` over `items`, four at a time: each is a process start, mostly waiting on the CPU. */
async function inParallel<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < items.length; i = next++) results[i] = await fn(items[i] as T);
    }),
  );
  return results;
}

function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'sluice-cli-commands-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the command line', () => {
  test('--help on every command prints its usage and exits 0 without starting anything', async () => {
    // An unreachable database: a command that ran instead of printing help would fail on it.
    const env = { DATABASE_URL: `postgres://postgres@127.0.0.1:${await closedPort()}/none` };
    const cases = [...COMMANDS.map((c) => [...c.name.split(' '), '--help']), ['journal', '--help'], ['serve', '-h'], ['replay', 'x.jsonl', '-h']];
    const runs = await inParallel(cases, (args) => sluice(args, env));
    runs.forEach((r, i) => {
      const args = cases[i] ?? [];
      const name = args[0] === 'journal' ? 'journal verify' : (COMMANDS.find((c) => args.join(' ').startsWith(c.name))?.name ?? '?');
      const usage = r.stdout.startsWith(`usage: sluice ${name}`);
      expect({ cmd: args.join(' '), code: r.code, usage, stderr: r.stderr }).toEqual({ cmd: args.join(' '), code: 0, usage: true, stderr: '' });
    });
    const top = await sluice(['--help']);
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.stdout).toContain(`  ${c.name} `);
    expect((await sluice(['help', 'replay'])).stdout).toStartWith('usage: sluice replay');
  }, 120_000);

  test('--version prints the version from package.json', async () => {
    const pkg = (await Bun.file(join(import.meta.dir, '..', 'package.json')).json()) as { version: string };
    for (const flag of ['--version', '-v', 'version']) {
      const r = await sluice([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(`sluice ${pkg.version} (bun ${Bun.version})`);
    }
  });

  test('wrong arguments exit 2 with the command usage on stderr', async () => {
    const cases: [string[], string][] = [
      [['serve', 'extra'], 'usage: sluice serve'],
      [['migrate', '--force'], 'usage: sluice migrate'],
      [['replay'], 'usage: sluice replay'],
      [['replay', 'x.jsonl', '--since'], 'usage: sluice replay'],
      [['replay', 'x.jsonl', '--bogus'], 'usage: sluice replay'],
      [['journal', 'verify'], 'usage: sluice journal verify'],
      [['journal', 'verify', 'a', 'b'], 'usage: sluice journal verify'],
      [['kafka-local', '--nope'], 'usage: sluice kafka-local'],
      [['check', 'now'], 'usage: sluice check'],
      [['serv'], 'usage: sluice <command>'],
      [['journal', 'check'], 'usage: sluice <command>'],
      [[], 'usage: sluice <command>'],
    ];
    const runs = await inParallel(cases, ([args]) => sluice(args));
    runs.forEach((r, i) => {
      const [args, usage] = cases[i] ?? [[], ''];
      expect({ args, code: r.code, usage: r.stderr.includes(usage), stdout: r.stdout }).toEqual({ args, code: 2, usage: true, stdout: '' });
    });
  }, 60_000);
});

describe('configuration that checks itself', () => {
  test('a misspelt SLUICE_ variable stops the start with exit 2 and a did-you-mean', async () => {
    const r = await sluice(['serve'], { SLUICE_WRTIE_MODE: 'fast_ack', SLUICE_JOURNALDIR: '/tmp/j', SLUICE_COLOUR: 'blue' });
    expect(r.code).toBe(2);
    const [line] = logLines(r.stderr);
    expect(line?.msg).toBe('invalid configuration');
    expect(line?.errors).toEqual([
      'SLUICE_COLOUR is not a sluice setting: remove it, or see README.md#configuration for the settings',
      'SLUICE_JOURNALDIR is not a sluice setting: did you mean SLUICE_JOURNAL_DIR?',
      'SLUICE_WRTIE_MODE is not a sluice setting: did you mean SLUICE_WRITE_MODE?',
    ]);
  });

  test('an unreachable database stops serve within seconds, naming DATABASE_URL and the fix', async () => {
    const port = await closedPort();
    const r = await sluice(['serve'], { DATABASE_URL: `postgres://postgres:secret@127.0.0.1:${port}/db`, KAFKA_BROKERS: '127.0.0.1:1', SLUICE_JOURNAL_DIR: join(scratch, 'j1') });
    expect(r.code).toBe(1);
    const errors = logLines(r.stderr).filter((l) => l.level === 'error');
    expect(errors.map((l) => [l.msg, l.code])).toEqual([['sluice cannot start', 'outbox_unavailable']]);
    expect(String(errors[0]?.error)).toBe(
      `DATABASE_URL postgres://postgres:***@127.0.0.1:${port}/db: connection refused (nothing listens there): start Postgres there, or fix the host and port in DATABASE_URL`,
    );
    expect(r.stderr).not.toContain('secret');
  });

  test('a database that never answers is given up after 5 s with a message, not 90 s of silence (migrate, replay)', async () => {
    const silent = await silentPort();
    try {
      for (const args of [['migrate'], ['replay', join(scratch, 'none-*.jsonl')]]) {
        const r = await sluice(args, { DATABASE_URL: `postgres://postgres@127.0.0.1:${silent.port}/db` });
        expect(r.code).toBe(1);
        const errors = logLines(r.stderr).filter((l) => l.level === 'error');
        expect(errors.map((l) => [l.msg, l.code])).toEqual([['sluice cannot start', 'outbox_unavailable']]);
        expect(String(errors[0]?.error)).toContain(`DATABASE_URL postgres://postgres@127.0.0.1:${silent.port}/db: no answer within 5s`);
        console.log(`${args[0]} against a database that never answers: gave up after ${r.ms} ms`);
        expect(r.ms).toBeLessThan(30_000);
      }
    } finally {
      silent.close();
    }
  }, 70_000);

  test('an unwritable journal directory stops serve before anything starts, naming SLUICE_JOURNAL_DIR', async () => {
    const file = join(scratch, 'a-file');
    writeFileSync(file, 'not a directory');
    // No KAFKA_BROKERS and no DATABASE_URL: had the journal been checked late, a broker would start first.
    const r = await sluice(['serve'], { SLUICE_JOURNAL_DIR: join(file, 'journal'), SLUICE_DATA_DIR: join(scratch, 'data1'), SLUICE_NODE_ID: 'vm' });
    expect(r.code).toBe(1);
    const lines = logLines(r.stderr);
    expect(lines.map((l) => l.msg)).toEqual(['sluice cannot start']);
    expect(lines[0]?.error).toBe(
      `SLUICE_JOURNAL_DIR ${join(file, 'journal', 'vm')}: a file is in the way (not a directory): point SLUICE_JOURNAL_DIR at a directory sluice can write`,
    );
  });

  test('process without its settings says once which ones it needs', async () => {
    const r = await sluice(['process']);
    expect(r.code).toBe(2);
    const lines = logLines(r.stderr);
    expect(lines.length).toBe(1);
    const errors = lines[0]?.errors as string[];
    expect(errors.map((e) => e.split(' ')[0])).toEqual(['DATABASE_URL', 'KAFKA_BROKERS']);
    expect(new Set(errors).size).toBe(2);
  });

  test('TLS needs both files: one alone is a configuration error naming the other', async () => {
    const r = await sluice(['serve'], { SLUICE_TLS_CERT_FILE: '/etc/sluice/cert.pem' });
    expect(r.code).toBe(2);
    expect(logLines(r.stderr)[0]?.errors).toEqual(['SLUICE_TLS_KEY_FILE must be set with SLUICE_TLS_CERT_FILE: TLS needs both the certificate and its key (PEM files)']);
  });
});

describe('sluice check', () => {
  let db: TestDatabase;
  let brokers: string[];
  // The first test file to need the shared broker starts it: give that the time a cold broker takes.
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    brokers = await testBrokers();
  }, 120_000);
  afterAll(async () => {
    await db?.drop();
  });

  test('all good: one ok line per component, exit 0', async () => {
    const r = await sluice(['check'], { DATABASE_URL: db.url, KAFKA_BROKERS: brokers.join(','), SLUICE_JOURNAL_DIR: join(scratch, 'j-ok') });
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.slice(0, 16).trim())).toEqual(['config     ok', 'tenants    ok', 'journal    ok', 'database   ok', 'kafka      ok']);
    expect(lines[3]).toContain('postgres 15');
    expect(lines[4]).toMatch(/1 broker\(s\), cluster \S+/);
    expect(r.code).toBe(0);
  }, 60_000);

  test('every broken component is a FAIL line naming its setting; a silent database times out', async () => {
    const silent = await silentPort();
    const kafkaPort = await closedPort();
    const tenants = join(scratch, 'tenants.json');
    writeFileSync(tenants, JSON.stringify({ tenants: { acme: { tokens: ['nope'] } } }));
    try {
      const r = await sluice(['check', '--timeout-ms', '1500'], {
        DATABASE_URL: `postgres://postgres@127.0.0.1:${silent.port}/db`,
        KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
        SLUICE_JOURNAL_DIR: '/proc/sluice-journal',
        SLUICE_TENANTS_FILE: tenants,
      });
      expect(r.code).toBe(1);
      const lines = r.stdout.trim().split('\n');
      expect(lines.map((l) => l.slice(0, 16).trim())).toEqual(['config     ok', 'tenants    FAIL', 'journal    FAIL', 'database   FAIL', 'kafka      FAIL']);
      expect(lines[1]).toContain('SLUICE_TENANTS_FILE');
      expect(lines[2]).toContain('SLUICE_JOURNAL_DIR /proc/sluice-journal');
      expect(lines[3]).toContain(`DATABASE_URL postgres://postgres@127.0.0.1:${silent.port}/db: no answer within 1.5s`);
      expect(lines[4]).toBe(`kafka      FAIL  KAFKA_BROKERS 127.0.0.1:${kafkaPort}: connection refused (nothing listens there): start Kafka there, or fix KAFKA_BROKERS`);
    } finally {
      silent.close();
    }
  }, 60_000);

  test('invalid configuration: a FAIL line per problem and exit 2', async () => {
    const r = await sluice(['check'], { SLUICE_PORT: 'eighty', SLUICE_WRTIE_MODE: 'sync' });
    expect(r.code).toBe(2);
    expect(r.stdout.trim().split('\n')).toEqual([
      'config     FAIL  SLUICE_WRTIE_MODE is not a sluice setting: did you mean SLUICE_WRITE_MODE?',
      'config     FAIL  SLUICE_PORT must be a number',
    ]);
  });
});

describe('never a foreign broker', () => {
  test('kafka-local on a taken port fails loudly (exit 1) instead of reporting ready', async () => {
    const holder = await silentPort();
    try {
      const r = await sluice(['kafka-local', '--port', String(holder.port)]);
      expect(r.code).toBe(1);
      const lines = logLines(r.stderr);
      expect(lines.some((l) => l.msg === 'kafka ready')).toBe(false);
      expect(JSON.stringify(lines.find((l) => l.msg === 'kafka failed'))).toContain(`port ${holder.port} on 127.0.0.1 is already in use`);
    } finally {
      holder.close();
    }
  });

  test('serve without KAFKA_BROKERS stops when its local broker port is taken, naming SLUICE_KAFKA_LOCAL_PORT', async () => {
    const holder = await silentPort();
    try {
      const r = await sluice(['serve'], {
        SLUICE_KAFKA_LOCAL_PORT: String(holder.port),
        SLUICE_JOURNAL_DIR: join(scratch, 'j-foreign'),
        SLUICE_DATA_DIR: join(scratch, 'data-foreign'),
        SLUICE_PORT: '0',
      });
      expect(r.code).toBe(1);
      const lines = logLines(r.stderr);
      expect(lines.some((l) => l.msg === 'local kafka ready' || l.msg === 'sluice listening')).toBe(false);
      const error = lines.find((l) => l.msg === 'sluice cannot start');
      expect(error?.code).toBe('kafka_unavailable');
      expect(String(error?.error)).toStartWith(`SLUICE_KAFKA_LOCAL_PORT ${holder.port}: the local Kafka broker did not start: port ${holder.port} on 127.0.0.1 is already in use`);
    } finally {
      holder.close();
    }
  }, 60_000);
});
