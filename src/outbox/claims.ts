import { RECORD_OVERHEAD_BYTES, type ClaimedRow } from '../core/record.ts';
import type { Sql } from './db.ts';

/** What a committed batch held: the progress record names these, so a takeover can mark them sent. */
export interface PublishedRef {
  id: string;
  replays: number;
}

/**
 * The tenants with pending rows in a partition, by a loose index scan over the pending index
 * (one index probe per tenant), so a tenant with a huge backlog costs no more than a quiet one.
 */
export async function pendingTenants(sql: Sql, partition: number): Promise<string[]> {
  const rows = await sql<{ tenant_id: string }[]>`
    WITH RECURSIVE t(tenant_id) AS (
      (SELECT tenant_id FROM outbox WHERE partition = ${partition} AND status = 'pending' ORDER BY tenant_id LIMIT 1)
      UNION ALL
      SELECT (SELECT o.tenant_id FROM outbox o
              WHERE o.partition = ${partition} AND o.status = 'pending' AND o.tenant_id > t.tenant_id
              ORDER BY o.tenant_id LIMIT 1)
      FROM t WHERE t.tenant_id IS NOT NULL
    )
    SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL`;
  return rows.map((r) => r.tenant_id);
}

/** Ids from `from` to `to`, both included, as digits. */
export interface IdRange {
  from: string;
  to: string;
}

export interface ClaimLimits {
  /**
   * The batch's record bytes (payload + RECORD_OVERHEAD_BYTES each), at least one row: brokers refuse
   * a produce batch over `message.max.bytes` with the same MESSAGE_TOO_LARGE as one oversized record.
   * Unlimited when absent.
   */
  maxBytes?: number;
  /**
   * Per tenant, ids to pass over: the batch being marked sent, still pending until its marking
   * commits. A pending row of the range that is not in that batch (an operator re-queued an older
   * row meanwhile) waits for the next claim.
   */
  skip?: ReadonlyMap<string, IdRange>;
}

/** A claim: its rows in id order, and whether the byte limit left due rows of the grants behind. */
export interface Claimed {
  rows: ClaimedRow[];
  cutByBytes: boolean;
  /**
   * A granted tenant's rows stopped at one not yet due (waiting for its retry, or for an older
   * transaction to end): it becomes publishable with time alone. Only known when rows were claimed.
   */
  held: boolean;
}

/**
 * Up to `grant` rows of each tenant, in id order, that may be published now: the longest prefix of
 * the tenant's pending rows that are due (`available_at`) and settled. Settled means the inserting
 * transaction is older than every transaction still running — ids can commit out of order, and a
 * row must never overtake an earlier one of its tenant that is about to commit. A prefix, because a
 * row waiting for its retry holds back the tenant's later rows: order is per tenant, not per row.
 *
 * The byte limit takes the tenants' rows in turns (each tenant's first row in the grants' order, then
 * each one's second, ...) and stops at the first row that would pass it: each tenant keeps a prefix,
 * and a tenant with a backlog of low ids cannot fill every batch while the others wait.
 */
export async function claimForTenants(sql: Sql, partition: number, grants: ReadonlyMap<string, number>, limits: ClaimLimits = {}): Promise<Claimed> {
  if (grants.size === 0) return { rows: [], cutByBytes: false, held: false };
  const tenants = [...grants.keys()];
  // An empty range (1 to 0) for a tenant with nothing to skip.
  const skip = tenants.map((t) => limits.skip?.get(t) ?? { from: '1', to: '0' });
  // Compact: the payload text is read once, the snapshot's xmin once per statement (an InitPlan)
  // rather than once per row. Raw: every value comes back as the bytes of its text, a view of what
  // the driver received, so the texts that go into the Kafka record are never decoded (see
  // ClaimedRow); the columns are read by position, in this order. The due prefix and the byte cut
  // are window functions over at most a batch's rows, so only what is published leaves Postgres.
  const raw = await sql`
    SELECT id, tenant_id, dedupe_key, topic, payload, headers, request_id, traceparent, ingested_at, attempts, replays, due_rows, fetched
    FROM (
      SELECT d.*, sum(d.size) OVER turns AS upto, row_number() OVER turns AS k, count(*) OVER () AS due_rows
      FROM (
        SELECT r.*, g.turn,
               bool_and(r.ready) OVER tenant AS due,
               row_number() OVER tenant AS nth,
               count(*) OVER () AS fetched
        FROM unnest(${sql.array(tenants)}::text[], ${sql.array(tenants.map((t) => grants.get(t) ?? 0))}::int[],
                    ${sql.array(skip.map((r) => r.from))}::bigint[], ${sql.array(skip.map((r) => r.to))}::bigint[])
             WITH ORDINALITY AS g(t, n, skip_from, skip_to, turn)
        CROSS JOIN LATERAL (
          SELECT id, tenant_id, dedupe_key, topic,
                 -- Rows from before migration 0004 have only the jsonb column.
                 coalesce(payload_text, payload::text) AS payload, headers, request_id, traceparent,
                 ingested_at, attempts, replays,
                 coalesce(octet_length(payload_text), octet_length(payload::text)) + ${RECORD_OVERHEAD_BYTES} AS size,
                 (available_at <= now() AND xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))) AS ready
          FROM outbox
          WHERE partition = ${partition} AND tenant_id = g.t AND status = 'pending' AND (id < g.skip_from OR id > g.skip_to)
          ORDER BY id
          LIMIT g.n
        ) r
        WINDOW tenant AS (PARTITION BY r.tenant_id ORDER BY r.id ROWS UNBOUNDED PRECEDING)
      ) d
      WHERE d.due
      WINDOW turns AS (ORDER BY d.nth, d.turn ROWS UNBOUNDED PRECEDING)
    ) c
    WHERE c.k = 1 OR c.upto <= ${limits.maxBytes ?? Number.MAX_SAFE_INTEGER}
    ORDER BY id`.raw();
  // The driver types a raw row as an array of Buffers whatever its columns; these are known.
  const rows = raw as unknown as readonly Row[];
  const claimed: ClaimedRow[] = [];
  // A batch's rows mostly share their tenant, topic and acknowledgment time: each is decoded once a run.
  const tenant = new Decoded((b) => b.toString());
  const topic = new Decoded((b) => b.toString());
  const ingestedAt = new Decoded((b) => Buffer.from(new Date(b.toString()).toISOString()));
  for (const [id, tenantId, dedupeKey, topicName, payload, headers, requestId, traceparent, ingested, attempts, replays] of rows) {
    claimed.push({
      id: id.toString('latin1'),
      tenant_id: tenant.of(tenantId),
      topic: topic.of(topicName),
      headers: isEmptyObject(headers) ? NO_HEADERS : (JSON.parse(headers.toString()) as Record<string, string>),
      attempts: digits(attempts),
      replays: digits(replays),
      bytes: { id, tenant_id: tenantId, dedupe_key: dedupeKey, payload, request_id: requestId, traceparent, ingested_at: ingestedAt.of(ingested) },
    });
  }
  const due = rows[0] === undefined ? 0 : digits(rows[0][11]);
  const fetched = rows[0] === undefined ? 0 : digits(rows[0][12]);
  return { rows: claimed, cutByBytes: claimed.length < due, held: fetched > due };
}

/** A claimed row as the driver hands it over raw: the text of each column, by position; null only where the column may be. */
type Row = [
  id: Buffer,
  tenant_id: Buffer,
  dedupe_key: Buffer,
  topic: Buffer,
  payload: Buffer,
  headers: Buffer,
  request_id: Buffer | null,
  traceparent: Buffer | null,
  ingested_at: Buffer,
  attempts: Buffer,
  replays: Buffer,
  /** Every due row of the grants, before the byte limit. */
  due_rows: Buffer,
  /** Every row of the grants read, due or not. */
  fetched: Buffer,
];

const NO_HEADERS: Record<string, string> = Object.freeze({});

/** The jsonb `{}`, most events' headers. */
function isEmptyObject(b: Buffer): boolean {
  return b.length === 2 && b[0] === 0x7b && b[1] === 0x7d;
}

/** A non-negative integer's text. */
function digits(b: Buffer): number {
  let n = 0;
  for (const c of b) n = n * 10 + (c - 0x30);
  return n;
}

/** The last value decoded, kept while the same bytes come again. */
class Decoded<T> {
  #bytes: Buffer | undefined;
  #value: T | undefined;
  readonly #decode: (b: Buffer) => T;

  constructor(decode: (b: Buffer) => T) {
    this.#decode = decode;
  }

  of(b: Buffer): T {
    if (this.#bytes === undefined || !b.equals(this.#bytes)) {
      this.#bytes = b;
      this.#value = this.#decode(b);
    }
    return this.#value as T;
  }
}

/**
 * Which of `partitions` hold pending rows: one statement for every partition an instance owns (one
 * index probe each), so idle partitions cost one poll between them rather than one each. A lateral
 * subquery, not EXISTS: Postgres turns an EXISTS into a hash semi join over every pending row of the
 * index (a heap fetch each on a churned table: 3 ms a poll at a few thousand rows). Ordered as the
 * index is: with a bare LIMIT 1 the planner took a sequential scan of the unanalyzed table instead
 * (64 ms a poll in the end-to-end bench).
 */
export async function pendingPartitions(sql: Sql, partitions: readonly number[]): Promise<number[]> {
  if (partitions.length === 0) return [];
  const rows = await sql<{ p: number }[]>`
    SELECT p FROM unnest(${sql.array([...partitions])}::int[]) AS p
    CROSS JOIN LATERAL (SELECT 1 FROM outbox WHERE partition = p AND status = 'pending' ORDER BY tenant_id, id LIMIT 1) AS waiting`;
  return rows.map((r) => r.p);
}

/** What the regular poll found: the partitions with new pending rows, the highest id now, and when, with the writers then running. */
export interface Entered {
  partitions: number[];
  /** The outbox's highest id ('0' when empty): the next poll looks above it. */
  top: string;
  /** Ids above `after` + ENTERED_SCAN_ROWS entered: `partitions` names only those of the rows up to it. */
  cut: boolean;
  /** When the statement started, on the database's clock (epoch ms): its snapshot was taken after. */
  at: number;
  /**
   * When the oldest transaction of this database that has written and not ended began (epoch ms, the
   * database's clock), read after the snapshot; null when none runs, -Infinity for one whose start
   * this role may not see. A row this poll could not see, with an id below its top, belongs to a
   * transaction that was running at its snapshot.
   */
  oldestWriter: number | null;
}

/** Ids a poll reads at most (so rows, at most); ~20 ms of Postgres when every one was (a burst: its partitions are all woken). */
export const ENTERED_SCAN_ROWS = 10_000;

/**
 * Which of `partitions` hold pending rows with an id above `after`: the rows that entered since an
 * earlier poll (with no partitions, only the highest id and the writers). Its cost follows the rows
 * written since, not the table: a primary-key range bounded on both sides, the next ENTERED_SCAN_ROWS
 * ids. Bounded so, the planner takes the primary key whatever the statistics say; with only
 * `id > after`, ordered and capped by a LIMIT, it sorted a sequential scan of a table never analyzed
 * (a third of the rows assumed to match: 717 pages at 20,000 rows) and, on stale statistics, took a
 * parallel one (151 ms at 420,000 rows). Ids skipped (a duplicate's insert takes one too) only make a
 * burst look larger. The pending index is not used: it holds the entry of every row published since
 * the outbox's last VACUUM (see pendingPartitions). A row re-queued by an operator keeps its old id:
 * an explicit wake or its task's own idle pass finds it.
 */
export async function enteredPartitions(sql: Sql, partitions: readonly number[], after: string): Promise<Entered> {
  type Row = { top: string | null; at: number; oldest_writer: number | null; ps: number[] | null };
  // The writers of this database other than this session. A role without pg_read_all_stats sees
  // another role's writer (its backend_xid) but not when it began: taken as the oldest, -infinity,
  // which holds the window open for its look-back rather than closing it on a writer unseen.
  const writers = sql`
    (SELECT extract(epoch FROM min(coalesce(xact_start, '-infinity')))::float8 * 1000 FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND datname = current_database() AND pid <> pg_backend_pid())`;
  const at = sql`extract(epoch FROM statement_timestamp())::float8 * 1000`;
  const [row] =
    partitions.length === 0
      ? await sql<Row[]>`
          SELECT max(id)::text AS top, ${at} AS at,
                 ${writers} AS oldest_writer, NULL::int[] AS ps
          FROM outbox`
      : await sql<Row[]>`
          SELECT (SELECT max(id) FROM outbox)::text AS top, ${at} AS at,
                 ${writers} AS oldest_writer,
                 array_agg(DISTINCT partition) FILTER (WHERE status <> 'sent' AND status <> 'dead' AND partition = ANY(${sql.array([...partitions])}::int[])) AS ps
          FROM outbox WHERE id > ${after}::bigint AND id <= ${after}::bigint + ${ENTERED_SCAN_ROWS}::bigint`;
  const top = row?.top ?? '0';
  return {
    partitions: row?.ps ?? [],
    top,
    cut: partitions.length > 0 && BigInt(top) > BigInt(after) + BigInt(ENTERED_SCAN_ROWS),
    at: row?.at ?? 0,
    oldestWriter: row?.oldest_writer ?? null,
  };
}

/*
 * The statements below change rows named by id, and only those still pending. Each restricts the
 * table by `id = ANY(...)` and says "pending" as `status NOT IN ('sent', 'dead')` (the same rows: the
 * table's CHECK allows these three), so the only cheap way to its rows is one primary-key probe an id.
 * With `status = 'pending'` the planner read the whole pending index (a hash of every pending row)
 * whenever its statistics said few rows were pending — as they do after normal operation, right when
 * an outage's backlog builds up, and always where autovacuum is off; joined to the ids alone it
 * scanned the table. A marking then costs every pending row: publication slows, the backlog grows and
 * each marking costs more. An outside tester saw markings of 500 rows take 0.5–9 s over a backlog of
 * ~20,000, and publication all but stop.
 */

/** Marks rows sent; only rows still pending, so a concurrent replay or a second marking changes nothing. */
export async function markSent(sql: Sql, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const result = await sql`
    UPDATE outbox SET status = 'sent', sent_at = now()
    WHERE id = ANY(string_to_array(${ids.join(',')}, ',')::bigint[]) AND status NOT IN ('sent', 'dead')`;
  return result.count;
}

/**
 * Marks sent what a committed Kafka transaction held, but only where the row was not replayed since:
 * an operator's replay bumps `replays`, and that newer publication must still happen.
 */
export async function markPublished(sql: Sql, refs: readonly PublishedRef[]): Promise<number> {
  if (refs.length === 0) return 0;
  // Two comma-separated texts rather than two array parameters: a batch's ids are digits, and one
  // string each costs the driver a join instead of quoting and escaping every element.
  let ids = '';
  let replays = '';
  for (const r of refs) {
    ids += ids === '' ? r.id : `,${r.id}`;
    replays += replays === '' ? String(r.replays) : `,${r.replays}`;
  }
  const result = await sql`
    UPDATE outbox o SET status = 'sent', sent_at = now()
    FROM unnest(string_to_array(${ids}, ',')::bigint[], string_to_array(${replays}, ',')::int[]) AS u(id, replays)
    WHERE o.id = ANY(string_to_array(${ids}, ',')::bigint[]) AND o.id = u.id AND o.replays = u.replays
      AND o.status NOT IN ('sent', 'dead')`;
  return result.count;
}

export interface FailedRow {
  id: string;
  /** Milliseconds until the next attempt. */
  delayMs: number;
}

/**
 * Records a failed attempt: `attempts` + 1, the error, and the next attempt time; a row out of
 * attempts becomes dead. Returns the ids that became dead.
 */
export async function recordFailure(sql: Sql, rows: readonly FailedRow[], error: string, maxAttempts: number): Promise<string[]> {
  if (rows.length === 0) return [];
  const ids = sql.array(rows.map((r) => r.id));
  const dead = await sql<{ id: string; status: string }[]>`
    UPDATE outbox o SET
      attempts = o.attempts + 1,
      last_error = ${error},
      available_at = now() + make_interval(secs => u.delay_ms / 1000.0),
      status = CASE WHEN o.attempts + 1 >= ${maxAttempts} THEN 'dead' ELSE 'pending' END
    FROM unnest(${ids}::bigint[], ${sql.array(rows.map((r) => r.delayMs))}::int[]) AS u(id, delay_ms)
    WHERE o.id = ANY(${ids}::bigint[]) AND o.id = u.id AND o.status NOT IN ('sent', 'dead')
    RETURNING o.id::text, o.status`;
  return dead.filter((r) => r.status === 'dead').map((r) => r.id);
}

/** A record Kafka rejects for good (too large, say) is dead at once: retrying cannot help. */
export async function markDead(sql: Sql, ids: readonly string[], error: string): Promise<number> {
  if (ids.length === 0) return 0;
  const result = await sql`
    UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ${error}
    WHERE id = ANY(${sql.array([...ids])}::bigint[]) AND status NOT IN ('sent', 'dead')`;
  return result.count;
}
