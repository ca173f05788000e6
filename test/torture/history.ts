/**
 * Jepsen's shape: what each client saw, recorded during the run, and a checker over that history
 * and what Kafka holds afterwards. The checker, not the run, decides what was lost or reordered.
 */
export type Mode = 'sync' | 'fast_ack' | 'background';

/** One write, retried under the same dedupe_key until it was acknowledged or the run ended. */
export interface Op {
  tenant: string;
  key: string;
  mode: Mode;
  /** Index in the tenant's stream: the stream sends op n+1 only after op n was acknowledged. */
  n: number;
  attempts: number;
  /** ok: acknowledged (2xx); failed: never possibly written; unknown: may or may not have been. */
  outcome: 'ok' | 'failed' | 'unknown';
  durability?: string;
  /** The answers that were not an acknowledgement, counted by status or error. */
  refusals: Record<string, number>;
}

export interface KafkaRecord {
  key: string;
  headers: Record<string, string>;
}

export interface CheckResult {
  acknowledged: Record<Mode, number>;
  unknown: number;
  failed: number;
  /** Acknowledged in sync or fast_ack and not in Kafka: a broken promise. */
  lost: string[];
  /** Acknowledged in background (durability memory) and not in Kafka: allowed after a crash. */
  lostBackground: number;
  /** Keys in Kafka more than once. */
  duplicated: string[];
  /** Acknowledged writes of a tenant whose record comes before one acknowledged earlier. */
  outOfOrder: string[];
  /** Keys in Kafka that no client sent. */
  phantom: string[];
}

const PROMISED: ReadonlySet<string> = new Set(['sync', 'fast_ack']);

/** `records` are in Kafka's order (one partition, offset order). */
export function checkHistory(ops: readonly Op[], records: readonly KafkaRecord[]): CheckResult {
  const sent = new Map(ops.map((o) => [`${o.tenant}:${o.key}`, o]));
  const seen = new Map<string, number>();
  const position = new Map<string, number>();
  const phantom: string[] = [];
  records.forEach((r, i) => {
    seen.set(r.key, (seen.get(r.key) ?? 0) + 1);
    if (!position.has(r.key)) position.set(r.key, i);
    if (!sent.has(r.key)) phantom.push(r.key);
  });
  const result: CheckResult = {
    acknowledged: { sync: 0, fast_ack: 0, background: 0 },
    unknown: 0,
    failed: 0,
    lost: [],
    lostBackground: 0,
    duplicated: [...seen].filter(([, n]) => n > 1).map(([k]) => k),
    outOfOrder: [],
    phantom,
  };
  const byTenant = new Map<string, Op[]>();
  for (const o of ops) {
    if (o.outcome === 'unknown') result.unknown++;
    if (o.outcome === 'failed') result.failed++;
    if (o.outcome !== 'ok') continue;
    result.acknowledged[o.mode]++;
    const k = `${o.tenant}:${o.key}`;
    if (!position.has(k)) {
      if (PROMISED.has(o.mode)) result.lost.push(k);
      else result.lostBackground++;
    }
    const list = byTenant.get(o.tenant) ?? [];
    list.push(o);
    byTenant.set(o.tenant, list);
  }
  for (const list of byTenant.values()) {
    if (!PROMISED.has(list[0]?.mode ?? '')) continue;
    // Acknowledgement order is stream order; each record must come after every one acknowledged before it.
    let latest = -1;
    let latestKey = '';
    for (const o of list.sort((a, b) => a.n - b.n)) {
      const p = position.get(`${o.tenant}:${o.key}`);
      if (p === undefined) continue;
      if (p < latest) result.outOfOrder.push(`${o.tenant}:${o.key} (${o.durability ?? '?'}, ${o.attempts} attempts) before ${latestKey}`);
      if (p > latest) {
        latest = p;
        latestKey = `${o.tenant}:${o.key} (${o.durability ?? '?'}, ${o.attempts} attempts)`;
      }
    }
  }
  return result;
}
