import { chmod, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { childOutput } from '../child.ts';
import type { LatencySummary } from '../stats.ts';

export interface ProducerCeiling extends LatencySummary {
  recordsPerS: number;
  records: number;
}

const POM = join(import.meta.dir, '..', 'kafka-tools', 'pom.xml');
const KAFKA_VERSION = '4.2.0';

/** kafka-tools and its client jars, fetched once with Maven next to the broker's jars. */
export async function ensureKafkaTools(): Promise<string> {
  const root = process.env.SLUICE_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'sluice');
  const libs = join(root, `kafka-tools-${KAFKA_VERSION}`, 'libs');
  const present = await readdir(libs).catch(() => [] as string[]);
  if (present.includes(`kafka-tools-${KAFKA_VERSION}.jar`)) return libs;
  await mkdir(dirname(libs), { recursive: true });
  // Fetched into a private directory and renamed into place: an interrupted fetch leaves no half cache.
  const staging = await mkdtemp(join(dirname(libs), 'libs.partial-'));
  try {
    await childOutput(['mvn', '-q', '-B', '-Dstyle.color=never', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${staging}`]);
    await chmod(staging, 0o755);
    await rename(staging, libs);
    return libs;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * The Kafka ceiling: Apache Kafka's own Java producer perf tool, acks=all, records of the same size as
 * sluice publishes, as fast as it can, against the same broker.
 */
export async function measureProducerCeiling(opts: {
  bootstrap: string;
  topic: string;
  records: number;
  recordBytes: number;
  timeoutMs: number;
}): Promise<ProducerCeiling> {
  const libs = await ensureKafkaTools();
  const out = await childOutput(
    [
      'java', '-Xms64m', '-Xmx512m', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-cp', join(libs, '*'),
      'org.apache.kafka.tools.ProducerPerformance',
      '--topic', opts.topic,
      '--num-records', String(opts.records),
      '--record-size', String(opts.recordBytes),
      '--throughput', '-1',
      '--producer-props', `bootstrap.servers=${opts.bootstrap}`, 'acks=all',
    ],
    process.env,
    opts.timeoutMs,
  );
  // The last summary line: "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max
  // latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
  const summary = out
    .split('\n')
    .map((l) => /^(\d+) records sent, ([\d.]+) records\/sec .* ([\d.]+) ms max latency, (\d+) ms 50th, \d+ ms 95th, (\d+) ms 99th/.exec(l))
    .filter((m) => m !== null)
    .at(-1);
  if (summary === undefined) throw new Error(`ProducerPerformance printed no summary:\n${out}`);
  const [, records, rate, max, p50, p99] = summary.map(Number);
  return { records: records ?? 0, recordsPerS: rate ?? 0, p50Ms: p50 ?? 0, p99Ms: p99 ?? 0, maxMs: max ?? 0 };
}
