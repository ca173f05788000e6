import { readFileSync } from 'node:fs';

/** sluice's version, from package.json: one place to bump. */
export const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
