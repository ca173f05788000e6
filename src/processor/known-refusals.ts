import type { Clock } from '../core/clock.ts';

/** How long a topic's confirmed refusal is applied without asking Kafka again. */
export const KNOWN_REFUSAL_MS = 60_000;
/** Topics remembered at most (the oldest forgotten first): a tenant inventing names cannot grow it. */
const MAX_TOPICS = 1_000;

type Known = { kind: 'name'; reason: string; until: number } | { kind: 'size'; limit: number; until: number };

/**
 * Refusals Kafka confirmed lately, applied to a claim's rows before they are sent: a topic the broker
 * refused for its name, and a topic's size limit once a record over it was refused alone. Without it,
 * a tenant sending one row a batch to a refused name (or a flood of records too large, over many
 * claims) made every such batch fail, everyone's transaction with it, and was only ever slowed by its
 * breaker, which a refusal of a name no longer opens. Remembered for KNOWN_REFUSAL_MS, so a topic an
 * operator fixes (deleted the colliding topic, raised `max.message.bytes`) takes writes again within a
 * minute; rows refused meanwhile are dead and can be re-queued.
 */
export class KnownRefusals {
  #clock: Clock;
  #known = new Map<string, Known>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  refusedName(topic: string, reason: string): void {
    this.#remember(topic, { kind: 'name', reason, until: this.#clock.now() + KNOWN_REFUSAL_MS });
  }

  sizeLimit(topic: string, limit: number): void {
    this.#remember(topic, { kind: 'size', limit, until: this.#clock.now() + KNOWN_REFUSAL_MS });
  }

  /** Nothing remembered: the claim's rows need no lookup (the usual case). */
  get empty(): boolean {
    return this.#known.size === 0;
  }

  /** `topic`'s size limit, if one is known now. */
  limit(topic: string): number | undefined {
    const known = this.#current(topic);
    return known?.kind === 'size' ? known.limit : undefined;
  }

  /** Why a record for `topic` of `batchBytes()` bytes alone would be refused now, if that is known. */
  reason(topic: string, batchBytes: () => number): string | undefined {
    const known = this.#current(topic);
    if (known === undefined) return undefined;
    if (known.kind === 'name') return refusedByKafka(topic, known.reason);
    return batchBytes() > known.limit ? tooLarge(topic, known.limit) : undefined;
  }

  #current(topic: string): Known | undefined {
    const known = this.#known.get(topic);
    if (known !== undefined && known.until <= this.#clock.now()) {
      this.#known.delete(topic);
      return undefined;
    }
    return known;
  }

  #remember(topic: string, known: Known): void {
    this.#known.delete(topic);
    this.#known.set(topic, known);
    if (this.#known.size > MAX_TOPICS) {
      const [oldest] = this.#known.keys();
      if (oldest !== undefined) this.#known.delete(oldest);
    }
  }
}

/** The last_error of a record whose topic the broker refuses, in its words. */
export function refusedByKafka(topic: string, refusal: string): string {
  return `topic ${topic} refused by Kafka: ${refusal}`;
}

/** The last_error of a record over its topic's limit, found without sending it. */
export function tooLarge(topic: string, limit: number): string {
  return `MESSAGE_TOO_LARGE: alone, its record batch is over topic ${topic}'s max.message.bytes of ${limit} (not sent: one over it was refused alone)`;
}
