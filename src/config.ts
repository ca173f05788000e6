import { availableParallelism, homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { idSchema, NODE_ID_MAX, nodeIdFromHost, nodeIdSchema } from './core/identifiers.ts';
import { COMPRESSIONS, GUARANTEES, LOG_LEVELS, WRITE_MODES } from './core/modes.ts';
import { issueDetails } from './core/zod-issues.ts';
import { topicNameSchema } from './core/topic-rule.ts';
import { didYouMean, editDistance } from './did-you-mean.ts';
import { ConfigError, type ErrorDetail } from './errors.ts';
import { redactUrl } from './network-cause.ts';

/**
 * All configuration comes from the environment and is parsed here, once. The rest of sluice receives
 * typed slices of `Config` and never reads `process.env`.
 */
const MiB = 1024 * 1024;

/** Ingest processes one node may run (SLUICE_WORKERS): far above the cores of any machine sluice runs on. */
export const MAX_WORKERS = 64;

/**
 * Where `serve` runs its processor (SLUICE_PROCESSOR): `process`, a process of its own beside the
 * ingest process(es); `inline`, in the one ingest process; `auto`, a process of its own with a
 * Postgres and a Kafka cluster (DATABASE_URL, KAFKA_BROKERS) and a core for it.
 */
export const PROCESSOR_PLACES = ['auto', 'process', 'inline'] as const;

/**
 * SLUICE_MEMORY_MIB's default: what each serve, ingest or process process sizes its heap for
 * (src/roles/engine-memory.ts).
 */
export const DEFAULT_MEMORY_MIB = 192;

/**
 * Every integer setting: decimal digits only. `Number()` would also take `0x1F90`, `1e3` or ` 80`,
 * so a value an operator misread would still start sluice.
 */
const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER, defaultText = String(def)) => {
  // Out of range, the message says what to set: the range, and that unset means the default.
  const fix = `set it to ${max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `a whole number from ${min} to ${max}`}, or unset it for the default ${defaultText}`;
  return z
    .string()
    .regex(/^[0-9]+$/, { error: 'must be a whole number in decimal digits (no sign, exponent, 0x or spaces)' })
    .transform(Number)
    .pipe(z.number().min(min, { error: `must be at least ${min}: ${fix}` }).max(max, { error: `must be at most ${max}: ${fix}` }))
    .default(def);
};

const brokerList = z
  .string()
  .transform((s) => s.split(',').map((b) => b.trim()).filter((b) => b.length > 0))
  .refine((list) => list.length > 0, { error: 'must list at least one host:port' })
  .refine((list) => list.every((b) => /^[^\s:]+:\d{1,5}$/.test(b)), { error: 'each broker must be host:port' })
  // The Kafka client throws a RangeError outside any promise for port 0 or above 65535.
  .refine((list) => list.every((b) => !/:\d+$/.test(b) || brokerPortOk(Number(b.slice(b.lastIndexOf(':') + 1)))), {
    error: 'each broker port must be 1-65535',
  });

function brokerPortOk(port: number): boolean {
  return port >= 1 && port <= 65535;
}

const POSTGRES_SCHEME = /^postgres(ql)?:\/\//;

/** The values of sslmode postgres.js acts on (its connection.js): no TLS, TLS without verification, TLS verified. */
const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-full'];
/** postgres.js throws when it is given any other target_session_attrs (its index.js, tsa). */
const TARGET_SESSION_ATTRS = ['read-write', 'read-only', 'primary', 'standby', 'prefer-standby'];

const UNENCODED = 'percent-encode any @ : / ? # % in the user name or password (@ as %40, / as %2F, ? as %3F, # as %23, % as %25)';

/** A host of DATABASE_URL: a name, an address, or a Unix socket directory (a percent-encoded path). */
interface DatabaseHost {
  host: string;
  port: number;
}

/**
 * DATABASE_URL read as postgres.js reads it (its index.js, parseUrl: the host list up to the first
 * `/` or `?`, percent-decoded, then `new URL` on the URL with the first host only), with each step
 * that would throw or misroute named here instead: postgres.js throws a bare TypeError or URIError
 * (the message of one held the whole URL, password included), and takes port 0 or an unknown
 * sslmode without a word, to fail later as a refused or reset connection.
 */
export function parseDatabaseUrl(url: string): { hosts: DatabaseHost[] } | { problem: string } {
  const rest = url.slice(url.indexOf('://') + 3);
  const authority = rest.split(/[?/]/)[0] ?? '';
  let hostList: string;
  try {
    hostList = decodeURIComponent(authority.slice(authority.indexOf('@') + 1));
  } catch {
    return { problem: 'the host has a % that is not a percent-escape (%XX): fix the host in DATABASE_URL' };
  }
  const hosts: DatabaseHost[] = [];
  for (const entry of hostList.split(',')) {
    const portText = /:([^:\]]*)$/.exec(entry)?.[1];
    const host = portText === undefined ? entry : entry.slice(0, entry.length - portText.length - 1);
    if (host === '') return { problem: 'names no host: write postgres://user:password@host:5432/database' };
    // postgres.js looks `[::1]` up by name, brackets included, and fails with a DNS error.
    if (host.startsWith('[')) return { problem: `the host ${host} is an IPv6 address in brackets, which sluice's Postgres client cannot connect to: use a host name that resolves to it (for [::1], localhost)` };
    if (portText !== undefined && portText !== '' && !(/^[0-9]{1,5}$/.test(portText) && Number(portText) >= 1 && Number(portText) <= 65535)) {
      // `postgres://u:pa/ss@h/db`: the password's `/` ended the host part early, leaving `u:pa` as host and port.
      if (!/^[0-9]+$/.test(portText) && !authority.includes('@') && rest.includes('@')) return { problem: `the host ends early, at a character of the password: ${UNENCODED}` };
      // A port that is not digits is not echoed: in `postgres://user:password/db` (the @host forgotten) it is the password.
      const port = /^[0-9]+$/.test(portText) ? `port ${portText}` : 'the port';
      return { problem: `${port} is not a number from 1 to 65535: fix the port in DATABASE_URL (Postgres's default is 5432)` };
    }
    hosts.push({ host, port: portText === undefined || portText === '' ? 5432 : Number(portText) });
  }
  let parsed: URL;
  try {
    parsed = new URL(url.replace(hostList, hostList.split(',')[0] ?? ''));
  } catch {
    return { problem: `is not a valid URL: ${UNENCODED}` };
  }
  try {
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    return { problem: 'the user name or password has a % that is not a percent-escape (%XX): write a % in them as %25' };
  }
  const sslmode = parsed.searchParams.get('sslmode');
  if (sslmode !== null && !SSLMODES.includes(sslmode)) {
    return { problem: `sslmode ${sslmode} is not one sluice's Postgres client knows: use one of ${SSLMODES.join(', ')}` };
  }
  const attrs = parsed.searchParams.get('target_session_attrs');
  if (attrs !== null && !TARGET_SESSION_ATTRS.includes(attrs)) {
    return { problem: `target_session_attrs ${attrs} is not one sluice's Postgres client knows: use one of ${TARGET_SESSION_ATTRS.join(', ')}` };
  }
  return { hosts };
}

const SUPERVISOR_ONLY = 'is set by sluice for its own worker processes; unset it';

const envSchema = z.object({
  SLUICE_HOST: z.string().min(1).default('127.0.0.1'),
  SLUICE_PORT: int(8080, 0, 65535),
  SLUICE_NODE_ID: nodeIdSchema.default(nodeIdFromHost(hostname())),
  SLUICE_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  SLUICE_WRITE_MODE: z.enum(WRITE_MODES).default('sync'),
  SLUICE_MAX_BODY_BYTES: int(MiB, 64, 64 * MiB),
  SLUICE_MAX_BODY_BYTES_IN_FLIGHT: int(8 * MiB, 64, 64 * 1024 * MiB, `${8 * MiB} (or 4 x SLUICE_MAX_BODY_BYTES if more)`),
  SLUICE_MAX_BATCH: int(1000, 1, 100_000),
  SLUICE_MAX_BATCH_LINES: int(10_000, 1, 1_000_000),
  SLUICE_MAX_JSON_DEPTH: int(64, 2, 1_000),
  SLUICE_MAX_LINE_BYTES: int(MiB, 64, 64 * MiB),
  SLUICE_SYNC_OUTBOX_WAIT_MS: int(2_000, 1, 60_000),
  SLUICE_JOURNAL_DIR: z.string().min(1).default('./journal'),
  // Bounded: a preallocated segment is zeroed in full ahead of use (SLUICE_JOURNAL_PREALLOCATE).
  SLUICE_JOURNAL_SEGMENT_BYTES: int(64 * MiB, 4096, 4 * 1024 * MiB),
  SLUICE_JOURNAL_SEGMENT_MAX_AGE_MS: int(3_600_000, 100),
  SLUICE_JOURNAL_PREALLOCATE: z.enum(['true', 'false'], { error: 'must be true or false' }).default('true'),
  SLUICE_JOURNAL_RETENTION_MS: int(7 * 24 * 3_600_000, 0),
  SLUICE_JOURNAL_RETENTION_BYTES: int(10 * 1024 * MiB, 0),
  SLUICE_JOURNAL_MAINTENANCE_MS: int(10_000, 50, 3_600_000),
  SLUICE_FORWARD_BATCH: int(1000, 1, 100_000),
  SLUICE_FORWARD_LINGER_MS: int(10, 0, 1_000),
  SLUICE_RECENT_KEYS: int(100_000, 0, 100_000_000),
  SLUICE_MAX_UNFORWARDED: int(200_000, 1_000, 100_000_000),
  SLUICE_DEDUPE_SNAPSHOT_MS: int(10_000, 100, 3_600_000),
  SLUICE_DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z
    .string()
    .regex(POSTGRES_SCHEME, { error: 'must be a postgres:// or postgresql:// URL' })
    .superRefine((url, ctx) => {
      const parsed = POSTGRES_SCHEME.test(url) ? parseDatabaseUrl(url) : undefined;
      if (parsed !== undefined && 'problem' in parsed) ctx.addIssue({ code: 'custom', message: `${redactUrl(url)}: ${parsed.problem}` });
    })
    .optional(),
  SLUICE_DB_POOL: int(8, 1, 100),
  SLUICE_PARTITIONS: int(16, 1, 4096),
  KAFKA_BROKERS: brokerList.optional(),
  SLUICE_KAFKA_LOCAL_PORT: int(19092, 1, 65535),
  SLUICE_KAFKA_TOPIC: topicNameSchema.default('sluice.events'),
  SLUICE_KAFKA_CLIENT_ID: z.string().min(1).default('sluice'),
  SLUICE_KAFKA_COMPRESSION: z.enum(COMPRESSIONS).default('none'),
  SLUICE_PUBLISH_BATCH: int(500, 1, 10_000),
  SLUICE_PUBLISH_MAX_BYTES: int(900_000, 1_024, 100 * MiB),
  SLUICE_POLL_MS: int(50, 1, 60_000),
  SLUICE_SHUTDOWN_TIMEOUT_MS: int(15_000, 0, 600_000),
  SLUICE_GUARANTEE: z.enum(GUARANTEES).default('exactly_once'),
  SLUICE_TRANSACTIONAL_ID_PREFIX: idSchema(200).default('sluice'),
  SLUICE_PROGRESS_TOPIC: topicNameSchema.optional(),
  SLUICE_MAX_ATTEMPTS: int(10, 1, 1000),
  SLUICE_RETRY_BASE_MS: int(500, 1, 3_600_000),
  SLUICE_RETRY_MAX_MS: int(60_000, 1, 86_400_000),
  SLUICE_REBALANCE_MS: int(2_000, 50, 600_000),
  SLUICE_OUTBOX_RETENTION_MS: int(7 * 24 * 3_600_000, 0),
  SLUICE_OUTBOX_CLEANUP_MS: int(60_000, 50, 86_400_000),
  SLUICE_TENANTS_FILE: z.string().min(1).optional(),
  SLUICE_METRIC_TENANTS: int(1_000, 1, 1_000_000),
  SLUICE_METRIC_TENANTS_WINDOW_MS: int(600_000, 100, 86_400_000),
  SLUICE_ADMIN_TOKEN: z.string().min(16, { error: 'must be at least 16 characters' }).max(1024).optional(),
  SLUICE_TLS_CERT_FILE: z.string().min(1).optional(),
  SLUICE_TLS_KEY_FILE: z.string().min(1).optional(),
  SLUICE_CACHE_DIR: z.string().min(1).optional(),
  SLUICE_WORKERS: int(1, 1, MAX_WORKERS),
  SLUICE_PROCESSOR: z.enum(PROCESSOR_PLACES).default('auto'),
  // The RAM the JavaScript engine sizes each serve/ingest/process heap for (src/roles/engine-memory.ts).
  SLUICE_MEMORY_MIB: int(DEFAULT_MEMORY_MIB, 64, 1024 * 1024),
  // Set by a supervisor for the processes it starts (README.md, "Workers"); an operator never sets it.
  SLUICE_WORKER: z
    .string()
    .regex(new RegExp(`^(processor|[1-9][0-9]{0,${String(MAX_WORKERS).length - 1}})$`), { error: SUPERVISOR_ONLY })
    .optional(),
});

export type Env = z.infer<typeof envSchema>;

/** What a supervisor tells the processes it starts (Config.worker): read, never suggested for a typo. */
const SUPERVISOR_VARIABLE = 'SLUICE_WORKER';

/** Every variable sluice reads: its settings and the Kafka jar cache of `kafka-local`. What a typo is compared with. */
export const KNOWN_VARIABLES: readonly string[] = Object.keys(envSchema.shape).filter((k) => k !== SUPERVISOR_VARIABLE);

/**
 * The test suite's and benchmarks' own variables, which their child sluices inherit: tolerated,
 * never suggested (an operator's typo must not be pointed at a test knob).
 */
const isTestVariable = (name: string): boolean => /^SLUICE_(TEST|BENCH|FUZZ)_/.test(name) || name === 'SLUICE_PG_BIN';

/** The settings sluice reads without the SLUICE_ prefix (DATABASE_URL, KAFKA_BROKERS). */
const UNPREFIXED = KNOWN_VARIABLES.filter((k) => !k.startsWith('SLUICE_'));

/**
 * Variables that look meant for sluice but that it does not read: a SLUICE_* name in any case, or a
 * near miss of an unprefixed setting (KAFKA_BROKER, database_url). Each would otherwise leave its
 * setting silently at the default, and an unset DATABASE_URL or KAFKA_BROKERS even starts a
 * stand-in (the embedded database, a local broker).
 */
function unknownVariables(env: Record<string, string | undefined>): ErrorDetail[] {
  const problems: ErrorDetail[] = [];
  for (const name of Object.keys(env).sort()) {
    if (KNOWN_VARIABLES.includes(name) || name === SUPERVISOR_VARIABLE || isTestVariable(name)) continue;
    const upper = name.toUpperCase();
    const ours = upper.startsWith('SLUICE_');
    // Only a close miss of DATABASE_URL or KAFKA_BROKERS: any other variable is somebody else's. Not
    // held against every setting: that was 60-70 % of a start's configuration time (~100 ms), for
    // the ~40 variables of a shell.
    const guess = ours ? suggestion(upper) : UNPREFIXED.find((u) => Math.abs(u.length - upper.length) <= 2 && editDistance(upper, u) <= 2);
    if (guess === undefined && !ours) continue;
    const hint = guess === undefined ? 'remove it, or see README.md#configuration for the settings' : `did you mean ${guess}?`;
    problems.push({ path: name, message: `${name} is not a sluice setting: ${hint}` });
  }
  return problems;
}

/** The setting an unknown (upper-cased) name was probably meant to be; SLUICE_DATABASE_URL means DATABASE_URL. */
function suggestion(upper: string): string | undefined {
  if (KNOWN_VARIABLES.includes(upper)) return upper;
  const unprefixed = upper.startsWith('SLUICE_') ? didYouMean(upper.slice('SLUICE_'.length), UNPREFIXED) : undefined;
  return unprefixed ?? didYouMean(upper, KNOWN_VARIABLES);
}

/**
 * Variables whose absence selects a mode (an embedded database, a local broker, open mode, plain
 * HTTP, no admin API), with what unset means: set but empty is a mistake to report, not a quiet
 * switch to that mode.
 */
const UNSET_MEANS: Record<string, string> = {
  DATABASE_URL: 'unset = the embedded database in SLUICE_DATA_DIR',
  KAFKA_BROKERS: 'unset = serve starts a local broker',
  SLUICE_TENANTS_FILE: 'unset = open mode, loopback only',
  SLUICE_TLS_CERT_FILE: 'unset with SLUICE_TLS_KEY_FILE = plain HTTP',
  SLUICE_TLS_KEY_FILE: 'unset with SLUICE_TLS_CERT_FILE = plain HTTP',
  SLUICE_ADMIN_TOKEN: 'unset = no admin API',
};

function emptyVariables(env: Record<string, string | undefined>): ErrorDetail[] {
  return Object.entries(UNSET_MEANS)
    .filter(([k]) => env[k] === '')
    .map(([k, unset]) => ({ path: k, message: `${k} is set but empty: give it a value, or unset it (${unset})` }));
}

/**
 * SLUICE_MAX_BODY_BYTES_IN_FLIGHT: a body larger than it passes only alone, and while it is held every
 * other request is refused, so it may not be set below SLUICE_MAX_BODY_BYTES; unset, it is 8 MiB or
 * four of the largest bodies, whichever is more.
 */
function bodiesInFlight(e: Env, set: boolean): number {
  if (!set) return Math.max(e.SLUICE_MAX_BODY_BYTES_IN_FLIGHT, 4 * e.SLUICE_MAX_BODY_BYTES);
  if (e.SLUICE_MAX_BODY_BYTES_IN_FLIGHT < e.SLUICE_MAX_BODY_BYTES) {
    const message =
      `SLUICE_MAX_BODY_BYTES_IN_FLIGHT ${e.SLUICE_MAX_BODY_BYTES_IN_FLIGHT} is below SLUICE_MAX_BODY_BYTES ${e.SLUICE_MAX_BODY_BYTES}: ` +
      'a body larger than the bytes in flight passes only alone, and every other request is refused while it is held; raise SLUICE_MAX_BODY_BYTES_IN_FLIGHT (or unset it) or lower SLUICE_MAX_BODY_BYTES';
    throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_MAX_BODY_BYTES_IN_FLIGHT', message }]);
  }
  return e.SLUICE_MAX_BODY_BYTES_IN_FLIGHT;
}

export interface Config {
  http: { host: string; port: number; maxBodyBytes: number; maxBodyBytesInFlight: number };
  logLevel: Env['SLUICE_LOG_LEVEL'];
  nodeId: string;
  writeMode: Env['SLUICE_WRITE_MODE'];
  ingest: { maxBatch: number; maxBatchLines: number; maxJsonDepth: number; maxLineBytes: number; syncOutboxWaitMs: number };
  journal: {
    dir: string;
    segmentBytes: number;
    maxSegmentAgeMs: number;
    preallocate: boolean;
    retentionMs: number;
    retentionBytes: number;
    maintenanceMs: number;
  };
  forwarder: { batchSize: number; lingerMs: number; recentKeys: number; maxUnforwarded: number; snapshotMs: number };
  db: { url: string | undefined; dataDir: string; pool: number };
  partitions: number;
  kafka: {
    brokers: string[] | undefined;
    /** Port of the broker `serve` starts itself when KAFKA_BROKERS is unset. */
    localPort: number;
    topic: string;
    clientId: string;
    compression: Env['SLUICE_KAFKA_COMPRESSION'];
  };
  processor: {
    batchSize: number;
    /** Payload bytes per batch; keep it below the brokers' message.max.bytes. */
    batchBytes: number;
    pollMs: number;
    guarantee: Env['SLUICE_GUARANTEE'];
    /** Transactional ids are `<prefix>-p<partition>`: stable, so a new owner fences a zombie one. */
    transactionalIdPrefix: string;
    progressTopic: string;
    maxAttempts: number;
    retryBaseMs: number;
    retryMaxMs: number;
    rebalanceMs: number;
  };
  outbox: { retentionMs: number; cleanupMs: number };
  /** The tenants file; undefined = open mode (loopback only). */
  tenantsFile: string | undefined;
  /** Tenants with a `tenant` label of their own; the rest are summed under `~other`. */
  metricTenants: number;
  /** How often the named tenants are re-evaluated from the last window's activity. */
  metricTenantsWindowMs: number;
  /** Enables the admin API when set. */
  adminToken: string | undefined;
  /** PEM files of the HTTPS certificate (chain) and its key; undefined = plain HTTP. */
  tls: { certFile: string; keyFile: string } | undefined;
  shutdownTimeoutMs: number;
  /** The local broker's jar cache and java (`serve` without KAFKA_BROKERS). */
  kafkaTools: KafkaTools;
  /** Ingest processes sharing the HTTP port (SLUICE_WORKERS); above 1 a supervisor runs them. */
  workers: number;
  /**
   * `serve` runs its processor in a process of its own (SLUICE_PROCESSOR resolved): always with
   * several workers, never on the embedded database. With it a supervisor runs the node.
   */
  processorApart: boolean;
  /** What this process is when a supervisor started it; undefined for a process started by hand. */
  worker: WorkerPlace | undefined;
  /** The RAM (MiB) the JavaScript engine sizes the heap of a serve, ingest or process process for. */
  memoryMiB: number;
}

/** An ingest worker (1-based, its node id `<SLUICE_NODE_ID>-<index>`) or the processor of a `serve` node. */
export type WorkerPlace = { kind: 'ingest'; index: number } | { kind: 'processor' };

/**
 * Parses the environment; throws ConfigError naming every bad variable at once. `supervised`: this
 * process has the IPC channel of a supervisor that started it (the default: it has when
 * `process.send` exists), the only way SLUICE_WORKER may be set.
 */
export function loadConfig(env: Record<string, string | undefined>, opts: { supervised?: boolean; cores?: number } = {}): Config {
  const supervised = opts.supervised ?? process.send !== undefined;
  // SLUICE_WORKER without a supervisor's channel was set by hand: such a worker would take writes
  // that no processor of its node publishes, and answer /metrics by asking a supervisor that is not there.
  const unsupervised = !supervised && env[SUPERVISOR_VARIABLE] !== undefined && env[SUPERVISOR_VARIABLE] !== '';
  const cleaned = Object.fromEntries(
    Object.entries(env).filter(([k, v]) => v !== undefined && v !== '' && k in envSchema.shape && !(unsupervised && k === SUPERVISOR_VARIABLE)),
  );
  const parsed = envSchema.safeParse(cleaned);
  const misset = [
    ...unknownVariables(env),
    ...emptyVariables(env),
    ...(unsupervised ? [{ path: SUPERVISOR_VARIABLE, message: `${SUPERVISOR_VARIABLE} ${SUPERVISOR_ONLY}` }] : []),
  ];
  if (!parsed.success || misset.length > 0) {
    const details: ErrorDetail[] = [
      ...misset,
      ...(parsed.success ? [] : issueDetails(parsed.error)).map((d) => ({ path: d.path, message: `${d.path} ${d.message}` })),
    ];
    throw new ConfigError(
      `invalid configuration: ${details.map((d) => d.message).join('; ')}`,
      details,
    );
  }
  const e = parsed.data;
  if (e.DATABASE_URL !== undefined && e.SLUICE_DB_POOL < 2) {
    // The processor keeps one connection for its partition locks; with one in all, nothing else could run.
    const message = 'SLUICE_DB_POOL must be at least 2 with DATABASE_URL: the processor reserves a connection for its partition locks';
    throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_DB_POOL', message }]);
  }
  if (e.SLUICE_RETRY_BASE_MS > e.SLUICE_RETRY_MAX_MS) {
    const message = `SLUICE_RETRY_BASE_MS ${e.SLUICE_RETRY_BASE_MS} is above SLUICE_RETRY_MAX_MS ${e.SLUICE_RETRY_MAX_MS}: the first retry would wait longer than the cap; lower SLUICE_RETRY_BASE_MS or raise SLUICE_RETRY_MAX_MS`;
    throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_RETRY_BASE_MS', message }]);
  }
  if (e.SLUICE_TENANTS_FILE === undefined && !isLoopback(e.SLUICE_HOST)) {
    // Without a tenants file anyone who can reach the port may write as any tenant.
    const message = `SLUICE_HOST ${e.SLUICE_HOST} is not a loopback address: without SLUICE_TENANTS_FILE sluice runs open (any client may write as any tenant), which is only allowed on 127.0.0.1, ::1 or localhost; set SLUICE_TENANTS_FILE to require bearer tokens`;
    throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_HOST', message }]);
  }
  if ((e.SLUICE_TLS_CERT_FILE === undefined) !== (e.SLUICE_TLS_KEY_FILE === undefined)) {
    const [set, unset] = e.SLUICE_TLS_CERT_FILE === undefined ? ['SLUICE_TLS_KEY_FILE', 'SLUICE_TLS_CERT_FILE'] : ['SLUICE_TLS_CERT_FILE', 'SLUICE_TLS_KEY_FILE'];
    const message = `${unset} must be set with ${set}: TLS needs both the certificate and its key (PEM files)`;
    throw new ConfigError(`invalid configuration: ${message}`, [{ path: unset, message }]);
  }
  if (e.SLUICE_WORKER === undefined) {
    if (e.SLUICE_WORKERS > 1) workerProblems(e);
    processorPlaceProblems(e);
  }
  return {
    http: { host: e.SLUICE_HOST, port: e.SLUICE_PORT, maxBodyBytes: e.SLUICE_MAX_BODY_BYTES, maxBodyBytesInFlight: bodiesInFlight(e, env.SLUICE_MAX_BODY_BYTES_IN_FLIGHT !== undefined) },
    logLevel: e.SLUICE_LOG_LEVEL,
    nodeId: e.SLUICE_NODE_ID,
    writeMode: e.SLUICE_WRITE_MODE,
    ingest: {
      maxBatch: e.SLUICE_MAX_BATCH,
      maxBatchLines: e.SLUICE_MAX_BATCH_LINES,
      maxJsonDepth: e.SLUICE_MAX_JSON_DEPTH,
      maxLineBytes: e.SLUICE_MAX_LINE_BYTES,
      syncOutboxWaitMs: e.SLUICE_SYNC_OUTBOX_WAIT_MS,
    },
    journal: {
      dir: e.SLUICE_JOURNAL_DIR,
      segmentBytes: e.SLUICE_JOURNAL_SEGMENT_BYTES,
      maxSegmentAgeMs: e.SLUICE_JOURNAL_SEGMENT_MAX_AGE_MS,
      preallocate: e.SLUICE_JOURNAL_PREALLOCATE === 'true',
      retentionMs: e.SLUICE_JOURNAL_RETENTION_MS,
      retentionBytes: e.SLUICE_JOURNAL_RETENTION_BYTES,
      maintenanceMs: e.SLUICE_JOURNAL_MAINTENANCE_MS,
    },
    forwarder: { batchSize: e.SLUICE_FORWARD_BATCH, lingerMs: e.SLUICE_FORWARD_LINGER_MS, recentKeys: e.SLUICE_RECENT_KEYS, maxUnforwarded: e.SLUICE_MAX_UNFORWARDED, snapshotMs: e.SLUICE_DEDUPE_SNAPSHOT_MS },
    db: { url: e.DATABASE_URL, dataDir: e.SLUICE_DATA_DIR, pool: e.SLUICE_DB_POOL },
    partitions: e.SLUICE_PARTITIONS,
    kafka: {
      brokers: e.KAFKA_BROKERS,
      localPort: e.SLUICE_KAFKA_LOCAL_PORT,
      topic: e.SLUICE_KAFKA_TOPIC,
      clientId: e.SLUICE_KAFKA_CLIENT_ID,
      compression: e.SLUICE_KAFKA_COMPRESSION,
    },
    processor: {
      batchSize: e.SLUICE_PUBLISH_BATCH,
      batchBytes: e.SLUICE_PUBLISH_MAX_BYTES,
      pollMs: e.SLUICE_POLL_MS,
      guarantee: e.SLUICE_GUARANTEE,
      transactionalIdPrefix: e.SLUICE_TRANSACTIONAL_ID_PREFIX,
      // One progress topic per deployment (per prefix): only this deployment's producers write to it.
      progressTopic: e.SLUICE_PROGRESS_TOPIC ?? `${e.SLUICE_TRANSACTIONAL_ID_PREFIX}.progress`,
      maxAttempts: e.SLUICE_MAX_ATTEMPTS,
      retryBaseMs: e.SLUICE_RETRY_BASE_MS,
      retryMaxMs: e.SLUICE_RETRY_MAX_MS,
      rebalanceMs: e.SLUICE_REBALANCE_MS,
    },
    outbox: { retentionMs: e.SLUICE_OUTBOX_RETENTION_MS, cleanupMs: e.SLUICE_OUTBOX_CLEANUP_MS },
    tenantsFile: e.SLUICE_TENANTS_FILE,
    metricTenants: e.SLUICE_METRIC_TENANTS,
    metricTenantsWindowMs: e.SLUICE_METRIC_TENANTS_WINDOW_MS,
    adminToken: e.SLUICE_ADMIN_TOKEN,
    tls:
      e.SLUICE_TLS_CERT_FILE === undefined || e.SLUICE_TLS_KEY_FILE === undefined
        ? undefined
        : { certFile: e.SLUICE_TLS_CERT_FILE, keyFile: e.SLUICE_TLS_KEY_FILE },
    shutdownTimeoutMs: e.SLUICE_SHUTDOWN_TIMEOUT_MS,
    kafkaTools: kafkaTools(env),
    workers: e.SLUICE_WORKERS,
    processorApart: processorApart(e, opts.cores ?? availableParallelism()),
    memoryMiB: e.SLUICE_MEMORY_MIB,
    worker: e.SLUICE_WORKER === undefined ? undefined : e.SLUICE_WORKER === 'processor' ? { kind: 'processor' } : { kind: 'ingest', index: Number(e.SLUICE_WORKER) },
  };
}

/**
 * What several workers cannot run with: the embedded database (PGlite serves one connection of one
 * process), and a node id too long to take the workers' `-<index>` suffix.
 */
function workerProblems(e: Env): void {
  const problems: ErrorDetail[] = [];
  if (e.DATABASE_URL === undefined) {
    problems.push({
      path: 'SLUICE_WORKERS',
      message: `SLUICE_WORKERS ${e.SLUICE_WORKERS} needs DATABASE_URL: the embedded database serves one connection of one process, so several worker processes cannot share it; set DATABASE_URL to a Postgres, or SLUICE_WORKERS to 1`,
    });
  }
  const longest = `${e.SLUICE_NODE_ID}-${e.SLUICE_WORKERS}`;
  if (longest.length > NODE_ID_MAX) {
    problems.push({
      path: 'SLUICE_NODE_ID',
      message: `SLUICE_NODE_ID ${e.SLUICE_NODE_ID} is too long for SLUICE_WORKERS ${e.SLUICE_WORKERS}: worker node ids (${longest}) must be at most ${NODE_ID_MAX} characters; shorten SLUICE_NODE_ID`,
    });
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.map((p) => p.message).join('; ')}`, problems);
}

/** SLUICE_PROCESSOR set to a place the rest of the configuration rules out. */
function processorPlaceProblems(e: Env): void {
  let message: string | undefined;
  if (e.SLUICE_PROCESSOR === 'inline' && e.SLUICE_WORKERS > 1) {
    message = `SLUICE_PROCESSOR inline needs SLUICE_WORKERS 1: with ${e.SLUICE_WORKERS} ingest workers serve's processor runs in a process of its own; set SLUICE_PROCESSOR to auto or process, or SLUICE_WORKERS to 1`;
  } else if (e.SLUICE_PROCESSOR === 'process' && e.DATABASE_URL === undefined) {
    message = 'SLUICE_PROCESSOR process needs DATABASE_URL: the embedded database serves one connection of one process, so a processor process of its own could not share it; set DATABASE_URL to a Postgres, or SLUICE_PROCESSOR to auto or inline';
  }
  if (message !== undefined) throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_PROCESSOR', message }]);
}

/**
 * `auto`: apart in a production setup (a Postgres and a Kafka cluster) with a second core to run it.
 * On one core the two processes would only take turns, at the cost of a process and its memory; the
 * local broker (no KAFKA_BROKERS) is a development setup, whose broker the one process owns.
 */
function processorApart(e: Env, cores: number): boolean {
  if (e.SLUICE_WORKERS > 1 || e.SLUICE_PROCESSOR === 'process') return true;
  if (e.SLUICE_PROCESSOR === 'inline') return false;
  return e.DATABASE_URL !== undefined && e.KAFKA_BROKERS !== undefined && cores >= 2;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** How the local Kafka broker is run: where its jars are cached, and which java runs it. */
export interface KafkaTools {
  cacheDir: string;
  java: string;
}

/**
 * From SLUICE_CACHE_DIR, else XDG_CACHE_HOME; JAVA_HOME. An empty value means the default, as for every
 * setting. `loadConfig` reads it with the rest; commands and scripts without a Config pass their environment.
 */
export function kafkaTools(env: Record<string, string | undefined>): KafkaTools {
  const cacheDir = env.SLUICE_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sluice');
  return { cacheDir, java: env.JAVA_HOME ? join(env.JAVA_HOME, 'bin', 'java') : 'java' };
}
