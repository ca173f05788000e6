import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../src/log.ts';
import { sameSecret, sha256 } from '../src/tenant-tokens.ts';
import { loadTenantsFile, Tenants } from '../src/tenants.ts';
import { writeTenantsFile } from './support/tenants.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-tokens-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('token lookup', () => {
  test('each token maps to its tenant; unknown and empty tokens to none', () => {
    const file = join(dir, 'lookup.json');
    writeTenantsFile(file, { acme: { tokens: ['acme-1', 'acme-2'] }, beta: { tokens: ['beta-1'] }, quiet: { tokens: [] } });
    const tenants = new Tenants(loadTenantsFile(file), createLogger({ write: () => {} }));
    expect(tenants.tenantOf('acme-1')).toBe('acme');
    expect(tenants.tenantOf('acme-2')).toBe('acme');
    expect(tenants.tenantOf('beta-1')).toBe('beta');
    expect(tenants.tenantOf('acme-3')).toBeUndefined();
    expect(tenants.tenantOf('')).toBeUndefined();
    // The file stores digests; the digest itself is not a token.
    expect(tenants.tenantOf(`sha256:${sha256('acme-1').toString('hex')}`)).toBeUndefined();
    expect(tenants.configured).toEqual(['acme', 'beta', 'quiet']);
  });

  test('a token listed under two tenants is an error naming both', () => {
    const file = join(dir, 'shared.json');
    writeTenantsFile(file, { acme: { tokens: ['same'] }, beta: { tokens: ['other', 'same'] } });
    expect(() => loadTenantsFile(file)).toThrow('tenants.beta.tokens.1 is also a token of tenant acme');
  });

  test('two tenants\' topics that Kafka treats as one (./_) are an error naming both', () => {
    const file = join(dir, 'collide.json');
    writeTenantsFile(file, { acme: { tokens: ['a'], topic: 'orders.eu' }, beta: { tokens: ['b'], topic: 'orders_eu' }, same: { tokens: ['c'], topic: 'orders.eu' } });
    expect(() => loadTenantsFile(file)).toThrow('tenants.beta.topic orders_eu collides with topic orders.eu (Kafka treats . and _ alike)');
  });

  test('a reload swaps the tokens; a rejected file keeps the old ones', () => {
    const file = join(dir, 'reload.json');
    const lines: string[] = [];
    writeTenantsFile(file, { acme: { tokens: ['old'] } });
    const tenants = new Tenants(loadTenantsFile(file), createLogger({ write: (l) => lines.push(l) }));
    // Known (and so remembered) before the reload: the reload must still refuse it.
    expect(tenants.tenantOf('old')).toBe('acme');
    expect(tenants.tenantOf('old')).toBe('acme');
    writeTenantsFile(file, { acme: { tokens: ['new'] }, beta: { tokens: ['beta'] } });
    expect(tenants.reload()).toBe(true);
    expect(tenants.tenantOf('old')).toBeUndefined();
    expect(tenants.tenantOf('new')).toBe('acme');
    expect(tenants.tenantOf('beta')).toBe('beta');
    writeFileSync(file, '{"tenants": {"acme": {"tokens": ["plain-token"]}}}');
    expect(tenants.reload()).toBe(false);
    expect(tenants.tenantOf('new')).toBe('acme');
    const rejected = lines.map((l) => JSON.parse(l) as { msg: string; errors?: string[] }).find((l) => l.errors !== undefined);
    expect(rejected?.errors).toEqual([expect.stringContaining('tenants.acme.tokens.0 must be sha256:<64 lowercase hex digits>')]);
    // A plain token pasted into the file by mistake is a secret: the report names its place, not it.
    expect(lines.join('')).not.toContain('plain-token');
  });

  test('tokens are answered alike however many distinct ones have been seen', () => {
    const file = join(dir, 'many.json');
    const tokens = Array.from({ length: 1500 }, (_, i) => `token-${i}`);
    writeTenantsFile(file, { acme: { tokens: tokens.slice(0, 750) }, beta: { tokens: tokens.slice(750) } });
    const tenants = new Tenants(loadTenantsFile(file), createLogger({ write: () => {} }));
    for (let round = 0; round < 2; round++) {
      tokens.forEach((t, i) => expect(tenants.tenantOf(t)).toBe(i < 750 ? 'acme' : 'beta'));
      expect(tenants.tenantOf('token-1500')).toBeUndefined();
    }
  });

  test('sameSecret compares secrets of any length', () => {
    expect(sameSecret('admin-token-0123456789', 'admin-token-0123456789')).toBe(true);
    expect(sameSecret('admin-token-0123456789', 'admin-token-012345678')).toBe(false);
    expect(sameSecret('', 'admin-token-0123456789')).toBe(false);
  });
});
