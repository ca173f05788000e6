// A fixed-rate load generator (what wrk2 does and wrk does not), run as its own process: one JSON event
// per request at `rate` requests a second for `seconds`, each payload carrying its send time (`sent_at`,
// ms since the epoch) so a Kafka reader can tell how long the event took to get there. Events sent in
// the first second are marked `warmup`. Prints one JSON summary line on stdout.
import { summarize } from './stats.ts';

const [url, rateArg, secondsArg, runId] = process.argv.slice(2);
const token = process.env.BENCH_TOKEN ?? '';
const tenant = process.env.BENCH_TENANT ?? '';
const payload = JSON.parse(process.env.BENCH_PAYLOAD ?? '{}') as Record<string, unknown>;
if (url === undefined || runId === undefined) throw new Error('usage: fixed-rate-load.ts <url> <rate> <seconds> <run id>');
const rate = Number(rateArg);
const seconds = Number(secondsArg);
// More in flight than this means sluice has fallen behind: further sends are counted as missed.
const MAX_IN_FLIGHT = 1024;
const WARMUP_MS = 1_000;

const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'X-Tenant-Id': tenant };
const latencies: number[] = [];
let sent = 0;
let ok = 0;
let failed = 0;
let missed = 0;
let inFlight = 0;
const pending = new Set<Promise<void>>();

function send(n: number, started: number): void {
  const sentAt = Date.now();
  const body = JSON.stringify({
    dedupe_key: `${runId}-${n}`,
    payload: { ...payload, sent_at: sentAt, warmup: sentAt - started < WARMUP_MS },
  });
  const t0 = performance.now();
  inFlight++;
  const p = fetch(`${url}/v1/events`, { method: 'POST', headers, body })
    .then(async (res) => {
      await res.arrayBuffer();
      if (res.status === 202) ok++;
      else failed++;
      latencies.push(performance.now() - t0);
    })
    .catch(() => {
      failed++;
    })
    .finally(() => {
      inFlight--;
      pending.delete(p);
    });
  pending.add(p);
}

const started = Date.now();
const t0 = performance.now();
const end = t0 + seconds * 1000;
for (let now = t0; now < end; now = performance.now()) {
  const due = Math.floor(((now - t0) / 1000) * rate);
  while (sent + missed < due) {
    if (inFlight >= MAX_IN_FLIGHT) missed++;
    else send(sent++, started);
  }
  await Bun.sleep(1);
}
await Promise.all(pending);
const elapsedS = (performance.now() - t0) / 1000;
const s = summarize(latencies);
console.log(JSON.stringify({ sent, ok, failed, missed, elapsed_s: elapsedS, rate: ok / elapsedS, p50_ms: s.p50Ms, p99_ms: s.p99Ms, max_ms: s.maxMs }));
