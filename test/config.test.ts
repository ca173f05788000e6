import { describe, expect, test } from 'bun:test';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';

function errorsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return (err.details ?? []).map((d) => d.path ?? '');
    throw err;
  }
  return [];
}

describe('configuration', () => {
  test('defaults: loopback :8080, sync mode, ./journal, embedded database, local broker', () => {
    const c = loadConfig({});
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080, maxBodyBytes: 1024 * 1024 });
    expect(c.writeMode).toBe('sync');
    expect(c.journal).toMatchObject({ dir: './journal', segmentBytes: 64 * 1024 * 1024, maxSegmentAgeMs: 3_600_000 });
    expect(c.db.url).toBeUndefined();
    expect(c.kafka.brokers).toBeUndefined();
    expect(c.kafka.topic).toBe('sluice.events');
    expect(c.partitions).toBe(16);
  });

  test('parses values and broker lists', () => {
    const c = loadConfig({ SLUICE_PORT: '9000', KAFKA_BROKERS: 'a:9092, b:9093', DATABASE_URL: 'postgres://u@h/db', SLUICE_PARTITIONS: '32' });
    expect(c.http.port).toBe(9000);
    expect(c.kafka.brokers).toEqual(['a:9092', 'b:9093']);
    expect(c.db.url).toBe('postgres://u@h/db');
    expect(c.partitions).toBe(32);
  });

  test('reports every bad variable at once, by name', () => {
    expect(
      errorsOf({ SLUICE_PORT: '70000', SLUICE_MAX_BODY_BYTES: 'lots', DATABASE_URL: 'mysql://x', SLUICE_KAFKA_TOPIC: 'a b' }).sort(),
    ).toEqual(['DATABASE_URL', 'SLUICE_KAFKA_TOPIC', 'SLUICE_MAX_BODY_BYTES', 'SLUICE_PORT']);
  });

  test('refuses to run open (no tenants file) on a non-loopback address', () => {
    expect(errorsOf({ SLUICE_HOST: '0.0.0.0' })).toEqual(['SLUICE_HOST']);
    expect(() => loadConfig({ SLUICE_HOST: '0.0.0.0' })).toThrow('set SLUICE_TENANTS_FILE to require bearer tokens');
    expect(errorsOf({ SLUICE_HOST: '0.0.0.0', SLUICE_TENANTS_FILE: '/etc/sluice/tenants.json' })).toEqual([]);
    expect(errorsOf({ SLUICE_HOST: '127.0.0.2' })).toEqual([]);
    expect(errorsOf({ SLUICE_HOST: 'localhost' })).toEqual([]);
  });

  test('a real Postgres needs a pool of two: the processor reserves one connection for its locks', () => {
    expect(errorsOf({ DATABASE_URL: 'postgres://u@h/db', SLUICE_DB_POOL: '1' })).toEqual(['SLUICE_DB_POOL']);
    expect(errorsOf({ DATABASE_URL: 'postgres://u@h/db', SLUICE_DB_POOL: '2' })).toEqual([]);
    expect(errorsOf({ SLUICE_DB_POOL: '1' })).toEqual([]);
  });

  test('the progress topic defaults to one per transactional id prefix', () => {
    expect(loadConfig({ SLUICE_TRANSACTIONAL_ID_PREFIX: 'eu-1' }).processor.progressTopic).toBe('eu-1.progress');
    expect(loadConfig({}).processor.progressTopic).toBe('sluice.progress');
  });

  test('an unknown SLUICE_ variable is an error with a did-you-mean; the tools\' own variables are not', () => {
    expect(errorsOf({ SLUICE_WRTIE_MODE: 'fast_ack', SLUICE_PORT: 'x' }).sort()).toEqual(['SLUICE_PORT', 'SLUICE_WRTIE_MODE']);
    expect(() => loadConfig({ SLUICE_WRTIE_MODE: 'fast_ack' })).toThrow('SLUICE_WRTIE_MODE is not a sluice setting: did you mean SLUICE_WRITE_MODE?');
    expect(errorsOf({ SLUICE_CACHE_DIR: '/c', SLUICE_TEST_DATABASE_URL: 'postgres://x', SLUICE_BENCH_DATABASE_URL: 'postgres://y', HOME: '/root' })).toEqual([]);
    // Empty means unset for values, but a misspelt name is reported even when empty.
    expect(errorsOf({ SLUICE_JOURNALDIR: '' })).toEqual(['SLUICE_JOURNALDIR']);
  });

  test('TLS takes both files or neither', () => {
    expect(errorsOf({ SLUICE_TLS_KEY_FILE: '/k.pem' })).toEqual(['SLUICE_TLS_CERT_FILE']);
    expect(errorsOf({ SLUICE_TLS_CERT_FILE: '/c.pem' })).toEqual(['SLUICE_TLS_KEY_FILE']);
    expect(loadConfig({ SLUICE_TLS_CERT_FILE: '/c.pem', SLUICE_TLS_KEY_FILE: '/k.pem' }).tls).toEqual({ certFile: '/c.pem', keyFile: '/k.pem' });
    expect(loadConfig({}).tls).toBeUndefined();
  });
});
