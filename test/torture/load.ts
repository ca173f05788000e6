import type { Mode, Op } from './history.ts';

/**
 * One tenant's stream of writes: the next write is sent only after the previous one was
 * acknowledged; a write is retried under its own dedupe_key until it is, or until the run stops.
 */
export async function runStream(opts: {
  url: () => string;
  tenant: string;
  mode: Mode;
  ops: Op[];
  stopped: () => boolean;
  pauseMs: number;
  requestTimeoutMs: number;
}): Promise<void> {
  const { tenant, mode } = opts;
  for (let n = 0; !opts.stopped(); n++) {
    const op: Op = { tenant, key: `${tenant}-${n}`, mode, n, attempts: 0, outcome: 'failed', refusals: {} };
    opts.ops.push(op);
    let possiblyWritten = false;
    let backoff = 50;
    while (!opts.stopped()) {
      op.attempts++;
      const answer = await send(opts.url(), op, opts.requestTimeoutMs);
      if (answer.status >= 200 && answer.status < 300) {
        op.outcome = 'ok';
        if (answer.durability !== undefined) op.durability = answer.durability;
        break;
      }
      const label = answer.status === 0 ? answer.error : String(answer.status);
      op.refusals[label] = (op.refusals[label] ?? 0) + 1;
      // 429 and 503 are refusals before anything was written; anything else may have been written.
      if (answer.status !== 429 && answer.status !== 503) possiblyWritten = true;
      await Bun.sleep(backoff);
      backoff = Math.min(1_000, backoff * 2);
    }
    if (op.outcome !== 'ok') {
      op.outcome = possiblyWritten ? 'unknown' : 'failed';
      return;
    }
    await Bun.sleep(Math.random() * opts.pauseMs);
  }
}

async function send(url: string, op: Op, timeoutMs: number): Promise<{ status: number; error: string; durability?: string }> {
  try {
    const res = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': op.tenant },
      body: JSON.stringify({ dedupe_key: op.key, payload: { tenant: op.tenant, n: op.n } }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.json().catch(() => ({}))) as { durability?: string };
    return { status: res.status, error: '', ...(body.durability !== undefined ? { durability: body.durability } : {}) };
  } catch (err) {
    const name = err instanceof Error ? err.name : 'error';
    return { status: 0, error: name === 'TimeoutError' ? 'timeout' : 'connection' };
  }
}
