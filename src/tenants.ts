import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, type ErrorDetail, SluiceError } from './errors.ts';
import { tenantIdSchema } from './core/identifiers.ts';
import type { Logger } from './log.ts';
import { collisionKey, sluiceTopics, topicNameSchema, topicProblem } from './core/topic-rule.ts';
import { DEFAULT_METRIC_TENANTS, OTHER_TENANTS, TenantLabels } from './tenant-labels.ts';
import { TokenIndex } from './tenant-tokens.ts';
import { issueDetails } from './core/zod-issues.ts';

export interface Quota {
  /** Records a second. */
  rate: number;
  /** Records that may be published at once after a quiet spell. */
  burst: number;
}

export interface BreakerPolicy {
  failureThreshold: number;
  resetMs: number;
}

export interface TenantPolicy {
  /** Topic for the tenant's events that name none; undefined = SLUICE_KAFKA_TOPIC. */
  topic: string | undefined;
  quota: Quota;
  maxPending: number;
  breaker: BreakerPolicy;
}

/** The deployment's own topics, which no tenant's topic may be or collide with. */
export interface OwnTopics {
  progressTopic: string;
  defaultTopic: string;
}

export interface TenantsConfig {
  /** The file it came from; undefined = built-in defaults only (open mode). */
  file: string | undefined;
  /** What the file was checked against, so a reload checks the new file against the same. */
  own?: OwnTopics | undefined;
  defaults: TenantPolicy;
  tenants: ReadonlyMap<string, TenantPolicy & { tokens: string[] }>;
}

const positive = z.number({ error: 'must be a number' }).positive({ error: 'must be greater than 0' });
const count = (min: number) =>
  z.number({ error: 'must be a number' }).int({ error: 'must be a whole number' }).min(min, { error: `must be at least ${min}` });

const quotaSchema = z.strictObject({ rate: positive.optional(), burst: count(1).optional() });
const breakerSchema = z.strictObject({ failure_threshold: count(1).optional(), reset_ms: count(1).optional() });

const fileSchema = z.strictObject({
  defaults: z
    .strictObject({ quota: quotaSchema.optional(), max_pending: count(1).optional(), breaker: breakerSchema.optional() })
    .optional(),
  tenants: z
    .record(
      tenantIdSchema,
      z.strictObject({
        tokens: z
          .array(z.string().regex(/^sha256:[0-9a-f]{64}$/, { error: 'must be sha256:<64 lowercase hex digits>' }))
          .default([]),
        topic: topicNameSchema.optional(),
        quota: quotaSchema.optional(),
        max_pending: count(1).optional(),
        breaker: breakerSchema.optional(),
      }),
    )
    .default({}),
});

/** What every tenant gets when neither the file's defaults nor its own entry say otherwise. */
export const BUILT_IN_DEFAULTS: TenantPolicy = {
  topic: undefined,
  quota: { rate: 1000, burst: 2000 },
  maxPending: 100_000,
  breaker: { failureThreshold: 3, resetMs: 60_000 },
};

export const NO_TENANTS_FILE: TenantsConfig = { file: undefined, defaults: BUILT_IN_DEFAULTS, tenants: new Map() };

type Overrides = {
  quota?: z.infer<typeof quotaSchema> | undefined;
  max_pending?: number | undefined;
  breaker?: z.infer<typeof breakerSchema> | undefined;
};

function merge(base: TenantPolicy, o: Overrides, topic: string | undefined): TenantPolicy {
  return {
    topic,
    quota: { rate: o.quota?.rate ?? base.quota.rate, burst: o.quota?.burst ?? base.quota.burst },
    maxPending: o.max_pending ?? base.maxPending,
    breaker: {
      failureThreshold: o.breaker?.failure_threshold ?? base.breaker.failureThreshold,
      resetMs: o.breaker?.reset_ms ?? base.breaker.resetMs,
    },
  };
}

/**
 * Reads and validates a tenants file; throws ConfigError naming the file and every problem in it,
 * or a `file_unavailable` SluiceError when it cannot be read at all.
 */
export function loadTenantsFile(path: string, own?: OwnTopics): TenantsConfig {
  const fail = (details: ErrorDetail[]): never => {
    throw new ConfigError(`invalid tenants file ${path}: ${details.map((d) => d.message).join('; ')}`, details);
  };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    // Not there (yet): a mount or a deployment may still bring it, so not a configuration error.
    const message = `SLUICE_TENANTS_FILE ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: point SLUICE_TENANTS_FILE at a readable tenants file`;
    throw new SluiceError('file_unavailable', message, { details: [{ path: 'SLUICE_TENANTS_FILE', message }] });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const at = jsonErrorAt(text);
    const where = at === undefined ? 'not JSON' : `not JSON at line ${at.line}, column ${at.column}`;
    return fail([{ path: 'SLUICE_TENANTS_FILE', message: `SLUICE_TENANTS_FILE ${path}: ${where} (${(err as Error).message}): fix the file there (its format: README.md#authentication)` }]);
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    return fail(
      issueDetails(parsed.error).map((d) => ({ path: `SLUICE_TENANTS_FILE:${d.path}`, message: `SLUICE_TENANTS_FILE ${path}: ${d.path} ${d.message}` })),
    );
  }
  const shared = [...sharedTokens(parsed.data.tenants), ...collidingTopics(parsed.data.tenants), ...ownTopicProblems(parsed.data.tenants, own)];
  if (shared.length > 0) return fail(shared.map((d) => ({ ...d, message: `SLUICE_TENANTS_FILE ${path}: ${d.message}` })));
  const defaults = merge(BUILT_IN_DEFAULTS, parsed.data.defaults ?? {}, undefined);
  const tenants = new Map<string, TenantPolicy & { tokens: string[] }>();
  for (const [id, t] of Object.entries(parsed.data.tenants)) {
    tenants.set(id, { ...merge(defaults, t, t.topic), tokens: t.tokens });
  }
  return { file: path, own, defaults, tenants };
}

/**
 * A tenant topic that is sluice's progress topic or collides with a sluice topic would take writes
 * (202) that can never be published: the same rule ingest applies to a topic an event names.
 */
function ownTopicProblems(tenants: Record<string, { topic?: string | undefined }>, own: OwnTopics | undefined): ErrorDetail[] {
  if (own === undefined) return [];
  // Collisions among the file's own topics are collidingTopics' to report.
  const topics = sluiceTopics(own.progressTopic, own.defaultTopic, { topicCollision: () => undefined });
  const problems: ErrorDetail[] = [];
  for (const [id, { topic }] of Object.entries(tenants)) {
    const problem = topic === undefined ? undefined : topicProblem(topic, topics);
    if (problem !== undefined) problems.push({ path: `SLUICE_TENANTS_FILE:tenants.${id}.topic`, message: `tenants.${id}.topic ${topic} ${problem}` });
  }
  return problems;
}

/** Two topics Kafka treats as one (`.` and `_` alike): the broker would refuse the second for good. */
function collidingTopics(tenants: Record<string, { topic?: string | undefined }>): ErrorDetail[] {
  const byKey = new Map<string, string>();
  const problems: ErrorDetail[] = [];
  for (const [id, { topic }] of Object.entries(tenants)) {
    if (topic === undefined) continue;
    const other = byKey.get(collisionKey(topic));
    if (other !== undefined && other !== topic) {
      problems.push({ path: `SLUICE_TENANTS_FILE:tenants.${id}.topic`, message: `tenants.${id}.topic ${topic} collides with topic ${other} (Kafka treats . and _ alike)` });
    }
    byKey.set(collisionKey(topic), other ?? topic);
  }
  return problems;
}

/** A token must name exactly one tenant: one listed under two would make that tenant a guess. */
function sharedTokens(tenants: Record<string, { tokens: string[] }>): ErrorDetail[] {
  const owner = new Map<string, string>();
  const problems: ErrorDetail[] = [];
  for (const [id, { tokens }] of Object.entries(tenants)) {
    tokens.forEach((token, i) => {
      const first = owner.get(token);
      if (first !== undefined && first !== id) {
        const where = `tenants.${id}.tokens.${i}`;
        problems.push({ path: `SLUICE_TENANTS_FILE:${where}`, message: `${where} is also a token of tenant ${first}` });
      }
      owner.set(token, first ?? id);
    });
  }
  return problems;
}

/**
 * The tenants in force. Parts ask it for a tenant's policy each time they need one, so a reload
 * (SIGHUP) takes effect without restarting them.
 */
export class Tenants {
  #config: TenantsConfig;
  #tokens: TokenIndex;
  /** Topic → the tenants the file gives it to; asked for every event that names a topic. */
  #topicOwners: Map<string, string[]>;
  /** collisionKey(topic) → the file's topic with that key. */
  #topicKeys: Map<string, string>;
  #log: Logger;
  #labels: TenantLabels;
  #generation = 0;

  constructor(config: TenantsConfig, log: Logger, opts: { metricTenants?: number; metricWindowMs?: number; now?: () => number } = {}) {
    this.#labels = new TenantLabels({ cap: opts.metricTenants ?? DEFAULT_METRIC_TENANTS, windowMs: opts.metricWindowMs, now: opts.now });
    this.#config = config;
    this.#tokens = new TokenIndex(config.tenants);
    this.#topicOwners = topicOwners(config);
    this.#topicKeys = topicKeys(this.#topicOwners);
    this.#log = log;
  }

  /** The tenant a bearer token belongs to, under the file in force; undefined for an unknown token. */
  tenantOf(token: string): string | undefined {
    return this.#tokens.tenantOf(token);
  }

  /** The tenants the file names, sorted. */
  get configured(): string[] {
    return [...this.#config.tenants.keys()].sort();
  }

  /**
   * Why `tenantId` may not publish to `topic`, or undefined when it may: a topic the tenants file
   * gives to a tenant is that tenant's alone, so no other tenant can write into its stream.
   */
  topicProblem(tenantId: string, topic: string): string | undefined {
    const owner = this.#topicOwners.get(topic)?.find((t) => t !== tenantId);
    return owner === undefined ? undefined : `topic ${topic} belongs to tenant ${owner}`;
  }

  /** Which of the file's topics `topic` collides with under Kafka's `.`/`_` rule (not being it), if any. */
  topicCollision(topic: string): string | undefined {
    const other = this.#topicKeys.get(collisionKey(topic));
    return other === undefined || other === topic ? undefined : `collides with topic ${other} (Kafka treats . and _ alike)`;
  }

  policy(tenantId: string): TenantPolicy {
    return this.#config.tenants.get(tenantId) ?? this.#config.defaults;
  }

  /** Whether a tenants file is in force (authenticated mode) rather than open mode. */
  get authenticated(): boolean {
    return this.#config.file !== undefined;
  }

  /**
   * The `tenant` label for metrics. In authenticated mode only the file's tenants get a label of
   * their own; anything else (say, records replayed from an old journal) is folded into `~other`. In
   * both modes at most SLUICE_METRIC_TENANTS tenants are named, the busiest (see TenantLabels).
   */
  metricLabel(tenantId: string): string {
    if (this.#config.file === undefined || this.#config.tenants.has(tenantId)) return this.#labels.label(tenantId);
    return OTHER_TENANTS;
  }

  /** The label `metricLabel` would give, without counting the call as the tenant's activity. */
  currentLabel(tenantId: string): string {
    if (this.#config.file === undefined || this.#config.tenants.has(tenantId)) return this.#labels.current(tenantId);
    return OTHER_TENANTS;
  }

  /** Called with each tenant whose own label went to a busier one: its series are to be dropped. */
  onLabelDropped(listener: (tenant: string) => void): void {
    this.#labels.onDropped(listener);
  }

  /** The file's tenants that have a label of their own: they take the free labels first. */
  labelledConfigured(): string[] {
    return this.configured.filter((t) => this.metricLabel(t) === t);
  }

  /** Bumped by every successful reload, so holders of derived state know to refresh it. */
  get generation(): number {
    return this.#generation;
  }

  /** Re-reads the file. A bad file is reported and the policies in force are kept. */
  reload(): boolean {
    const file = this.#config.file;
    if (file === undefined) return false;
    try {
      const config = loadTenantsFile(file, this.#config.own);
      // Policies and tokens are swapped together: no request sees one file's tokens with another's.
      this.#tokens = new TokenIndex(config.tenants);
      this.#topicOwners = topicOwners(config);
      this.#topicKeys = topicKeys(this.#topicOwners);
      this.#config = config;
      this.#generation++;
      this.#log.info('tenants file reloaded', { file, tenants: this.#config.tenants.size });
      return true;
    } catch (err) {
      const errors = err instanceof SluiceError ? (err.details?.map((d) => d.message) ?? [err.message]) : [String(err)];
      this.#log.error('tenants file rejected; keeping the previous one', { file, errors });
      return false;
    }
  }
}

function topicOwners(config: TenantsConfig): Map<string, string[]> {
  const owners = new Map<string, string[]>();
  for (const [tenant, policy] of config.tenants) {
    if (policy.topic !== undefined) owners.set(policy.topic, [...(owners.get(policy.topic) ?? []), tenant]);
  }
  return owners;
}

function topicKeys(owners: Map<string, string[]>): Map<string, string> {
  return new Map([...owners.keys()].map((t) => [collisionKey(t), t]));
}

/** Thrown inside jsonErrorAt's scan with the offset where the text stops being JSON. */
class NotJsonAt {
  constructor(readonly offset: number) {}
}

const JSON_LITERAL = /true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/**
 * Where `text` stops being JSON (1-based line and column; one past the end when it ends too soon):
 * Bun's JSON.parse says what (`Unexpected EOF`) but not where, and an operator editing a long
 * tenants file needs the place. Undefined when the scan finds nothing wrong or nests too deep for it.
 */
function jsonErrorAt(text: string): { line: number; column: number } | undefined {
  let i = 0;
  const fail = (): never => {
    throw new NotJsonAt(i);
  };
  const space = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] ?? '')) i++;
  };
  const string = (): void => {
    for (i++; ; i++) {
      const c = text[i];
      if (c === undefined || c < ' ') fail();
      if (c === '"') {
        i++;
        return;
      }
      if (c === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) fail();
      }
    }
  };
  const members = (close: string, member: () => void): void => {
    i++;
    space();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      member();
      space();
      if (text[i] === close) {
        i++;
        return;
      }
      if (text[i] !== ',') fail();
      i++;
    }
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === '{') {
      members('}', () => {
        space();
        if (text[i] !== '"') fail();
        string();
        space();
        if (text[i] !== ':') fail();
        i++;
        value();
      });
    } else if (c === '[') {
      members(']', value);
    } else if (c === '"') {
      string();
    } else {
      JSON_LITERAL.lastIndex = i;
      const literal = JSON_LITERAL.exec(text);
      if (literal === null) fail();
      i += literal?.[0].length ?? 0;
    }
  };
  try {
    value();
    space();
    if (i < text.length) fail();
    return undefined;
  } catch (err) {
    if (!(err instanceof NotJsonAt)) return undefined;
    const before = text.slice(0, err.offset);
    const lineStart = before.lastIndexOf('\n') + 1;
    return { line: before.split('\n').length, column: err.offset - lineStart + 1 };
  }
}
