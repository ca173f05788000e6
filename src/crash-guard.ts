import { describeError } from './errors.ts';
import type { Logger } from './log.ts';

/**
 * Keeps the process alive when a library throws from a callback or leaves a promise rejected that
 * nobody awaits (the Kafka client did both): one bad record or connection must not end every
 * tenant's service, nor become a crash loop on restart. Each one is logged as an error line.
 */
export function guardProcess(log: Logger): void {
  process.on('uncaughtException', (err) => {
    log.error('uncaught exception; sluice goes on', { error: describeError(err), stack: stackOf(err) });
  });
  process.on('unhandledRejection', (reason) => {
    log.error('unhandled promise rejection; sluice goes on', { error: describeError(reason), stack: stackOf(reason) });
  });
}

function stackOf(err: unknown): string | undefined {
  return err instanceof Error ? err.stack?.split('\n').slice(0, 8).join('\n') : undefined;
}
