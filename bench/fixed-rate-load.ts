// A fixed-rate load generator (what wrk2 does and wrk does not), run as its own process: one JSON event
// per request at `rate` requests a second for `seconds`, each payload carrying its send time (`sent_at`,
// ms since the epoch) so a Kafka reader can tell how long the event took to get there. Events sent in
// the first second are marked `warmup`. Requests go over keep-alive connections of bench/http1-client.ts,
// one in flight per connection, opened as needed. Prints one JSON summary line on stdout.
import { Http1Connection } from './http1-client.ts';
import { summarize } from './stats.ts';

const [url, rateArg, secondsArg, runId] = process.argv.slice(2);
const token = process.env.BENCH_TOKEN ?? '';
const tenant = process.env.BENCH_TENANT ?? '';
const payload = JSON.stringify(JSON.parse(process.env.BENCH_PAYLOAD ?? '{}') as Record<string, unknown>);
if (url === undefined || runId === undefined) throw new Error('usage: fixed-rate-load.ts <url> <rate> <seconds> <run id>');
const target = new URL(url);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
// More in flight than this means sluice has fallen behind: further sends are counted as missed.
const MAX_IN_FLIGHT = 1024;
const WARMUP_MS = 1_000;

const head =
  `POST /v1/events HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: application/json\r\n` +
  `Authorization: Bearer ${token}\r\nX-Tenant-Id: ${tenant}\r\nContent-Length: `;
const idle: Http1Connection[] = [];
const latencies: number[] = [];
let sent = 0;
let ok = 0;
let failed = 0;
let missed = 0;
let inFlight = 0;
let errorsShown = 0;
let settled: (() => void) | undefined;

async function connection(): Promise<Http1Connection> {
  for (let conn = idle.pop(); conn !== undefined; conn = idle.pop()) if (conn.usable) return conn;
  return Http1Connection.open(target.hostname, Number(target.port));
}

async function send(n: number, started: number): Promise<void> {
  const t0 = performance.now();
  const sentAt = Date.now();
  // The payload's last member is replaced: `{…,"sent_at":…,"warmup":…}`, as the bench's reader parses it.
  const body = `{"dedupe_key":"${runId}-${n}","payload":${payload.slice(0, -1)}${payload.length > 2 ? ',' : ''}"sent_at":${sentAt},"warmup":${sentAt - started < WARMUP_MS}}}`;
  const bytes = Buffer.from(`${head}${Buffer.byteLength(body)}\r\n\r\n${body}`);
  inFlight++;
  try {
    const conn = await connection();
    const status = await conn.request(bytes);
    idle.push(conn);
    if (status === 202) ok++;
    else failed++;
    latencies.push(performance.now() - t0);
  } catch (err) {
    failed++;
    if (errorsShown++ < 5) console.error(`request ${n}: ${(err as Error).message}`);
  } finally {
    inFlight--;
    if (inFlight === 0) settled?.();
  }
}

const started = Date.now();
const t0 = performance.now();
const end = t0 + seconds * 1000;
for (let now = t0; now < end; now = performance.now()) {
  const due = Math.floor(((now - t0) / 1000) * rate);
  while (sent + missed < due) {
    if (inFlight >= MAX_IN_FLIGHT) missed++;
    else void send(sent++, started);
  }
  await Bun.sleep(1);
}
if (inFlight > 0) await new Promise<void>((resolve) => (settled = resolve));
for (const conn of idle) conn.close();
const elapsedS = (performance.now() - t0) / 1000;
const s = summarize(latencies);
console.log(JSON.stringify({ sent, ok, failed, missed, elapsed_s: elapsedS, rate: ok / elapsedS, p50_ms: s.p50Ms, p99_ms: s.p99Ms, max_ms: s.maxMs }));
