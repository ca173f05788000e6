import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS } from '../src/cli-commands.ts';
import { type CliResult, logLines, runCli } from './support/cli.ts';
import { testBrokers } from './support/kafka.ts';
import { freePort as closedPort, silentPort } from './support/ports.ts';
import { createTestDatabase, type TestDatabase } from './support/postgres.ts';
import { makeCertificate } from './support/tls.ts';

/** `sluice <args>` as a child process, with only the sluice settings the test gives. */
const sluice = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCli(args, env, { clean: true });

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
    // A file to replay: with nothing matched, replay says so before it opens a database.
    const journalFile = join(scratch, 'silent-db.jsonl');
    writeFileSync(journalFile, '');
    try {
      for (const args of [['migrate'], ['replay', journalFile]]) {
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
    const r = await sluice(['check'], { DATABASE_URL: db.url, KAFKA_BROKERS: brokers.join(','), SLUICE_JOURNAL_DIR: join(scratch, 'j-ok'), SLUICE_PORT: '0' });
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.slice(0, 16).trim())).toEqual(['config     ok', 'tenants    ok', 'journal    ok', 'database   ok', 'kafka      ok', 'listen     ok']);
    expect(lines[3]).toContain('postgres 15');
    expect(lines[4]).toMatch(/1 broker\(s\), cluster \S+/);
    expect(r.code).toBe(0);
  }, 60_000);

  test('every broken component is a FAIL line naming its setting; a silent database times out', async () => {
    const silent = await silentPort();
    const kafkaPort = await closedPort();
    // Missing, not broken: a broken file is invalid configuration, which check reports with exit 2.
    const tenants = join(scratch, 'tenants-not-there.json');
    try {
      const r = await sluice(['check', '--timeout-ms', '1500'], {
        DATABASE_URL: `postgres://postgres@127.0.0.1:${silent.port}/db`,
        KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
        SLUICE_JOURNAL_DIR: '/proc/sluice-journal',
        SLUICE_TENANTS_FILE: tenants,
        SLUICE_PORT: '0',
      });
      expect(r.code).toBe(1);
      const lines = r.stdout.trim().split('\n');
      expect(lines.map((l) => l.slice(0, 16).trim())).toEqual(['config     ok', 'tenants    FAIL', 'journal    FAIL', 'database   FAIL', 'kafka      FAIL', 'listen     ok']);
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
      'config     FAIL  SLUICE_PORT must be a whole number in decimal digits (no sign, exponent, 0x or spaces)',
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

describe('usage errors exit 2 with the usage', () => {
  const usageOf = (name: string): string => COMMANDS.find((c) => c.name === name)?.usage ?? '';

  test('check --timeout-ms takes a positive whole number, never silently 5000', async () => {
    const cases = [['abc', 'not "abc"'], ['0', 'not "0"'], ['1.5', 'not "1.5"'], ['1e3', 'not "1e3"']];
    const runs = await inParallel(cases, ([value]) => sluice(['check', '--timeout-ms', value ?? '']));
    runs.forEach((r, i) => {
      const [, said] = cases[i] ?? [];
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
        code: 2,
        stdout: '',
        stderr: `sluice check: --timeout-ms must be a whole number from 1 to 600000, ${said}\n\n${usageOf('check')}\n`,
      });
    });
    // `-1` reads as an option to node's parser: still a usage error, not a default.
    const negative = await sluice(['check', '--timeout-ms', '-1']);
    expect({ code: negative.code, usage: negative.stderr.endsWith(`\n\n${usageOf('check')}\n`), stdout: negative.stdout }).toEqual({ code: 2, usage: true, stdout: '' });
  }, 60_000);

  test('kafka-local --port must be a port number; --version takes no argument', async () => {
    const port = await sluice(['kafka-local', '--port', 'http']);
    expect({ code: port.code, stdout: port.stdout, stderr: port.stderr }).toEqual({
      code: 2,
      stdout: '',
      stderr: `sluice kafka-local: --port must be a whole number from 1 to 65535, not "http"\n\n${usageOf('kafka-local')}\n`,
    });
    const version = await sluice(['--version', 'extra']);
    expect({ code: version.code, stdout: version.stdout, usage: version.stderr.startsWith('sluice --version: unexpected argument extra\n\nusage: sluice <command>') }).toEqual({ code: 2, stdout: '', usage: true });
  });
});

describe('exit codes: 2 is invalid configuration or usage, 1 an environment that may yet change', () => {
  test('a database that never answers stops serve within the 5 s the message names, even with a local broker to start', async () => {
    const silent = await silentPort();
    try {
      // No KAFKA_BROKERS: had the database been probed beside the broker start, its exit would wait for the broker.
      const brokerPort = await closedPort();
      const run = (port: number, name: string): Promise<CliResult> =>
        sluice(['serve'], {
          DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/db`,
          SLUICE_JOURNAL_DIR: join(scratch, `j-${name}`),
          SLUICE_DATA_DIR: join(scratch, `data-${name}`),
          SLUICE_KAFKA_LOCAL_PORT: String(brokerPort),
          SLUICE_PORT: '0',
        });
      // Side by side with a refused database, which fails at once: the difference is the wait itself,
      // whatever the process start costs on a loaded machine.
      const [r, refused] = await Promise.all([run(silent.port, 'silent'), run(await closedPort(), 'refused')]);
      console.log(`serve against a database that never answers: exit after ${r.ms} ms; a refused one: ${refused.ms} ms`);
      expect(r.code).toBe(1);
      expect(logLines(r.stderr).map((l) => [l.msg, l.code, l.error])).toEqual([
        [
          'sluice cannot start',
          'outbox_unavailable',
          `DATABASE_URL postgres://postgres@127.0.0.1:${silent.port}/db: no answer within 5s: the connection was accepted, but nothing answered as Postgres (another service on that port, or an overloaded server): check the port in DATABASE_URL`,
        ],
      ]);
      // Neither started the broker: nothing but the database to wait for.
      expect([refused.code, logLines(refused.stderr).map((l) => l.msg)]).toEqual([1, ['sluice cannot start']]);
      // The 5 s wait beyond what a process start costs (which alone took up to 9 s on this loaded
      // 2-core machine: hence no bound on r.ms itself); waiting out a broker start added 7-12 s more.
      expect(r.ms - refused.ms).toBeLessThan(8_000);
    } finally {
      silent.close();
    }
  }, 30_000);

  test('a busy HTTP port exits 1, so a supervisor retries it', async () => {
    const holder = await silentPort();
    try {
      const db = await createTestDatabase({ migrate: false });
      try {
        const r = await sluice(['ingest'], { DATABASE_URL: db.url, SLUICE_PORT: String(holder.port), SLUICE_JOURNAL_DIR: join(scratch, 'j-busy') });
        expect(r.code).toBe(1);
        const errors = logLines(r.stderr).filter((l) => l.level === 'error');
        expect(errors.map((l) => [l.msg, l.code])).toEqual([['sluice cannot start', 'address_unavailable']]);
        expect(String(errors[0]?.error)).toBe(
          `SLUICE_HOST 127.0.0.1 / SLUICE_PORT ${holder.port}: cannot listen: Failed to start server. Is port ${holder.port} in use?: stop what holds the port, or set SLUICE_PORT (and SLUICE_HOST) to an address this host can bind`,
        );
      } finally {
        await db.drop();
      }
    } finally {
      holder.close();
    }
  }, 60_000);

  test('a tenants file: check and serve agree, 2 for a broken one, 1 for a missing one', async () => {
    const broken = join(scratch, 'broken-tenants.json');
    writeFileSync(broken, '{"tenants": ');
    const missing = join(scratch, 'no-such-tenants.json');
    const base = { SLUICE_JOURNAL_DIR: join(scratch, 'j-tenants'), SLUICE_DATA_DIR: join(scratch, 'data-tenants'), SLUICE_KAFKA_LOCAL_PORT: String(await closedPort()) };
    const [checkBroken, serveBroken, checkMissing, serveMissing] = await Promise.all([
      sluice(['check', '--timeout-ms', '500'], { ...base, SLUICE_TENANTS_FILE: broken }),
      sluice(['serve'], { ...base, SLUICE_TENANTS_FILE: broken }),
      sluice(['check', '--timeout-ms', '500'], { ...base, SLUICE_TENANTS_FILE: missing }),
      sluice(['serve'], { ...base, SLUICE_TENANTS_FILE: missing }),
    ]);
    expect([checkBroken.code, serveBroken.code, checkMissing.code, serveMissing.code]).toEqual([2, 2, 1, 1]);
    // The place too: Bun's JSON.parse says only what went wrong.
    const brokenText = `SLUICE_TENANTS_FILE ${broken}: not JSON at line 1, column 13 (JSON Parse error: Unexpected EOF): fix the file there (its format: README.md#authentication)`;
    expect(checkBroken.stdout.split('\n')[1]).toBe(`tenants    FAIL  ${brokenText}`);
    expect(logLines(serveBroken.stderr).map((l) => [l.msg, l.errors])).toEqual([['invalid configuration', [brokenText]]]);
    const missingText = `SLUICE_TENANTS_FILE ${missing}: ENOENT: point SLUICE_TENANTS_FILE at a readable tenants file`;
    expect(checkMissing.stdout.split('\n')[1]).toBe(`tenants    FAIL  ${missingText}`);
    expect(logLines(serveMissing.stderr).map((l) => [l.msg, l.code, l.error])).toEqual([['sluice cannot start', 'file_unavailable', missingText]]);
  }, 60_000);

  test('check: a TLS key that is not the certificate\'s fails naming both settings (exit 2); a missing file exit 1', async () => {
    const a = await makeCertificate(scratch, 'check-a');
    const b = await makeCertificate(scratch, 'check-b');
    // Port 0, and a local broker port each: three checks side by side would race for one fixed port
    // (each binds its broker port to see that it is free; CI once saw a sibling's bind as 'in use').
    const base = { SLUICE_JOURNAL_DIR: join(scratch, 'j-tls'), SLUICE_DATA_DIR: join(scratch, 'data-tls'), SLUICE_PORT: '0' };
    const brokerPort = async (): Promise<{ SLUICE_KAFKA_LOCAL_PORT: string }> => ({ SLUICE_KAFKA_LOCAL_PORT: String(await closedPort()) });
    // The other components' probes get time enough on a loaded machine: only the tls line is under test.
    const check = ['check', '--timeout-ms', '20000'];
    const [mismatch, missing, good] = await Promise.all([
      sluice(check, { ...base, ...(await brokerPort()), SLUICE_TLS_CERT_FILE: a.cert, SLUICE_TLS_KEY_FILE: b.key }),
      sluice(check, { ...base, ...(await brokerPort()), SLUICE_TLS_CERT_FILE: a.cert, SLUICE_TLS_KEY_FILE: join(scratch, 'none.key') }),
      sluice(check, { ...base, ...(await brokerPort()), SLUICE_TLS_CERT_FILE: a.cert, SLUICE_TLS_KEY_FILE: a.key }),
    ]);
    const tlsLine = (r: CliResult): string | undefined => r.stdout.split('\n').find((l) => l.startsWith('tls '));
    expect({ code: mismatch.code, line: tlsLine(mismatch) }).toEqual({
      code: 2,
      line: `tls        FAIL  SLUICE_TLS_KEY_FILE ${b.key} is not the key of the certificate in SLUICE_TLS_CERT_FILE ${a.cert}: point SLUICE_TLS_KEY_FILE at that certificate's key, or SLUICE_TLS_CERT_FILE at the certificate issued for this key`,
    });
    expect({ code: missing.code, line: tlsLine(missing) }).toEqual({
      code: 1,
      line: `tls        FAIL  SLUICE_TLS_KEY_FILE ${join(scratch, 'none.key')}: ENOENT: point SLUICE_TLS_KEY_FILE at a readable PEM file`,
    });
    const failed = (r: CliResult): string[] => r.stdout.split('\n').filter((l) => l.includes(' FAIL '));
    expect({ code: good.code, line: tlsLine(good), failed: failed(good) }).toEqual({ code: 0, line: `tls        ok    ${a.cert} and its key ${a.key} are a matching PEM pair`, failed: [] });
  }, 60_000);

  test('misplaced, misspelt and empty variables, hexadecimal numbers and a backoff above its cap: exit 2, each named', async () => {
    const r = await sluice(['serve'], {
      SLUICE_DATABASE_URL: 'postgres://db/x',
      SLUICE_KAFKA_BROKERS: 'k:9092',
      sluice_write_mode: 'fast_ack',
      KAFKA_BROKER: 'k:9092',
      DATABASE_UR: 'postgres://db/x',
      SLUICE_PORT: '0x1F90',
      SLUICE_PARTITIONS: '1e3',
    });
    expect(r.code).toBe(2);
    expect(logLines(r.stderr).map((l) => [l.msg, l.errors])).toEqual([
      [
        'invalid configuration',
        [
          'DATABASE_UR is not a sluice setting: did you mean DATABASE_URL?',
          'KAFKA_BROKER is not a sluice setting: did you mean KAFKA_BROKERS?',
          'SLUICE_DATABASE_URL is not a sluice setting: did you mean DATABASE_URL?',
          'SLUICE_KAFKA_BROKERS is not a sluice setting: did you mean KAFKA_BROKERS?',
          'sluice_write_mode is not a sluice setting: did you mean SLUICE_WRITE_MODE?',
          'SLUICE_PORT must be a whole number in decimal digits (no sign, exponent, 0x or spaces)',
          'SLUICE_PARTITIONS must be a whole number in decimal digits (no sign, exponent, 0x or spaces)',
        ],
      ],
    ]);
    const empty = await sluice(['serve'], { KAFKA_BROKERS: '' });
    expect([empty.code, logLines(empty.stderr).map((l) => l.errors)]).toEqual([2, [['KAFKA_BROKERS is set but empty: give it a value, or unset it (unset = serve starts a local broker)']]]);
    const retry = await sluice(['check'], { SLUICE_RETRY_BASE_MS: '90000', SLUICE_RETRY_MAX_MS: '60000' });
    expect([retry.code, retry.stdout]).toEqual([
      2,
      'config     FAIL  SLUICE_RETRY_BASE_MS 90000 is above SLUICE_RETRY_MAX_MS 60000: the first retry would wait longer than the cap; lower SLUICE_RETRY_BASE_MS or raise SLUICE_RETRY_MAX_MS\n',
    ]);
  }, 60_000);

  test('ingest refuses the embedded database: no other process could ever publish its writes', async () => {
    const r = await sluice(['ingest'], { SLUICE_JOURNAL_DIR: join(scratch, 'j-ingest'), SLUICE_DATA_DIR: join(scratch, 'data-ingest') });
    expect(r.code).toBe(2);
    expect(logLines(r.stderr).map((l) => [l.msg, l.errors])).toEqual([
      [
        'invalid configuration',
        [
          'DATABASE_URL must be set for ingest: its writes are published by `sluice process` instances sharing its outbox, and the embedded database is private to this process, so nothing could ever publish them; set DATABASE_URL to the shared Postgres, or run `sluice serve` (ingest and processor in one process)',
        ],
      ],
    ]);
  });
});
