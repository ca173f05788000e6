import type { Registry } from 'prom-client';
import { SluiceError } from '../errors.ts';
import { statusOf } from '../http/error-response.ts';
import type { TenantSnapshot } from '../processor/tenant-controls.ts';

/** The metrics of one process, as prom-client's `getMetricsAsJSON` gives them: what the supervisor sums. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** What a supervisor and its workers say over the IPC channel Bun.spawn opens between them. */
export type ToSupervisor =
  | { t: 'ready'; url: string | undefined }
  | { t: 'scrape'; id: number }
  | { t: 'collected'; id: number; metrics: MetricsJson }
  /** An ingest worker of a `serve` node inserted rows into these outbox partitions. */
  | { t: 'entered'; partitions: number[] }
  /**
   * An ingest worker's admin API asks for the processor's breakers and quotas (resetting one first),
   * until `deadline` (epoch ms): past it the worker has answered 503, and the reset must not happen.
   */
  | { t: 'controls'; id: number; tenants: string[]; reset?: string; deadline: number }
  /** The processor's answer to `controls`. */
  | { t: 'controls_state'; id: number; snapshots: Record<string, TenantSnapshot> };

export type ToWorker =
  | { t: 'collect'; id: number }
  | { t: 'reload' }
  | { t: 'scraped'; id: number; text: string; contentType: string }
  | { t: 'scrape_failed'; id: number; message: string }
  /** To the processor: rows entered these partitions through the node's ingest. */
  | { t: 'wake'; partitions: number[] }
  /** To the processor: a worker's `controls`, under the supervisor's id. */
  | { t: 'controls'; id: number; tenants: string[]; reset?: string; deadline: number }
  /** To the worker that asked. */
  | { t: 'controls_state'; id: number; snapshots: Record<string, TenantSnapshot> }
  | { t: 'controls_failed'; id: number; message: string };

/** The supervisor's answers to a worker's requests, matched to them by id. */
type Answer = Extract<ToWorker, { t: 'scraped' | 'scrape_failed' | 'controls_state' | 'controls_failed' }>;

export interface SupervisorLink {
  /** Tells the supervisor this worker has started (listening at `url`, or the processor running). */
  ready(url: string | undefined): void;
  /** `fetch` with GET /metrics answered with the whole node's metrics, which the supervisor sums. */
  fetch(inner: (req: Request) => Response | Promise<Response>): (req: Request) => Response | Promise<Response>;
  /** An ingest worker: rows entered these partitions; the supervisor wakes the node's processor. */
  entered(partitions: number[]): void;
  /** The processor: what to do when the node's ingest inserted rows into these partitions. */
  onWake(wake: (partitions: number[]) => void): void;
  /**
   * An ingest worker of a `serve` node: the breakers and quota tokens of these tenants in the node's
   * processor process, after closing `reset`'s breaker. Rejects (not_ready) when it does not answer.
   */
  controls(tenants: string[], reset?: string): Promise<Record<string, TenantSnapshot>>;
  /** The processor: how to answer `controls`. */
  onControls(answer: (tenants: string[], reset?: string) => Record<string, TenantSnapshot>): void;
}

/**
 * How long an admin call waits for the node's processor process before its 503: well within the
 * HTTP idle timeout (10 s), which would otherwise close the connection without an answer first.
 */
const CONTROLS_TIMEOUT_MS = 5_000;

/** A scrape the supervisor does not answer within this long gets 503: a node's figures or none, never one worker's. */
const SCRAPE_TIMEOUT_MS = 10_000;

/**
 * A worker's side of the channel: answers the supervisor's `collect` with this process's metrics,
 * and sends a /metrics request that reached this worker to the supervisor, which asks every worker
 * (and the processor) and sums what they answer.
 */
export function linkToSupervisor(collect: () => Promise<MetricsJson>, supervisorGone: () => void): SupervisorLink {
  const send = (message: ToSupervisor): void => {
    process.send?.(message);
  };
  // The channel closes when the supervisor exits, even killed with SIGKILL: no worker is left behind
  // holding the port and its journal. Its 'disconnect' is emitted once, when the channel's end is
  // read: this worker reads it from its first moments (reloadsFromSupervisor), so a supervisor that
  // died while this worker started is known by the channel's state, not by an event long gone.
  if (process.connected === false) queueMicrotask(supervisorGone);
  else process.once('disconnect', supervisorGone);
  let wake: (partitions: number[]) => void = () => {};
  let answerControls: (tenants: string[], reset?: string) => Record<string, TenantSnapshot> = () => ({});
  // Requests to the supervisor (a scrape, the processor's controls) waiting for their answer by id;
  // each is settled once, by its answer or by its timeout (`undefined`), whichever comes first.
  const waiting = new Map<number, (answer: Answer | undefined) => void>();
  let nextId = 0;
  const ask = <T>(timeoutMs: number, request: (id: number) => ToSupervisor, settle: (answer: Answer | undefined) => T): Promise<T> => {
    const id = ++nextId;
    return new Promise<T>((resolve, reject) => {
      const done = (answer: Answer | undefined): void => {
        clearTimeout(timer);
        waiting.delete(id);
        try {
          resolve(settle(answer));
        } catch (err) {
          reject(err);
        }
      };
      const timer = setTimeout(done, timeoutMs, undefined);
      waiting.set(id, done);
      send(request(id));
    });
  };
  process.on('message', (message: ToWorker) => {
    switch (message.t) {
      case 'reload':
        return;
      case 'wake':
        wake(message.partitions);
        return;
      case 'controls':
        // Late (this process was stopped, say): the caller was told it failed, so nothing is changed.
        if (Date.now() <= message.deadline) send({ t: 'controls_state', id: message.id, snapshots: answerControls(message.tenants, message.reset) });
        return;
      case 'collect':
        void collect().then((metrics) => send({ t: 'collected', id: message.id, metrics }));
        return;
      default:
        waiting.get(message.id)?.(message);
    }
  });
  return {
    ready(url) {
      send({ t: 'ready', url });
    },
    entered(partitions) {
      send({ t: 'entered', partitions });
    },
    onWake(handler) {
      wake = handler;
    },
    controls(tenants, reset) {
      return ask(
        CONTROLS_TIMEOUT_MS,
        (id) => ({ t: 'controls', id, tenants, ...(reset === undefined ? {} : { reset }), deadline: Date.now() + CONTROLS_TIMEOUT_MS }),
        (answer) => {
          if (answer?.t === 'controls_state') return answer.snapshots;
          throw new SluiceError(
            'not_ready',
            answer?.t === 'controls_failed'
              ? `the node's processor did not answer: ${answer.message}`
              : `the node's processor did not answer within ${CONTROLS_TIMEOUT_MS} ms; nothing was changed`,
          );
        },
      );
    },
    onControls(handler) {
      answerControls = handler;
    },
    fetch(inner) {
      return function metricsOfTheNode(req) {
        if (req.method !== 'GET' || !isMetricsPath(req.url)) return inner(req);
        return ask(
          SCRAPE_TIMEOUT_MS,
          (id) => ({ t: 'scrape', id }),
          (answer) =>
            answer?.t === 'scraped'
              ? new Response(answer.text, { headers: { 'Content-Type': answer.contentType } })
              : unavailable(answer?.t === 'scrape_failed' ? answer.message : `the supervisor did not answer within ${SCRAPE_TIMEOUT_MS} ms`),
        );
      };
    },
  };
}

/**
 * A worker reloads (tenants file, certificate) when its supervisor says so, never on a SIGHUP of
 * its own: a SIGHUP sent to the whole process group reaches the supervisor, which passes it on, and
 * each worker besides, which would reload it twice.
 */
export function reloadsFromSupervisor(reload: () => void): void {
  process.on('SIGHUP', () => {});
  process.on('message', (message: ToWorker) => {
    if (message.t === 'reload') reload();
  });
}

/** `/metrics`, with or without a query string, of an absolute or a relative URL. Cheap: every request passes here. */
function isMetricsPath(url: string): boolean {
  const at = url.indexOf('/metrics');
  if (at === -1) return false;
  const pathStart = url.startsWith('/') ? 0 : url.indexOf('/', url.indexOf('//') + 2);
  const end = at + '/metrics'.length;
  return at === pathStart && (end === url.length || url[end] === '?');
}

/** Answered before the app, so built here; its status still comes from the one code → status table. */
function unavailable(message: string): Response {
  const err = new SluiceError('not_ready', `metrics of the node not gathered: ${message}`);
  return Response.json({ error: { code: err.code, message: err.message } }, { status: statusOf(err) });
}
