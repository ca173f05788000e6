import { type ComponentState, within } from '../core/component-state.ts';

export interface ComponentReport extends ComponentState {
  /** Whether this node's readiness depends on it: what its role needs to serve. */
  required: boolean;
}

export interface ReadinessReport {
  ready: boolean;
  components: Record<string, ComponentReport>;
}

const CHECK_TIMEOUT_MS = 2_000;

/**
 * The components a node reports on /readyz. Each role decides which of them it cannot serve
 * without (`required`): an ingest node needs what makes a write durable in its write mode, a
 * processor needs the outbox and Kafka. The others are still reported, so an operator sees them.
 * Parts add their own components (journal integrity, partition ownership) with `add`.
 */
export class Readiness {
  #checks = new Map<string, { required: boolean; check: () => ComponentState | Promise<ComponentState> }>();

  add(name: string, required: boolean, check: () => ComponentState | Promise<ComponentState>): this {
    this.#checks.set(name, { required, check });
    return this;
  }

  async report(): Promise<ReadinessReport> {
    const entries = await Promise.all(
      [...this.#checks].map(async ([name, { required, check }]): Promise<[string, ComponentReport]> => {
        const state = await within(
          Promise.resolve()
            .then(check)
            .catch((err: unknown): ComponentState => ({ ok: false, detail: err instanceof Error ? err.message : String(err) })),
          CHECK_TIMEOUT_MS,
          (): ComponentState => ({ ok: false, detail: `no answer within ${CHECK_TIMEOUT_MS / 1000}s` }),
        );
        return [name, { ...state, required }];
      }),
    );
    const components = Object.fromEntries(entries);
    return { ready: entries.every(([, c]) => c.ok || !c.required), components };
  }
}
