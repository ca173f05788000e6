import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLines, runCli } from '../support/cli.ts';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';
import { makeCertificate } from '../support/tls.ts';

const TOKEN = newToken('acme');

/** The CN of the certificate a fresh TLS connection to `port` is shown, as `openssl s_client` sees it. */
async function servedName(port: number): Promise<string> {
  const client = Bun.spawn({ cmd: ['openssl', 's_client', '-connect', `127.0.0.1:${port}`], stdin: 'ignore', stdout: 'pipe', stderr: 'ignore' });
  const pem = await new Response(client.stdout).text();
  await client.exited;
  const x509 = Bun.spawn({ cmd: ['openssl', 'x509', '-noout', '-subject', '-nameopt', 'multiline'], stdin: new TextEncoder().encode(pem), stdout: 'pipe', stderr: 'pipe' });
  const subject = await new Response(x509.stdout).text();
  await x509.exited;
  return /commonName\s*=\s*(\S+)/.exec(subject)?.[1] ?? `no certificate: ${subject}`;
}

describe('TLS with SLUICE_TLS_CERT_FILE and SLUICE_TLS_KEY_FILE', () => {
  let db: TestDatabase;
  let dir: string;
  let sluice: SpawnedSluice;
  let port: number;
  let first: { cert: string; key: string };
  let second: { cert: string; key: string };
  const live = { cert: '', key: '' };

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
    first = await makeCertificate(dir, 'sluice-first');
    second = await makeCertificate(dir, 'sluice-second');
    live.cert = join(dir, 'live.crt');
    live.key = join(dir, 'live.key');
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    writeTenantsFile(join(dir, 'tenants.json'), { acme: { tokens: [TOKEN] } });
    // The documented production setup: a public address, bearer tokens, TLS.
    sluice = await spawnSluice({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: (await testBrokers()).join(','),
      SLUICE_HOST: '0.0.0.0',
      SLUICE_PORT: '0',
      SLUICE_TENANTS_FILE: join(dir, 'tenants.json'),
      SLUICE_TLS_CERT_FILE: live.cert,
      SLUICE_TLS_KEY_FILE: live.key,
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_TRANSACTIONAL_ID_PREFIX: `tls-${Bun.randomUUIDv7()}`,
    });
    port = Number(new URL(sluice.url).port);
  }, 120_000);

  afterAll(async () => {
    sluice?.proc.kill('SIGTERM');
    await sluice?.proc.exited;
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves HTTPS with the certificate, verified against it; plain HTTP gets no answer', async () => {
    expect(sluice.url).toBe(`https://0.0.0.0:${port}`);
    const res = await fetch(`https://127.0.0.1:${port}/v1/events`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ dedupe_key: 'tls-1', payload: { secure: true } }),
      tls: { ca: Bun.file(first.cert) },
    });
    expect(res.status).toBe(202);
    expect(((await res.json()) as { tenant_id: string }).tenant_id).toBe('acme');
    // An unknown authority is refused by a verifying client.
    await expect(fetch(`https://127.0.0.1:${port}/healthz`, { tls: { ca: Bun.file(second.cert) } })).rejects.toThrow();
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  test('SIGHUP loads a renewed certificate for new connections; a broken one is refused and the old kept', async () => {
    expect(await servedName(port)).toBe('sluice-first');
    copyFileSync(second.cert, live.cert);
    copyFileSync(second.key, live.key);
    sluice.proc.kill('SIGHUP');
    await eventually(async () => (await servedName(port)) === 'sluice-second', 10_000, 'the renewed certificate served');
    const res = await fetch(`https://127.0.0.1:${port}/healthz`, { tls: { ca: Bun.file(second.cert) } });
    expect(res.status).toBe(200);

    writeFileSync(live.cert, 'not a certificate');
    sluice.proc.kill('SIGHUP');
    await eventually(async () => sluice.logLines().some((l) => l.includes('TLS certificate rejected')), 10_000, 'the broken file reported');
    const rejected = JSON.parse(sluice.logLines().find((l) => l.includes('TLS certificate rejected')) ?? '{}') as { level: string; errors: string[] };
    expect(rejected.level).toBe('error');
    expect(rejected.errors).toEqual([`SLUICE_TLS_CERT_FILE ${live.cert}: not a PEM file (no -----BEGIN line): point SLUICE_TLS_CERT_FILE at the PEM certificate (chain)`]);
    for (let i = 0; i < 5; i++) expect(await servedName(port)).toBe('sluice-second');
    expect((await fetch(`https://127.0.0.1:${port}/readyz`, { tls: { ca: Bun.file(second.cert) } })).status).toBe(200);
  }, 30_000);

  test('a missing certificate file stops the start with exit 1 (it may yet appear), naming the setting', async () => {
    const r = await runCli(['serve'], { DATABASE_URL: db.url, KAFKA_BROKERS: (await testBrokers()).join(','), SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(dir, 'j2'), SLUICE_TLS_CERT_FILE: join(dir, 'nope.crt'), SLUICE_TLS_KEY_FILE: live.key }, { clean: true });
    expect(r.code).toBe(1);
    expect(logLines(r.stderr).map((l) => [l.msg, l.code, l.error])).toEqual([
      ['sluice cannot start', 'file_unavailable', `SLUICE_TLS_CERT_FILE ${join(dir, 'nope.crt')}: ENOENT: point SLUICE_TLS_CERT_FILE at a readable PEM file`],
    ]);
  }, 60_000);

  test('a key that is not the certificate\'s stops the start with exit 2, naming both settings', async () => {
    const r = await runCli(['serve'], { DATABASE_URL: db.url, KAFKA_BROKERS: (await testBrokers()).join(','), SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(dir, 'j3'), SLUICE_TLS_CERT_FILE: first.cert, SLUICE_TLS_KEY_FILE: second.key }, { clean: true });
    expect(r.code).toBe(2);
    expect(logLines(r.stderr).map((l) => [l.msg, l.errors])).toEqual([
      ['invalid configuration', [`SLUICE_TLS_KEY_FILE ${second.key} is not the key of the certificate in SLUICE_TLS_CERT_FILE ${first.cert}: point SLUICE_TLS_KEY_FILE at that certificate's key, or SLUICE_TLS_CERT_FILE at the certificate issued for this key`]],
    ]);
  }, 60_000);
});
