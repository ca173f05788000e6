import { describe, expect, test } from 'bun:test';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { redactUrl } from '../src/network-cause.ts';

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
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080, maxBodyBytes: 1024 * 1024, maxBodyBytesInFlight: 8 * 1024 * 1024 });
    expect(c.writeMode).toBe('sync');
    expect(c.journal).toMatchObject({ dir: './journal', segmentBytes: 64 * 1024 * 1024, maxSegmentAgeMs: 3_600_000 });
    expect(c.db.url).toBeUndefined();
    expect(c.kafka.brokers).toBeUndefined();
    expect(c.kafka.topic).toBe('sluice.events');
    expect(c.partitions).toBe(16);
  });

  test("the local broker's tools come with the configuration: SLUICE_CACHE_DIR, else XDG_CACHE_HOME; JAVA_HOME; empty means the default", () => {
    expect(loadConfig({ SLUICE_CACHE_DIR: '/c', JAVA_HOME: '/jdk' }).kafkaTools).toEqual({ cacheDir: '/c', java: '/jdk/bin/java' });
    expect(loadConfig({ XDG_CACHE_HOME: '/x' }).kafkaTools).toEqual({ cacheDir: '/x/sluice', java: 'java' });
    expect(loadConfig({ SLUICE_CACHE_DIR: '', XDG_CACHE_HOME: '/x', JAVA_HOME: '' }).kafkaTools).toEqual({ cacheDir: '/x/sluice', java: 'java' });
  });

  test('journal preallocation: on by default, off by `false`, and anything but true or false refused by name', () => {
    expect(loadConfig({}).journal.preallocate).toBe(true);
    expect(loadConfig({ SLUICE_JOURNAL_PREALLOCATE: 'true' }).journal.preallocate).toBe(true);
    expect(loadConfig({ SLUICE_JOURNAL_PREALLOCATE: 'false' }).journal.preallocate).toBe(false);
    // Empty is unset, as for every setting.
    expect(loadConfig({ SLUICE_JOURNAL_PREALLOCATE: '' }).journal.preallocate).toBe(true);
    for (const bad of ['yes', '0', 'False']) expect(() => loadConfig({ SLUICE_JOURNAL_PREALLOCATE: bad })).toThrow('SLUICE_JOURNAL_PREALLOCATE must be true or false');
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

  test('a misspelt or misplaced name is traced to the setting meant, never to a test-only variable', () => {
    const messages = (env: Record<string, string>): string[] => {
      try {
        loadConfig(env);
        return [];
      } catch (err) {
        return ((err as ConfigError).details ?? []).map((d) => d.message);
      }
    };
    expect(messages({ SLUICE_DATABASE_URL: 'postgres://x/y' })).toEqual(['SLUICE_DATABASE_URL is not a sluice setting: did you mean DATABASE_URL?']);
    expect(messages({ SLUICE_KAFKA_BROKERS: 'k:9092' })).toEqual(['SLUICE_KAFKA_BROKERS is not a sluice setting: did you mean KAFKA_BROKERS?']);
    expect(messages({ sluice_write_mode: 'fast_ack' })).toEqual(['sluice_write_mode is not a sluice setting: did you mean SLUICE_WRITE_MODE?']);
    expect(messages({ KAFKA_BROKER: 'k:9092', DATABASE_UR: 'postgres://x/y', database_url: 'postgres://x/y' })).toEqual([
      'DATABASE_UR is not a sluice setting: did you mean DATABASE_URL?',
      'KAFKA_BROKER is not a sluice setting: did you mean KAFKA_BROKERS?',
      'database_url is not a sluice setting: did you mean DATABASE_URL?',
    ]);
    // The test suite's own variables pass, and no typo is ever pointed at one.
    expect(messages({ SLUICE_TEST_SEED: '1', SLUICE_FUZZ_SEED: '2', SLUICE_FUZZ_RUNS: '3', SLUICE_PG_BIN: '/pg', SLUICE_BENCH_DATABASE_URL: 'postgres://b' })).toEqual([]);
    expect(messages({ SLUICE_TEST_DATABASE_UR: 'postgres://x' })).toEqual([]);
    expect(messages({ SLUICE_TEST_DATABASE: 'postgres://x' })).toEqual([]);
    expect(messages({ SLUICE_TSET_DATABASE_URL: 'postgres://x' })).toEqual(['SLUICE_TSET_DATABASE_URL is not a sluice setting: did you mean DATABASE_URL?']);
    // Somebody else's variables are left alone.
    expect(messages({ PATH: '/bin', HOME: '/root', KAFKA_HEAP_OPTS: '-Xmx1g', PGDATABASE: 'x', DATABASE: 'x' })).toEqual([]);
  });

  test('a variable whose absence selects a mode may not be set empty', () => {
    expect(() => loadConfig({ KAFKA_BROKERS: '' })).toThrow('KAFKA_BROKERS is set but empty: give it a value, or unset it (unset = serve starts a local broker)');
    expect(() => loadConfig({ DATABASE_URL: '' })).toThrow('DATABASE_URL is set but empty: give it a value, or unset it (unset = the embedded database in SLUICE_DATA_DIR)');
    expect(errorsOf({ SLUICE_TENANTS_FILE: '', SLUICE_ADMIN_TOKEN: '' }).sort()).toEqual(['SLUICE_ADMIN_TOKEN', 'SLUICE_TENANTS_FILE']);
    // Any other empty setting keeps its default.
    expect(loadConfig({ SLUICE_PORT: '', SLUICE_WRITE_MODE: '' }).http.port).toBe(8080);
  });

  test('every integer setting takes decimal digits only', () => {
    for (const bad of ['0x1F90', '1e3', ' 80', '80 ', '+80', '-1', '80.0', '8_080']) {
      expect(() => loadConfig({ SLUICE_PORT: bad })).toThrow('SLUICE_PORT must be a whole number in decimal digits (no sign, exponent, 0x or spaces)');
      expect(errorsOf({ SLUICE_PARTITIONS: bad, SLUICE_POLL_MS: bad })).toEqual(['SLUICE_PARTITIONS', 'SLUICE_POLL_MS']);
    }
    expect(loadConfig({ SLUICE_PORT: '08080', SLUICE_PARTITIONS: '32' })).toMatchObject({ http: { port: 8080 }, partitions: 32 });
    expect(() => loadConfig({ SLUICE_PORT: '65536' })).toThrow('SLUICE_PORT must be at most 65535');
  });

  test('the retry backoff may not start above its cap; both settings are named', () => {
    expect(() => loadConfig({ SLUICE_RETRY_BASE_MS: '5000', SLUICE_RETRY_MAX_MS: '1000' })).toThrow(
      'SLUICE_RETRY_BASE_MS 5000 is above SLUICE_RETRY_MAX_MS 1000: the first retry would wait longer than the cap; lower SLUICE_RETRY_BASE_MS or raise SLUICE_RETRY_MAX_MS',
    );
    expect(() => loadConfig({ SLUICE_RETRY_BASE_MS: '70000' })).toThrow('SLUICE_RETRY_BASE_MS 70000 is above SLUICE_RETRY_MAX_MS 60000');
    expect(loadConfig({ SLUICE_RETRY_BASE_MS: '1000', SLUICE_RETRY_MAX_MS: '1000' }).processor.retryBaseMs).toBe(1000);
  });

  test('the bodies in flight may not be set below the largest body; unset, they are 8 MiB or four largest bodies', () => {
    const MiB = 1024 * 1024;
    expect(() => loadConfig({ SLUICE_MAX_BODY_BYTES: String(16 * MiB), SLUICE_MAX_BODY_BYTES_IN_FLIGHT: String(8 * MiB) })).toThrow(
      `SLUICE_MAX_BODY_BYTES_IN_FLIGHT ${8 * MiB} is below SLUICE_MAX_BODY_BYTES ${16 * MiB}: a body larger than the bytes in flight passes only alone`,
    );
    expect(errorsOf({ SLUICE_MAX_BODY_BYTES: String(16 * MiB), SLUICE_MAX_BODY_BYTES_IN_FLIGHT: String(8 * MiB) })).toEqual(['SLUICE_MAX_BODY_BYTES_IN_FLIGHT']);
    expect(loadConfig({ SLUICE_MAX_BODY_BYTES: String(16 * MiB) }).http.maxBodyBytesInFlight).toBe(64 * MiB);
    expect(loadConfig({ SLUICE_MAX_BODY_BYTES: String(2 * MiB) }).http.maxBodyBytesInFlight).toBe(8 * MiB);
    expect(loadConfig({ SLUICE_MAX_BODY_BYTES: String(16 * MiB), SLUICE_MAX_BODY_BYTES_IN_FLIGHT: String(16 * MiB) }).http.maxBodyBytesInFlight).toBe(16 * MiB);
    expect(loadConfig({ SLUICE_MAX_BODY_BYTES_IN_FLIGHT: '4096', SLUICE_MAX_BODY_BYTES: '4096' }).http.maxBodyBytesInFlight).toBe(4096);
    // Out of range, the message names the default as it is (outside tester: it said 8388608 alone).
    expect(() => loadConfig({ SLUICE_MAX_BODY_BYTES_IN_FLIGHT: '1' })).toThrow(`or unset it for the default ${8 * MiB} (or 4 x SLUICE_MAX_BODY_BYTES if more)`);
  });

  test('a journal segment may not pass 4 GiB (it is zeroed in full ahead of use)', () => {
    expect(errorsOf({ SLUICE_JOURNAL_SEGMENT_BYTES: String(4 * 1024 ** 3 + 1) })).toEqual(['SLUICE_JOURNAL_SEGMENT_BYTES']);
    expect(loadConfig({ SLUICE_JOURNAL_SEGMENT_BYTES: String(4 * 1024 ** 3) }).journal.segmentBytes).toBe(4 * 1024 ** 3);
  });

  test('TLS takes both files or neither', () => {
    expect(errorsOf({ SLUICE_TLS_KEY_FILE: '/k.pem' })).toEqual(['SLUICE_TLS_CERT_FILE']);
    expect(errorsOf({ SLUICE_TLS_CERT_FILE: '/c.pem' })).toEqual(['SLUICE_TLS_KEY_FILE']);
    expect(loadConfig({ SLUICE_TLS_CERT_FILE: '/c.pem', SLUICE_TLS_KEY_FILE: '/k.pem' }).tls).toEqual({ certFile: '/c.pem', keyFile: '/k.pem' });
    expect(loadConfig({}).tls).toBeUndefined();
  });

  test('DATABASE_URL is read as the Postgres client reads it: what it would throw on or misroute is refused by name, password hidden', () => {
    const messages = (url: string): string[] => {
      try {
        loadConfig({ DATABASE_URL: url });
        return [];
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        return (err.details ?? []).map((d) => d.message);
      }
    };
    const cases: [string, string][] = [
      ['postgres://postgres:hunter2secret@127.0.0.1:99999/x', "postgres://postgres:***@127.0.0.1:99999/x: port 99999 is not a number from 1 to 65535: fix the port in DATABASE_URL (Postgres's default is 5432)"],
      ['postgres://postgres:hunter2secret@127.0.0.1:0/x', "postgres://postgres:***@127.0.0.1:0/x: port 0 is not a number from 1 to 65535: fix the port in DATABASE_URL (Postgres's default is 5432)"],
      ['postgres://postgres:hunter2%zzsecret@127.0.0.1:5432/x', 'postgres://postgres:***@127.0.0.1:5432/x: the user name or password has a % that is not a percent-escape (%XX): write a % in them as %25'],
      ['postgres://postgres:hunter2secret@db%zz/x', 'postgres://postgres:***@db%zz/x: the host has a % that is not a percent-escape (%XX): fix the host in DATABASE_URL'],
      ['postgres://postgres:hunter2secret@db/x?sslmode=bogus', 'postgres://postgres:***@db/x?sslmode=bogus: sslmode bogus is not one sluice\'s Postgres client knows: use one of disable, allow, prefer, require, verify-full'],
      ['postgres://postgres:hunter2secret@db/x?target_session_attrs=any', "postgres://postgres:***@db/x?target_session_attrs=any: target_session_attrs any is not one sluice's Postgres client knows: use one of read-write, read-only, primary, standby, prefer-standby"],
      ['postgresql:///x', 'postgresql:///x: names no host: write postgres://user:password@host:5432/database'],
      // An unencoded `/` or `#` in the password: the host part ends early.
      ['postgres://postgres:hunter2/secret@db/x', 'postgres://postgres:***@db/x: the host ends early, at a character of the password: percent-encode any @ : / ? # % in the user name or password (@ as %40, / as %2F, ? as %3F, # as %23, % as %25)'],
      ['postgres://postgres:hunter2#secret@db/x', 'postgres://postgres:***@db/x: is not a valid URL: percent-encode any @ : / ? # % in the user name or password (@ as %40, / as %2F, ? as %3F, # as %23, % as %25)'],
      // The @host forgotten: the "port" is the password, never echoed.
      ['postgres://postgres:hunter2secret/x', "postgres://postgres:***/x: the port is not a number from 1 to 65535: fix the port in DATABASE_URL (Postgres's default is 5432)"],
      // Outside test: the client looked `[::1]` up by name, brackets included (a DNS error, exit 1).
      ['postgresql://u:hunter2secret@[::1]:5432/x', "postgresql://u:***@[::1]:5432/x: the host [::1] is an IPv6 address in brackets, which sluice's Postgres client cannot connect to: use a host name that resolves to it (for [::1], localhost)"],
    ];
    for (const [url, message] of cases) {
      expect(messages(url)).toEqual([`DATABASE_URL ${message}`]);
      expect(messages(url).join()).not.toContain('secret');
    }
    for (const good of ['postgres://u:p%40ss@db:6432/x?sslmode=verify-full', 'postgres://u:S3cr@etPW@127.0.0.1/x', 'postgres://u:S3c:retPW@127.0.0.1/x', 'postgres://u:p@h1:5432,h2:5433/x?target_session_attrs=primary', 'postgres://db/x?sslmode=disable']) {
      expect(messages(good)).toEqual([]);
    }
  });

  test('SLUICE_WORKER in a process no supervisor started (no IPC channel) is refused, whatever its value', () => {
    const messages = (env: Record<string, string>, supervised: boolean): string[] => {
      try {
        loadConfig(env, { supervised });
        return [];
      } catch (err) {
        return ((err as ConfigError).details ?? []).map((d) => d.message);
      }
    };
    const refused = ['SLUICE_WORKER is set by sluice for its own worker processes; unset it'];
    const db = { DATABASE_URL: 'postgres://u@h/db', SLUICE_WORKERS: '2' };
    expect(messages({ ...db, SLUICE_WORKER: '1' }, false)).toEqual(refused);
    expect(messages({ ...db, SLUICE_WORKER: 'processor' }, false)).toEqual(refused);
    expect(messages({ SLUICE_WORKER: 'abc' }, false)).toEqual(refused);
    expect(messages({ ...db, SLUICE_WORKER: '1' }, true)).toEqual([]);
    // Empty is unset, as for every setting.
    expect(messages({ SLUICE_WORKER: '' }, false)).toEqual([]);
  });

  test('an integer out of range says what to set: the range, and that unset means the default', () => {
    expect(() => loadConfig({ SLUICE_METRIC_TENANTS: '0' })).toThrow(
      'SLUICE_METRIC_TENANTS must be at least 1: set it to a whole number from 1 to 1000000, or unset it for the default 1000',
    );
    expect(() => loadConfig({ SLUICE_JOURNAL_SEGMENT_BYTES: '1' })).toThrow(
      'SLUICE_JOURNAL_SEGMENT_BYTES must be at least 4096: set it to a whole number from 4096 to 4294967296, or unset it for the default 67108864',
    );
  });

  test('redactUrl hides the password of any URL, parsable or not, and leaves one without a password as it is', () => {
    expect(redactUrl('postgres://u:hunter2secret@db:5432/x?sslmode=require')).toBe('postgres://u:***@db:5432/x?sslmode=require');
    // Unparsable (port 99999), or with a / or ? in the password that `new URL` would read as path or query.
    expect(redactUrl('postgres://u:hunter2secret@db:99999/x')).toBe('postgres://u:***@db:99999/x');
    expect(redactUrl('postgres://u:12/hunter2secret@db/x')).toBe('postgres://u:***@db/x');
    expect(redactUrl('postgres://u:12?hunter2secret@db/x')).toBe('postgres://u:***@db/x');
    expect(redactUrl('postgres://u:p@ss:hunter2secret@db/x')).toBe('postgres://u:***@db/x');
    // The @host forgotten: the "port" is the password. No scheme: the whole value may be one.
    expect(redactUrl('postgres://u:hunter2secret/x')).toBe('postgres://u:***/x');
    expect(redactUrl('hunter2secret')).toBe('(unparsable URL)');
    expect(redactUrl('postgres://u@db:5432/x')).toBe('postgres://u@db:5432/x');
    expect(redactUrl('postgres://db:5432/x')).toBe('postgres://db:5432/x');
    // libpq's query-string password (outside test: printed as is by every command).
    expect(redactUrl('postgres://u@db/x?password=Zq9xpw&sslmode=bogus')).toBe('postgres://u@db/x?password=***&sslmode=bogus');
    expect(redactUrl('postgres://u@db/x?sslmode=require&sslpassword=Zq9xpw#f')).toBe('postgres://u@db/x?sslmode=require&sslpassword=***#f');
    expect(redactUrl('postgres://u:pw@db/x?PASSWORD=Zq9xpw')).toBe('postgres://u:***@db/x?PASSWORD=***');
  });
});

