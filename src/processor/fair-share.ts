/** A tenant with rows waiting and the whole tokens its bucket holds. */
export interface Claimant {
  tenant: string;
  tokens: number;
}

/**
 * Tenants in round-robin order: sorted, starting after `last` (the last tenant served in the
 * previous round), so that when the batch cannot hold everyone each tenant gets its turn.
 */
export function roundRobin(tenants: readonly string[], last: string | undefined): string[] {
  const sorted = [...tenants].sort();
  if (last === undefined) return sorted;
  const start = sorted.findIndex((t) => t > last);
  return start <= 0 ? sorted : [...sorted.slice(start), ...sorted.slice(0, start)];
}

/**
 * Splits a batch of `budget` rows among claimants (in round-robin order) as evenly as their tokens
 * allow: a tenant with few tokens takes what it may and its unused share goes to the others. When
 * there are more claimants than rows, the first `budget` of them get one row each.
 */
export function allocate(claimants: readonly Claimant[], budget: number): Map<string, number> {
  const grants = new Map<string, number>();
  const eligible = claimants.filter((c) => c.tokens >= 1);
  if (eligible.length === 0 || budget <= 0) return grants;
  if (eligible.length >= budget) {
    for (const c of eligible.slice(0, budget)) grants.set(c.tenant, 1);
    return grants;
  }
  let remaining = budget;
  const fewestTokensFirst = [...eligible].sort((a, b) => a.tokens - b.tokens);
  fewestTokensFirst.forEach((c, i) => {
    const grant = Math.min(c.tokens, Math.floor(remaining / (fewestTokensFirst.length - i)));
    grants.set(c.tenant, grant);
    remaining -= grant;
  });
  // What rounding left over goes one row at a time, in round-robin order.
  for (const c of eligible) {
    if (remaining === 0) break;
    const grant = grants.get(c.tenant) ?? 0;
    if (grant < c.tokens) {
      grants.set(c.tenant, grant + 1);
      remaining--;
    }
  }
  return grants;
}
