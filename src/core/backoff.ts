/**
 * Exponential backoff with equal jitter: the delay doubles per attempt up to `maxMs`, and half of it
 * is random, so many failing rows or instances do not retry in lockstep yet never retry at once.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
