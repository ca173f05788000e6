/** How one component a node depends on is doing, as /readyz and `sluice check` report it. */
export interface ComponentState {
  ok: boolean;
  detail?: string;
}

/** Resolves `fallback()` if `p` has not settled within `ms`. */
export function within<T>(p: Promise<T>, ms: number, fallback: () => T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback()), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
