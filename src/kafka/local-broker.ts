// A throwaway single-node Kafka broker (KRaft, combined broker+controller) for
// development and tests. The jars come from Maven Central once and are cached
// outside the repo, so nothing but a JDK and Maven is needed: no Docker.
import { Admin, FindCoordinatorKeyTypes, Producer } from '@platformatic/kafka';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { acquirePidLock, pidLockHolder, procStat } from '../pid-lock.ts';
import { chmod, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Subprocess } from 'bun';
import type { KafkaTools } from '../config.ts';
import { SluiceError } from '../errors.ts';

export interface LocalBrokerOptions {
  port?: number;
  dataDir?: string;
  /** Where the jars are cached and which java runs them: from the caller's configuration or environment. */
  tools: KafkaTools;
  log?: (line: string) => void;
  /**
   * JIT with C1 only: on a small, busy machine the broker is ready seconds sooner because it spends
   * less CPU compiling, at the cost of slower steady-state code. For `serve`'s own development
   * broker; benchmarks and tests keep the default JIT.
   */
  fastStart?: boolean;
  /** Told the pid of a broker an earlier sluice left running on `dataDir`, once it was stopped. */
  onLeftBehindStopped?: (pid: number) => void;
}

export interface LocalBroker {
  readonly bootstrap: string;
  readonly port: number;
  readonly dataDir: string;
  /** The JVM's: what a fault test signals (SIGSTOP freezes the broker without closing a connection). */
  readonly pid: number;
  /** Settles when the JVM exits, for whatever reason: after stop(), or on its own (a crash). */
  readonly exited: Promise<number>;
  stop(): Promise<void>;
  /** SIGKILL, as a crash would end it (a data directory that was given is kept, to start again on). */
  kill(): Promise<void>;
}

/** Undefined when `port` on 127.0.0.1 can be bound now; else why not (a port taken is the usual). */
export async function portProblem(port: number): Promise<string | undefined> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      resolve(err.code === 'EADDRINUSE' ? `port ${port} on 127.0.0.1 is already in use by another process` : `port ${port} on 127.0.0.1 cannot be bound: ${err.message}`);
    });
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(undefined)));
  });
}

/** The cluster id the storage format wrote into a data directory, so the broker that answers can be told apart from a foreign one. */
function formattedClusterId(dataDir: string): string | undefined {
  try {
    return /^cluster\.id=(.+)$/m.exec(readFileSync(join(dataDir, 'logs', 'meta.properties'), 'utf8'))?.[1]?.trim();
  } catch {
    return undefined;
  }
}

/**
 * In a broker's data directory: its JVM's pid and the pid of the sluice that started it. A later start
 * on the same directory tells from it a broker left behind (its sluice is gone) from a live one.
 */
const PID_FILE = 'broker.pid';
const LEFT_BEHIND_GRACE_MS = 10_000;

/** The command line of a process, or undefined when there is none (gone, a zombie, or not Linux). */
function commandLine(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw === '' ? undefined : raw.replace(/\0$/, '').split('\0');
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a broker JVM run on exactly this config file: the check before any signal is sent to it. */
function isBrokerJvm(pid: number, propsPath: string): boolean {
  const args = commandLine(pid);
  const main = args?.indexOf('kafka.Kafka') ?? -1;
  return main >= 0 && args?.[main + 1] === propsPath;
}

/**
 * In a broker's data directory, the pid of the sluice using it. Taken before anything there is read or
 * written: two brokers on one directory rewrite each other's config and pid file, and the second
 * one's controller disturbs the first one's quorum.
 */
const LOCK_FILE = 'broker.lock';

/** A data directory another live process runs a broker on: the start is refused, nothing of the other one touched. */
export class BrokerDataDirInUse extends SluiceError {
  /** `process <pid>`, with its command line when it can be read: what to stop. */
  readonly holderName: string;

  constructor(
    readonly dataDir: string,
    readonly holder: number,
  ) {
    const args = commandLine(holder);
    const holderName = `process ${holder}${args === undefined ? '' : ` (${args.join(' ').slice(0, 200)})`}`;
    super('address_unavailable', `the Kafka data directory ${dataDir} is in use by ${holderName}: stop that process, or give this broker another data directory`);
    this.holderName = holderName;
  }
}

/** The live process holding `dataDir`'s broker lock, if any: what a start on it would be refused for. */
export function brokerDataDirHolder(dataDir: string): number | undefined {
  return pidLockHolder(join(resolve(dataDir), LOCK_FILE));
}

/** Takes `dataDir`'s broker lock or throws BrokerDataDirInUse; a lock whose holder is gone is taken over. */
function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  return acquirePidLock(join(dataDir, LOCK_FILE), (holder) => new BrokerDataDirInUse(dataDir, holder));
}

/**
 * The pid of a broker that an earlier sluice started on `dataDir` and left running when it died (its
 * pid file names a JVM running this directory's config, whose parent is no longer that sluice).
 * Undefined for anything else, a live sluice's broker included: those are never stopped.
 */
export function leftBehindBroker(dataDir: string): number | undefined {
  const dir = resolve(dataDir);
  let pids: number[];
  try {
    pids = readFileSync(join(dir, PID_FILE), 'utf8').trim().split(' ').map(Number);
  } catch {
    return undefined;
  }
  const [jvm, owner] = pids;
  if (jvm === undefined || owner === undefined || !Number.isSafeInteger(jvm) || jvm <= 0) return undefined;
  if (!isBrokerJvm(jvm, join(dir, 'server.properties')) || procStat(jvm)?.ppid === owner) return undefined;
  return jvm;
}

/** Stops a broker left behind on `dataDir` (SIGTERM, SIGKILL after a grace) and returns its pid; undefined when there was none. */
async function stopLeftBehindBroker(dataDir: string): Promise<number | undefined> {
  const pid = leftBehindBroker(dataDir);
  if (pid === undefined) return undefined;
  const propsPath = join(resolve(dataDir), 'server.properties');
  const signal = (name: NodeJS.Signals): void => {
    try {
      process.kill(pid, name);
    } catch {
      // Already gone.
    }
  };
  signal('SIGTERM');
  const killAt = Date.now() + LEFT_BEHIND_GRACE_MS;
  let killed = false;
  // A zombie has no command line and holds no port any more: gone as far as a restart is concerned.
  while (isBrokerJvm(pid, propsPath)) {
    if (!killed && Date.now() > killAt) {
      signal('SIGKILL');
      killed = true;
    }
    await Bun.sleep(50);
  }
  return pid;
}

/**
 * Run beside the JVM with a pipe from this process on its stdin: the read ends when this process is
 * gone, SIGKILL included, which no exit handler sees, and the JVM is killed then rather than left
 * holding its port. `$1` is the JVM's pid, `$2` its config file: the pid is killed only while it is
 * still that JVM. A shell, not another Bun: ~1 MiB next to the broker. Its pattern leaves out the
 * `kafka.` of the main class so that `pgrep -f kafka.Kafka` finds the JVM alone.
 */
const WATCHDOG_SCRIPT = [
  'read -r _',
  'case "$(tr "\\000" " " < "/proc/$1/cmdline" 2>/dev/null)" in',
  '  *".Kafka $2 "*) kill -KILL "$1" ;;',
  'esac',
].join('\n');

const POM_PATH = resolve(import.meta.dir, '../../scripts/kafka/pom.xml');
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;
const READY_TOPIC = '__sluice_ready';
const TAIL_LINES = 40;

// The pom is the single place the Kafka version is pinned; the cache key follows it.
const KAFKA_VERSION = ((): string => {
  const match = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(POM_PATH, 'utf8'));
  if (!match?.[1]) throw new SluiceError('internal', `kafka.version property not found in ${POM_PATH}`);
  return match[1].trim();
})();

export function kafkaClasspath(libsDir: string): string {
  // A JVM classpath wildcard keeps the command line short and needs no directory listing.
  return join(libsDir, '*');
}

// Concurrent callers in one process share a single download.
const inFlightDownloads = new Map<string, Promise<string>>();

/** Returns the directory holding the broker jars, downloading them with Maven on first use. */
export async function ensureKafkaJars(cacheDir: string): Promise<string> {
  const libsDir = join(cacheDir, `kafka-${KAFKA_VERSION}`, 'libs');
  let pending = inFlightDownloads.get(libsDir);
  if (!pending) {
    pending = downloadJars(libsDir).finally(() => inFlightDownloads.delete(libsDir));
    inFlightDownloads.set(libsDir, pending);
  }
  return pending;
}

async function hasKafkaJar(libsDir: string): Promise<boolean> {
  try {
    return (await readdir(libsDir)).includes(`kafka_2.13-${KAFKA_VERSION}.jar`);
  } catch {
    return false;
  }
}

async function downloadJars(libsDir: string): Promise<string> {
  if (await hasKafkaJar(libsDir)) return libsDir;
  const parent = dirname(libsDir);
  await mkdir(parent, { recursive: true });
  // Download into a private dir and rename it into place, so a crash never leaves a
  // half-filled cache and a concurrent process simply loses the rename race.
  const staging = await mkdtemp(join(parent, 'libs.partial-'));
  try {
    await run([
      'mvn', '-q', '-B', '-Dstyle.color=never', '-f', POM_PATH,
      'dependency:copy-dependencies', `-DoutputDirectory=${staging}`,
    ]);
    await chmod(staging, 0o755); // mkdtemp makes it 0700
    try {
      await rename(staging, libsDir);
    } catch (error) {
      if (!(await hasKafkaJar(libsDir))) throw error;
    }
    return libsDir;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function freePorts(count: number): Promise<number[]> {
  // Keep every probe socket open until all are bound so the ports are distinct.
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      const server = createServer();
      return new Promise<ReturnType<typeof createServer>>((ok, fail) => {
        server.once('error', fail);
        server.listen(0, '127.0.0.1', () => ok(server));
      });
    }),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new SluiceError('internal', 'unexpected server address');
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise<void>((ok) => server.close(() => ok()))));
  return ports;
}

function serverProperties(dataDir: string, port: number, controllerPort: number): string {
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': join(dataDir, 'logs'),
    'num.partitions': 1,
    'default.replication.factor': 1,
    'min.insync.replicas': 1,
    'auto.create.topics.enable': true,
    // Single node: every internal topic must fit on one replica.
    'offsets.topic.replication.factor': 1,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'share.coordinator.state.topic.replication.factor': 1,
    'share.coordinator.state.topic.min.isr': 1,
    // The first group join / transaction creates these topics; 50 partitions each is slow on 2 cores.
    'offsets.topic.num.partitions': 4,
    'transaction.state.log.num.partitions': 4,
    'share.coordinator.state.topic.num.partitions': 4,
    'group.initial.rebalance.delay.ms': 0,
    // Few threads: this runs next to the test process on small CI machines.
    'num.network.threads': 2,
    'num.io.threads': 2,
    'num.recovery.threads.per.data.dir': 1,
    'background.threads': 2,
  };
  return `${Object.entries(props)
    .map(([key, value]) => `${key}=${value}`)
    .join('\n')}\n`;
}

const JVM_OPTS = [
  '-Xms64m',
  '-Xmx512m',
  // One GC thread and no G1 regions: smaller footprint next to the tests on a 2-core machine.
  '-XX:+UseSerialGC',
  '-Djava.awt.headless=true',
  '-Dorg.slf4j.simpleLogger.showDateTime=true',
  "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
];

/** Runs a short-lived command and returns its stdout; on failure the error carries the output's tail. */
async function run(cmd: string[]): Promise<string> {
  const proc = Bun.spawn({ cmd, stdout: 'pipe', stderr: 'pipe' });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new SluiceError('kafka_unavailable', `${cmd.join(' ')} failed (exit ${code}):\n${lastLines(out + err)}`);
  return out;
}

function runKafkaTool(java: string, classpath: string, args: string[]): Promise<string> {
  // The tools log the whole broker config at INFO; only warnings are worth keeping.
  return run([java, ...JVM_OPTS, '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-cp', classpath, ...args]);
}

function lastLines(text: string): string {
  return text.trimEnd().split('\n').slice(-TAIL_LINES).join('\n');
}

interface LogDigest {
  firstErrors: string[];
  tail: string[];
}

/**
 * Copies a child stream to the log file, keeping the first errors and the last lines in memory:
 * a failed startup buries its cause under hundreds of shutdown lines.
 */
async function pump(
  stream: ReadableStream<Uint8Array>,
  sink: WriteStream,
  digest: LogDigest,
  log?: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let partial = '';
  const emit = (line: string): void => {
    if (digest.firstErrors.length < 8 && /\bERROR\b|Exception\b/.test(line)) digest.firstErrors.push(line);
    digest.tail.push(line);
    if (digest.tail.length > TAIL_LINES) digest.tail.shift();
    log?.(line);
  };
  for await (const chunk of stream) {
    sink.write(chunk);
    partial += decoder.decode(chunk, { stream: true });
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    lines.forEach(emit);
  }
  if (partial) emit(partial);
}

/**
 * True once the broker does what callers need first: a topic can be created and gets a leader, and
 * the group and transaction coordinators and producer-id allocation are loaded. Each of the last
 * three answers "not available yet" on first use, which costs ~1 s with the client's default
 * retryDelay, so warming them here saves seconds per test run.
 */
async function probeReady(bootstrap: string, clusterId: string | undefined): Promise<boolean> {
  const options = {
    clientId: 'sluice-local-broker-probe',
    bootstrapBrokers: [bootstrap],
    retries: 0,
    timeout: 5_000,
    connectTimeout: 2_000,
  };
  const admin = new Admin(options);
  const producer = new Producer(options);
  try {
    try {
      await admin.createTopics({ topics: [READY_TOPIC], partitions: 1, replicas: 1 });
    } catch (error) {
      // A previous probe, or a previous run on a reused dataDir, created it.
      if (!/already exists/i.test(String(error))) throw error;
    }
    const metadata = await admin.metadata({ topics: [READY_TOPIC], forceUpdate: true });
    if (clusterId !== undefined && metadata.id !== clusterId) {
      throw new ForeignBroker(`another Kafka broker (cluster ${metadata.id}) answers on ${bootstrap}, not the one started here (cluster ${clusterId})`);
    }
    if ((metadata.topics.get(READY_TOPIC)?.partitions[0]?.leader ?? -1) < 0) return false;
    await admin.findCoordinator({ keyType: FindCoordinatorKeyTypes.GROUP, keys: [READY_TOPIC] });
    await admin.findCoordinator({ keyType: FindCoordinatorKeyTypes.TRANSACTION, keys: [READY_TOPIC] });
    await producer.initIdempotentProducer({});
    return true;
  } catch (error) {
    if (error instanceof ForeignBroker) throw error;
    return false;
  } finally {
    await Promise.allSettled([admin.close(), producer.close()]);
  }
}

/** Somebody else's broker holds the port: never published to, so the start fails. */
class ForeignBroker extends SluiceError {
  constructor(message: string) {
    super('address_unavailable', message);
  }
}

/**
 * A cluster id as `StorageTool random-uuid` makes one (Kafka's Uuid: 16 random bytes, base64url
 * without padding, never starting with '-'), without starting a JVM for it.
 */
function randomClusterId(): string {
  for (;;) {
    const id = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/**
 * Starts the broker and resolves once it is ready. Fails, never falls back, when the port is taken,
 * the JVM exits, or the broker that answers on the port is not the one started here (its cluster id
 * differs): a caller must never end up publishing to somebody else's broker. The one exception to a
 * taken port is a broker an earlier sluice left running on the same `dataDir`: that one is stopped first.
 */
export async function startLocalBroker(opts: LocalBrokerOptions): Promise<LocalBroker> {
  // Before anything in the directory is looked at: another live sluice's broker there is refused, not disturbed.
  let unlock = opts.dataDir === undefined ? undefined : lockDataDir(resolve(opts.dataDir));
  const release = (): void => {
    unlock?.();
    unlock = undefined;
  };
  try {
    return await startLockedBroker(opts, release);
  } catch (error) {
    release();
    throw error;
  }
}

/** startLocalBroker once `opts.dataDir`, if given, is locked; `release` unlocks it, at stop. */
async function startLockedBroker(opts: LocalBrokerOptions, release: () => void): Promise<LocalBroker> {
  if (opts.dataDir !== undefined) {
    const stopped = await stopLeftBehindBroker(opts.dataDir);
    if (stopped !== undefined) opts.onLeftBehindStopped?.(stopped);
  }
  if (opts.port !== undefined) {
    const problem = await portProblem(opts.port);
    if (problem !== undefined) throw new SluiceError('address_unavailable', problem);
  }
  const classpath = kafkaClasspath(await ensureKafkaJars(opts.tools.cacheDir));
  const [freeA, freeB] = await freePorts(2);
  if (freeA === undefined || freeB === undefined) throw new SluiceError('address_unavailable', 'could not allocate ports');
  const port = opts.port ?? freeA;
  const controllerPort = freeB === port ? freeA : freeB;
  const bootstrap = `127.0.0.1:${port}`;
  const ownsDataDir = opts.dataDir === undefined;
  // Absolute: the JVM runs with dataDir as its working directory.
  const dataDir = resolve(opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'sluice-kafka-'))));
  const propsPath = join(dataDir, 'server.properties');
  const pidPath = join(dataDir, PID_FILE);
  const cleanupDataDir = async (): Promise<void> => {
    if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
  };

  const digest: LogDigest = { firstErrors: [], tail: [] };
  let child: Subprocess<'ignore', 'pipe', 'pipe'>;
  let watchdog: Subprocess<'pipe', 'ignore', 'ignore'>;
  let logFile: WriteStream;
  let pumps: Promise<unknown>;
  try {
    await mkdir(dataDir, { recursive: true });
    await writeFile(propsPath, serverProperties(dataDir, port, controllerPort));
    // A reused dataDir keeps its cluster id: formatting it again with a new id is an error, not a no-op.
    if (!existsSync(join(dataDir, 'logs', 'meta.properties'))) {
      const clusterId = randomClusterId();
      await runKafkaTool(opts.tools.java, classpath, ['kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', propsPath, '-g']);
    }
    logFile = createWriteStream(join(dataDir, 'broker.log'), { flags: 'a' });
    child = Bun.spawn({
      cmd: [opts.tools.java, ...JVM_OPTS, ...(opts.fastStart === true ? ['-XX:TieredStopAtLevel=1'] : []), '-cp', classpath, 'kafka.Kafka', propsPath],
      cwd: dataDir,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    try {
      watchdog = Bun.spawn({
        cmd: ['/bin/sh', '-c', WATCHDOG_SCRIPT, 'sluice-kafka-watchdog', String(child.pid), propsPath],
        stdin: 'pipe',
        stdout: 'ignore',
        stderr: 'ignore',
      });
    } catch (error) {
      // No broker without its watchdog: one that could outlive this process is the bug it prevents.
      child.kill('SIGKILL');
      throw error;
    }
    // It must not keep this process alive: it is there for when this process is gone.
    watchdog.unref();
    pumps = Promise.allSettled([
      pump(child.stdout, logFile, digest, opts.log),
      pump(child.stderr, logFile, digest, opts.log),
    ]);
  } catch (error) {
    await cleanupDataDir();
    throw error;
  }

  // An exit without stop() kills the JVM at once; a SIGKILL of this process is the watchdog's case.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
    release();
  };
  process.once('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await child.exited;
        clearTimeout(timer);
      }
      watchdog.kill('SIGKILL');
      await rm(pidPath, { force: true });
      release();
      await pumps;
      await new Promise<void>((ok) => logFile.end(() => ok()));
      await cleanupDataDir();
    })();
    return stopping;
  };

  try {
    writeFileSync(pidPath, `${child.pid} ${process.pid}\n`);
  } catch (error) {
    await stop();
    throw error;
  }

  const clusterId = formattedClusterId(dataDir);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (exited || Date.now() > deadline) {
      await stop();
      const why = exited
        ? `exited early (${child.exitCode ?? child.signalCode})`
        : `not ready after ${READY_TIMEOUT_MS} ms`;
      // The first line stands alone (serve reports only it), so it carries the first error if there was one.
      const first = digest.firstErrors[0] === undefined ? ' with no error logged' : `: ${digest.firstErrors[0]}`;
      const errors = digest.firstErrors.length ? `\nfirst errors:\n${digest.firstErrors.join('\n')}` : '';
      throw new SluiceError('kafka_unavailable', `kafka broker ${why}${first}${errors}\nbroker.log tail:\n${digest.tail.join('\n')}`);
    }
    // A probe against a port someone else holds can hang until its timeout; the JVM exiting ends it early.
    let ready: boolean;
    try {
      ready = await Promise.race([probeReady(bootstrap, clusterId), child.exited.then(() => false)]);
    } catch (error) {
      await stop();
      const errors = digest.firstErrors.length ? `; its first errors:\n${digest.firstErrors.join('\n')}` : '';
      const code = error instanceof SluiceError ? error.code : 'kafka_unavailable';
      throw new SluiceError(code, `${(error as Error).message}${errors}`, { cause: error });
    }
    if (ready) break;
    await Bun.sleep(100);
  }

  const kill = (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return stop();
  };

  return { bootstrap, port, dataDir, pid: child.pid, exited: child.exited, stop, kill };
}
