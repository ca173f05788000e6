import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchTenant {
  id: string;
  token: string;
  /** The tenants file sluice is started with (SLUICE_TENANTS_FILE). */
  file: string;
}

// Far above any load the bench can produce, so quotas and backpressure never bind.
const UNBOUNDED = 1_000_000_000;

/** A tenants file with one bench tenant whose quota and max_pending never bind, and its token. */
export function writeBenchTenant(dir: string): BenchTenant {
  const id = 'bench';
  const token = Bun.randomUUIDv7() + Bun.randomUUIDv7();
  const hash = new Bun.CryptoHasher('sha256').update(token).digest('hex');
  const file = join(dir, 'tenants.json');
  const policy = { quota: { rate: UNBOUNDED, burst: UNBOUNDED }, max_pending: UNBOUNDED };
  writeFileSync(file, JSON.stringify({ defaults: policy, tenants: { [id]: { tokens: [`sha256:${hash}`], ...policy } } }, null, 2));
  return { id, token, file };
}
