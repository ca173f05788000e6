import { writeFileSync } from 'node:fs';
import { sha256 } from '../../src/tenant-tokens.ts';

export interface TestTenant {
  tokens: string[];
  topic?: string;
}

/** Writes a tenants file holding the SHA-256 of each plain token, as an operator would. */
export function writeTenantsFile(path: string, tenants: Record<string, TestTenant>): void {
  const entries = Object.entries(tenants).map(([id, t]) => [
    id,
    { tokens: t.tokens.map((token) => `sha256:${sha256(token).toString('hex')}`), ...(t.topic === undefined ? {} : { topic: t.topic }) },
  ]);
  writeFileSync(path, JSON.stringify({ tenants: Object.fromEntries(entries) }));
}

/** A fresh random bearer token. */
export function newToken(label: string): string {
  return `${label}-${Bun.randomUUIDv7()}`;
}
