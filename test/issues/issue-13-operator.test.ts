import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CliResult, cleanEnv, logLines, runCli } from '../support/cli.ts';
import { freePort as closedPort, silentPort } from '../support/ports.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { mountSmallDisk } from '../support/small-disk.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice } from '../support/spawn-sluice.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';

const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');

/** Issue 13: what an operator following the README alone ran into. */
const sluice = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCli(args, env, { clean: true });

let scratch: string;
let db: TestDatabase;
beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'sluice-issue-13-'));
  db = await createTestDatabase({ migrate: false });
});
afterAll(async () => {
  await db?.drop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('a tenant topic that is or collides with a sluice topic is invalid configuration', () => {
  const cases: [string, string][] = [
    ['sluice.progress', 'is sluice\'s progress topic'],
    ['sluice_events', 'collides with topic sluice.events (Kafka treats . and _ alike)'],
    ['sluice_progress', 'collides with topic sluice.progress (Kafka treats . and _ alike)'],
  ];

  test('check and serve exit 2 naming SLUICE_TENANTS_FILE, tenants.<id>.topic and the rule', async () => {
    const base = { SLUICE_JOURNAL_DIR: join(scratch, 'j-topic'), SLUICE_DATA_DIR: join(scratch, 'data-topic'), SLUICE_KAFKA_LOCAL_PORT: String(await closedPort()) };
    for (const [topic, rule] of cases) {
      const file = join(scratch, `tenants-${topic}.json`);
      writeTenantsFile(file, { acme: { tokens: [newToken('acme')], topic } });
      const [check, serve] = await Promise.all([
        sluice(['check', '--timeout-ms', '500'], { ...base, SLUICE_TENANTS_FILE: file }),
        sluice(['serve'], { ...base, SLUICE_TENANTS_FILE: file }),
      ]);
      const text = `SLUICE_TENANTS_FILE ${file}: tenants.acme.topic ${topic} ${rule}`;
      expect([check.code, check.stdout.split('\n')[1]]).toEqual([2, `tenants    FAIL  ${text}`]);
      expect([serve.code, logLines(serve.stderr).map((l) => [l.msg, l.errors])]).toEqual([2, [['invalid configuration', [text]]]]);
    }
  }, 120_000);

  test('a SIGHUP with such a file is refused and logged; the file in force stays', async () => {
    const file = join(scratch, 'tenants-reload.json');
    const token = newToken('acme');
    writeTenantsFile(file, { acme: { tokens: [token], topic: 'acme.events' } });
    const node = await spawnSluice(
      { DATABASE_URL: db.url, SLUICE_PORT: '0', SLUICE_TENANTS_FILE: file, SLUICE_JOURNAL_DIR: join(scratch, 'j-reload'), SLUICE_NODE_ID: 'issue13-reload' },
      'ingest',
    );
    try {
      writeTenantsFile(file, { acme: { tokens: [token], topic: 'sluice_events' } });
      node.proc.kill('SIGHUP');
      const rejected = (): Record<string, unknown>[] => logLines(node.logLines().join('\n')).filter((l) => l.msg === 'tenants file rejected; keeping the previous one');
      await eventually(async () => rejected().length === 1, 10_000, 'the rejection logged');
      expect(rejected()[0]?.errors).toEqual([`SLUICE_TENANTS_FILE ${file}: tenants.acme.topic sluice_events collides with topic sluice.events (Kafka treats . and _ alike)`]);
      const res = await fetch(`${node.url}/v1/events`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ dedupe_key: 'k1', payload: {} }),
      });
      expect(res.status).toBe(202);
      // Still the old file's topic: the one a consumer reads.
      const rows = await db.sql<{ topic: string }[]>`SELECT topic FROM outbox WHERE tenant_id = 'acme' AND dedupe_key = 'k1'`;
      expect(rows.map((r) => r.topic)).toEqual(['acme.events']);
    } finally {
      node.proc.kill('SIGTERM');
      await node.proc.exited;
    }
  }, 60_000);

  test('regression (CI, loaded machine): a SIGHUP while starting neither ends the process nor is lost; it is done once started', async () => {
    const file = join(scratch, 'tenants-early-reload.json');
    const token = newToken('acme');
    writeTenantsFile(file, { acme: { tokens: [token], topic: 'acme.events' } });
    const fresh = await createTestDatabase({ migrate: false });
    const proc = Bun.spawn({
      cmd: ['bun', CLI, 'ingest'],
      env: { ...process.env, DATABASE_URL: fresh.url, SLUICE_PORT: '0', SLUICE_TENANTS_FILE: file, SLUICE_JOURNAL_DIR: join(scratch, 'j-early'), SLUICE_NODE_ID: 'issue13-early' },
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
    });
    try {
      let log = '';
      const decoder = new TextDecoder();
      const reader = proc.stderr.getReader();
      const readUntil = async (msg: string): Promise<void> => {
        while (!log.includes(`"msg":"${msg}"`)) {
          const { done, value } = await reader.read();
          if (done) throw new Error(`sluice exited (code ${await proc.exited}) before logging "${msg}":\n${log}`);
          log += decoder.decode(value, { stream: true });
        }
      };
      // The first migration is logged well before the start settles: the signal lands mid-start.
      await readUntil('migration applied');
      writeTenantsFile(file, { acme: { tokens: [token], topic: 'sluice_events' } });
      proc.kill('SIGHUP');
      await readUntil('sluice listening');
      await readUntil('tenants file rejected; keeping the previous one');
      const url = /"msg":"sluice listening"[^\n]*"url":"([^"]+)"/.exec(log)?.[1];
      const res = await fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ dedupe_key: 'k1', payload: {} }),
      });
      expect(res.status).toBe(202);
      const rows = await fresh.sql<{ topic: string }[]>`SELECT topic FROM outbox WHERE tenant_id = 'acme' AND dedupe_key = 'k1'`;
      expect(rows.map((r) => r.topic)).toEqual(['acme.events']);
      proc.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill('SIGKILL');
      await proc.exited;
      await fresh.drop();
    }
  }, 60_000);
});

describe('KAFKA_BROKERS ports', () => {
  test('a port outside 1-65535 is invalid configuration (exit 2) naming KAFKA_BROKERS, in check and serve', async () => {
    for (const brokers of ['127.0.0.1:99999', '127.0.0.1:0']) {
      const env = { KAFKA_BROKERS: brokers, SLUICE_JOURNAL_DIR: join(scratch, 'j-brokers') };
      const [check, serve] = await Promise.all([sluice(['check'], env), sluice(['serve'], env)]);
      expect([check.code, check.stdout.trim()]).toEqual([2, 'config     FAIL  KAFKA_BROKERS each broker port must be 1-65535']);
      expect(serve.code).toBe(2);
      expect(serve.stderr).toContain('KAFKA_BROKERS each broker port must be 1-65535');
      expect(serve.stderr).not.toContain('RangeError');
    }
  }, 60_000);
});

describe('the HTTP address is probed before anything slow starts', () => {
  test('a busy port: serve exits 1 before taking a partition, and check fails its listen line the same way', async () => {
    const holder = await silentPort();
    try {
      const env = {
        DATABASE_URL: db.url,
        KAFKA_BROKERS: `127.0.0.1:${await closedPort()}`,
        SLUICE_PORT: String(holder.port),
        SLUICE_JOURNAL_DIR: join(scratch, 'j-busy'),
      };
      const [serve, check] = await Promise.all([sluice(['serve'], env), sluice(['check', '--timeout-ms', '500'], env)]);
      const message = `SLUICE_HOST 127.0.0.1 / SLUICE_PORT ${holder.port}: cannot listen: Failed to start server. Is port ${holder.port} in use?: stop what holds the port, or set SLUICE_PORT (and SLUICE_HOST) to an address this host can bind`;
      expect([serve.code, logLines(serve.stderr).map((l) => [l.msg, l.code, l.error])]).toEqual([1, [['sluice cannot start', 'address_unavailable', message]]]);
      expect(check.code).toBe(1);
      expect(check.stdout.split('\n').find((l) => l.startsWith('listen '))).toBe(`listen     FAIL  ${message}`);
    } finally {
      holder.close();
    }
  }, 60_000);
});

describe('check fails where serve would', () => {
  test('SLUICE_PARTITIONS other than the outbox recorded: the database line and exit 2, as serve', async () => {
    const recorded = await createTestDatabase();
    try {
      await recorded.sql`UPDATE outbox_identity SET partitions = 16`;
      const env = { DATABASE_URL: recorded.url, KAFKA_BROKERS: `127.0.0.1:${await closedPort()}`, SLUICE_PARTITIONS: '8', SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(scratch, 'j-parts') };
      const [check, serve] = await Promise.all([sluice(['check', '--timeout-ms', '3000'], env), sluice(['serve'], env)]);
      const message = 'SLUICE_PARTITIONS is 8, but this outbox places its rows in 16 partitions: run every sluice of this outbox (serve, ingest, process, replay) with SLUICE_PARTITIONS=16';
      expect(serve.code).toBe(2);
      expect(serve.stderr).toContain(message);
      expect([check.code, check.stdout.split('\n').find((l) => l.startsWith('database '))]).toEqual([2, `database   FAIL  ${message}`]);
      const agreeing = await sluice(['check', '--timeout-ms', '3000'], { ...env, SLUICE_PARTITIONS: '16' });
      expect(agreeing.stdout.split('\n').find((l) => l.startsWith('database '))).toStartWith('database   ok    postgres 15');
    } finally {
      await recorded.drop();
    }
  }, 60_000);

  test('a journal disk with less room than SLUICE_MAX_BODY_BYTES fails the journal line (exit 1), as /readyz does', async () => {
    const disk = mountSmallDisk(4 * 1024 * 1024);
    try {
      disk.fill(256 * 1024);
      const r = await sluice(['check', '--timeout-ms', '500'], { SLUICE_JOURNAL_DIR: disk.dir, SLUICE_NODE_ID: 'n1', SLUICE_MAX_BODY_BYTES: String(1024 * 1024), SLUICE_PORT: '0', SLUICE_DATA_DIR: join(scratch, 'data-disk') });
      expect(r.code).toBe(1);
      expect(r.stdout.split('\n').find((l) => l.startsWith('journal '))).toMatch(
        new RegExp(`^journal    FAIL  SLUICE_JOURNAL_DIR ${disk.dir}/n1: journal disk full: \\d+ bytes free, a request may need 1048576: free space there, or point SLUICE_JOURNAL_DIR at a disk with room$`),
      );
    } finally {
      disk.unmount();
    }
  }, 60_000);
});

describe('a signal during start-up', () => {
  /** Starts serve on a fresh database and sends `signal` as soon as the start is under way (its first migration). */
  async function signalDuringStart(signal: 'SIGTERM' | 'SIGINT'): Promise<{ code: number; msgs: unknown[] }> {
    const fresh = await createTestDatabase({ migrate: false });
    try {
      const proc = Bun.spawn({
        cmd: ['bun', join(import.meta.dir, '..', '..', 'src', 'cli.ts'), 'serve'],
        env: cleanEnv({ DATABASE_URL: fresh.url, KAFKA_BROKERS: `127.0.0.1:${await closedPort()}`, SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(scratch, `j-${signal}`) }),
        stdin: 'ignore',
        stdout: 'ignore',
        stderr: 'pipe',
      });
      const decoder = new TextDecoder();
      let text = '';
      let sent = false;
      for await (const chunk of proc.stderr) {
        text += decoder.decode(chunk, { stream: true });
        if (!sent && text.includes('"msg":"migration applied"')) {
          sent = true;
          proc.kill(signal);
        }
      }
      // The node's own lines: with its processor in a process of its own, its processes log theirs too.
      return { code: await proc.exited, msgs: logLines(text).filter((l) => l.worker === undefined).map((l) => l.msg) };
    } finally {
      await fresh.drop();
    }
  }

  test('SIGTERM and SIGINT stop what started once the start settles: exit 0, shutdown logged', async () => {
    const [term, int] = await Promise.all([signalDuringStart('SIGTERM'), signalDuringStart('SIGINT')]);
    for (const r of [term, int]) {
      expect(r.code).toBe(0);
      expect(r.msgs.slice(-2)).toEqual(['shutting down', 'shutdown complete']);
    }
  }, 60_000);
});

describe('journal commands on a path that is not there', () => {
  test('journal verify names the path (exit 1); journal alone prints its usage (exit 2); replay opens no database when nothing matches', async () => {
    const missing = join(scratch, 'no-such-journal');
    // A database that does not answer: a replay that opened one first would fail on it, not on the files.
    const env = { DATABASE_URL: `postgres://postgres@127.0.0.1:${await closedPort()}/none` };
    const [verify, bare, replay] = await Promise.all([sluice(['journal', 'verify', missing], env), sluice(['journal'], env), sluice(['replay', missing], env)]);
    expect([verify.code, verify.stderr]).toEqual([1, `sluice journal verify: ${missing}: ENOENT: point it at a journal directory (SLUICE_JOURNAL_DIR, or one node's directory in it)\n`]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toStartWith('sluice journal: which subcommand?\n\nusage: sluice journal verify <dir>');
    expect([replay.code, replay.stderr]).toEqual([1, `replay: no journal files matched ${missing}\n`]);
  }, 60_000);
});

describe('what an outside tester found (README only)', () => {
  const secret = 'hunter2secret';

  test('a malformed DATABASE_URL is invalid configuration (exit 2) naming DATABASE_URL, in every command, and its password is never printed', async () => {
    const bad = `postgres://postgres:${secret}@127.0.0.1:99999/x`;
    const env = { DATABASE_URL: bad, KAFKA_BROKERS: `127.0.0.1:${await closedPort()}`, SLUICE_JOURNAL_DIR: join(scratch, 'j-bad-url'), SLUICE_PORT: '0' };
    const message = "DATABASE_URL postgres://postgres:***@127.0.0.1:99999/x: port 99999 is not a number from 1 to 65535: fix the port in DATABASE_URL (Postgres's default is 5432)";
    const commands = [['serve'], ['migrate'], ['process'], ['replay', '--dry-run', join(scratch, 'no-journal')]];
    const [check, ...others] = await Promise.all([sluice(['check'], env), ...commands.map((args) => sluice(args, env))]);
    expect([check.code, check.stdout, check.stderr]).toEqual([2, `config     FAIL  ${message}\n`, '']);
    for (const [i, r] of others.entries()) {
      expect([commands[i]?.[0], r.code, logLines(r.stderr).map((l) => [l.msg, l.errors])]).toEqual([commands[i]?.[0], 2, [['invalid configuration', [message]]]]);
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
  }, 60_000);

  test('a % that is no escape, port 0 and an unknown sslmode are refused before any connection (exit 2), not reported as refused or reset', async () => {
    const cases: [string, string][] = [
      [`postgres://postgres:${secret}%zz@127.0.0.1:5432/x`, 'the user name or password has a % that is not a percent-escape (%XX): write a % in them as %25'],
      [`postgres://postgres:${secret}@127.0.0.1:0/x`, "port 0 is not a number from 1 to 65535: fix the port in DATABASE_URL (Postgres's default is 5432)"],
      [`postgres://postgres:${secret}@127.0.0.1:5432/x?sslmode=bogus`, "sslmode bogus is not one sluice's Postgres client knows: use one of disable, allow, prefer, require, verify-full"],
    ];
    const runs = await Promise.all(cases.map(([url]) => sluice(['check', '--timeout-ms', '500'], { DATABASE_URL: url, SLUICE_JOURNAL_DIR: join(scratch, 'j-bad-url2') })));
    for (const [i, r] of runs.entries()) {
      const [url, why] = cases[i] ?? ['', ''];
      expect([r.code, r.stdout]).toEqual([2, `config     FAIL  DATABASE_URL ${url.replace(`:${secret}`, ':***').replace('%zz', '')}: ${why}\n`]);
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
  }, 60_000);

  test('SLUICE_WORKER set by hand (no supervisor\'s IPC channel) is refused: check and serve exit 2 naming it, nothing starts', async () => {
    const env = { DATABASE_URL: db.url, KAFKA_BROKERS: `127.0.0.1:${await closedPort()}`, SLUICE_JOURNAL_DIR: join(scratch, 'j-worker'), SLUICE_PORT: '0' };
    const message = 'SLUICE_WORKER is set by sluice for its own worker processes; unset it';
    const [check, serve, processor] = await Promise.all([
      sluice(['check', '--timeout-ms', '500'], { ...env, SLUICE_WORKER: '1' }),
      sluice(['serve'], { ...env, SLUICE_WORKER: '1' }),
      sluice(['serve'], { ...env, SLUICE_WORKER: 'processor' }),
    ]);
    expect([check.code, check.stdout]).toEqual([2, `config     FAIL  ${message}\n`]);
    for (const r of [serve, processor]) expect([r.code, logLines(r.stderr).map((l) => [l.msg, l.errors])]).toEqual([2, [['invalid configuration', [message]]]]);
  }, 60_000);

  test('a peer that accepts and closes, or accepts and never answers: the database and Kafka lines give the same cause and the fix', async () => {
    // A proxy that closes what it accepts (the tester's address did this after 1.6 s).
    const closer = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { open: (s) => void setTimeout(() => s.end(), 300), data: () => {} } });
    const silent = await silentPort();
    try {
      const at = (port: number) => ({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x`, KAFKA_BROKERS: `127.0.0.1:${port}`, SLUICE_JOURNAL_DIR: join(scratch, 'j-peer'), SLUICE_PORT: '0' });
      const [closed, quiet] = await Promise.all([sluice(['check', '--timeout-ms', '2000'], at(closer.port)), sluice(['check', '--timeout-ms', '2000'], at(silent.port))]);
      const line = (r: CliResult, name: string): string | undefined => r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
      expect([closed.code, line(closed, 'database'), line(closed, 'kafka')]).toEqual([
        1,
        `database   FAIL  DATABASE_URL postgres://postgres@127.0.0.1:${closer.port}/x: no answer within 2s: the connection was accepted, then closed without an answer (not Postgres there, or a proxy or firewall closing it): check the host and port in DATABASE_URL`,
        `kafka      FAIL  KAFKA_BROKERS 127.0.0.1:${closer.port}: the connection was accepted, then closed without an answer (not a Kafka broker there, or a proxy or firewall closing it): check the host and port in KAFKA_BROKERS`,
      ]);
      // Postgres pointed at a Kafka port (or any service that keeps quiet): not "a firewall dropping packets".
      expect([quiet.code, line(quiet, 'database'), line(quiet, 'kafka')]).toEqual([
        1,
        `database   FAIL  DATABASE_URL postgres://postgres@127.0.0.1:${silent.port}/x: no answer within 2s: the connection was accepted, but nothing answered as Postgres (another service on that port, or an overloaded server): check the port in DATABASE_URL`,
        `kafka      FAIL  KAFKA_BROKERS 127.0.0.1:${silent.port}: no answer within 2s: the connection was accepted, but nothing answered as a Kafka broker (another service on that port, or an overloaded server): check the port in KAFKA_BROKERS`,
      ]);
      // Closed at once (outside test: the database line said "connection reset by the peer" where the
      // Kafka line named the peer that accepts and closes).
      const atOnce = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { open: (s) => void s.end(), data: () => {} } });
      try {
        const reset = await sluice(['check', '--timeout-ms', '2000'], at(atOnce.port));
        expect([reset.code, line(reset, 'database')]).toEqual([
          1,
          `database   FAIL  DATABASE_URL postgres://postgres@127.0.0.1:${atOnce.port}/x: the connection was accepted, then closed without an answer (not Postgres there, or a proxy or firewall closing it): check the host and port in DATABASE_URL`,
        ]);
        expect(line(reset, 'kafka')).toContain('the connection was accepted, then closed without an answer (not a Kafka broker there');
      } finally {
        atOnce.stop(true);
      }
    } finally {
      closer.stop(true);
      silent.close();
    }
  }, 60_000);

  test('a certificate file that is not PEM names the setting and the fix', async () => {
    const notPem = join(scratch, 'not-pem.crt');
    writeFileSync(notPem, 'hello\n');
    const r = await sluice(['check', '--timeout-ms', '500'], { SLUICE_TLS_CERT_FILE: notPem, SLUICE_TLS_KEY_FILE: notPem, SLUICE_JOURNAL_DIR: join(scratch, 'j-pem'), SLUICE_PORT: '0' });
    expect(r.code).toBe(2);
    expect(r.stdout.split('\n').find((l) => l.startsWith('tls '))).toBe(
      `tls        FAIL  SLUICE_TLS_CERT_FILE ${notPem}: not a PEM file (no -----BEGIN line): point SLUICE_TLS_CERT_FILE at the PEM certificate (chain)`,
    );
  }, 60_000);

  test('check --timeout-ms -5 reports the range; an unknown option is named with the options there are (exit 2)', async () => {
    const [negative, unknown, near] = await Promise.all([sluice(['check', '--timeout-ms', '-5']), sluice(['check', '--bogus']), sluice(['check', '--timeout', '5'])]);
    expect([negative.code, negative.stderr.split('\n')[0]]).toEqual([2, 'sluice check: --timeout-ms must be a whole number from 1 to 600000, not "-5"']);
    expect([unknown.code, unknown.stderr.split('\n')[0]]).toEqual([2, 'sluice check: unknown option --bogus: its options are --timeout-ms (see sluice check --help)']);
    expect([near.code, near.stderr.split('\n')[0]]).toEqual([2, 'sluice check: unknown option --timeout: did you mean --timeout-ms? (see sluice check --help)']);
  }, 60_000);
});

