// What `bun run bench` needs beyond Bun, checked (and installed where it may) before any measurement,
// so a missing tool stops the run in its first seconds with every problem listed, never at its end.
// README.md, "Benchmarks", "What it needs".
import postgres from 'postgres';
import { kafkaTools } from '../src/config.ts';
import { ensureKafkaJars } from '../src/kafka/local-broker.ts';
import { ensureKafkaTools } from './baselines/kafka-perf.ts';
import { childOutput } from './child.ts';
import { ADMIN_URL } from './database.ts';
import { procReadable } from './proc.ts';

/** A command and the Debian package that brings it. wrk's Lua scripting is built in (LuaJIT comes with its package). */
interface Tool {
  command: string;
  aptPackage: string;
  why: string;
}

const WRK: Tool = { command: 'wrk', aptPackage: 'wrk', why: 'the HTTP load generator' };
const JAVA: Tool = { command: 'java', aptPackage: 'default-jre-headless', why: 'the Kafka broker and Kafka ProducerPerformance (Java 17 or later)' };
const MAVEN: Tool = { command: 'mvn', aptPackage: 'maven', why: 'fetches the Kafka jars from Maven Central once' };

const canApt = (): boolean => process.getuid?.() === 0 && Bun.which('apt-get') !== null;
const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

function present(tool: Tool): boolean {
  if (tool.command === 'java' && process.env.JAVA_HOME !== undefined) return true;
  return Bun.which(tool.command) !== null;
}

/** Installs with apt-get when running as root; a fresh machine's empty package lists are updated once on the first miss. */
async function ensureTool(tool: Tool, say: (line: string) => void, aptUpdated: { done: boolean }): Promise<string | undefined> {
  if (present(tool)) return undefined;
  const manual = `${tool.command} (${tool.why}) is missing: install it with \`sudo apt-get install -y ${tool.aptPackage}\` (Debian/Ubuntu)`;
  if (!canApt()) return manual;
  say(`${tool.command} not found: installing Debian's ${tool.aptPackage} with apt-get (running as root)`);
  const install = (): Promise<string> => childOutput(['apt-get', 'install', '-y', '-q', '--no-install-recommends', tool.aptPackage], aptEnv);
  try {
    await install();
  } catch (first) {
    if (aptUpdated.done) return `${manual}; apt-get failed: ${(first as Error).message}`;
    aptUpdated.done = true;
    try {
      await childOutput(['apt-get', 'update', '-q'], aptEnv);
      await install();
    } catch (err) {
      return `${manual}; apt-get failed: ${(err as Error).message}`;
    }
  }
  return present(tool) ? undefined : `${manual}; apt-get ran but \`${tool.command}\` is still not on PATH`;
}

async function postgresProblem(): Promise<string | undefined> {
  const sql = postgres(ADMIN_URL, { max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    return undefined;
  } catch (err) {
    const where = new URL(ADMIN_URL);
    return (
      `Postgres is not reachable at ${where.host} (${(err as Error).message}): start it, or point ` +
      'SLUICE_BENCH_DATABASE_URL at a server where the bench may drop and create its own databases'
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * Checks everything the run will use, installs what it may, and throws one error listing every
 * problem left. `growth` needs Postgres only (no load generator, no Kafka).
 */
export async function ensureRequirements(opts: { growth: boolean; say: (line: string) => void }): Promise<void> {
  const problems: string[] = [];
  const db = await postgresProblem();
  if (db !== undefined) problems.push(db);
  if (!procReadable()) problems.push('no /proc here: the bench reads peak RSS and CPU time from Linux\'s /proc, so it runs on Linux only');
  if (!opts.growth) {
    const aptUpdated = { done: false };
    for (const tool of [WRK, JAVA, MAVEN]) {
      const problem = await ensureTool(tool, opts.say, aptUpdated);
      if (problem !== undefined) problems.push(problem);
    }
    if (present(JAVA) && present(MAVEN)) {
      opts.say('Kafka broker jars and kafka-tools (Maven Central, cached after the first run)');
      for (const [what, fetch] of [['the Kafka broker jars', () => ensureKafkaJars(kafkaTools(process.env).cacheDir)], ['kafka-tools (ProducerPerformance)', ensureKafkaTools]] as const) {
        try {
          await fetch();
        } catch (err) {
          problems.push(`could not fetch ${what} with Maven: ${(err as Error).message}`);
        }
      }
    }
  }
  if (problems.length > 0) throw new Error(`the bench cannot run here yet:\n${problems.map((p) => `- ${p}`).join('\n')}`);
}
