import { join } from 'node:path';
import { childOutput } from './child.ts';

export interface LoadShape {
  /** Events per request: 1 sends application/json, more sends application/x-ndjson. */
  lines: number;
  connections: number;
  durationS: number;
}

export interface LoadTarget {
  url: string;
  token: string;
  tenant: string;
  /** One event with `%s` where its dedupe_key goes. */
  template: string;
  /** Makes the run's keys unique across runs against the same outbox. */
  runId: string;
}

export interface WrkResult {
  requests: number;
  /** Requests answered 2xx. */
  ok: number;
  /** Requests answered 2xx per second. */
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Non-2xx answers, socket errors and timeouts. */
  errors: number;
}

const SCRIPT = join(import.meta.dir, 'lua', 'post.lua');

export async function runWrk(target: LoadTarget, shape: LoadShape): Promise<WrkResult> {
  const env = {
    ...process.env,
    BENCH_PATH: '/v1/events',
    BENCH_CONTENT_TYPE: shape.lines === 1 ? 'application/json' : 'application/x-ndjson',
    BENCH_LINES: String(shape.lines),
    BENCH_TEMPLATE: target.template,
    BENCH_RUN: target.runId,
    BENCH_TOKEN: target.token,
    BENCH_TENANT: target.tenant,
  };
  const threads = Math.min(2, shape.connections);
  const out = await childOutput(
    ['wrk', `-t${threads}`, `-c${shape.connections}`, `-d${shape.durationS}s`, '--timeout', '10s', '-s', SCRIPT, target.url],
    env,
  );
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (line === undefined) throw new Error(`wrk printed no result line:\n${out}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length)) as Record<string, number>;
  const n = (key: string): number => r[key] ?? 0;
  const errors = n('connect_errors') + n('read_errors') + n('write_errors') + n('status_errors') + n('timeouts');
  const ok = n('requests') - n('status_errors');
  return {
    requests: n('requests'),
    ok,
    requestsPerS: ok / (n('duration_us') / 1e6),
    p50Ms: n('p50_us') / 1000,
    p99Ms: n('p99_us') / 1000,
    maxMs: n('max_us') / 1000,
    errors,
  };
}
