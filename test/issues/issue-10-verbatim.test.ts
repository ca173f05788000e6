import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { readTopic } from '../support/kafka.ts';
import { sluiceFixture } from '../support/sluice.ts';
import { nodeJournalLines } from '../support/journal-files.ts';

/**
 * Issue 10, "Data changed under a 202": 1e400 was stored as null, 1e-400 as 0, 2^53+1 rounded, a
 * `__proto__` key dropped. The payload is now the client's text from request to Kafka value, in sync
 * mode (the write path inserts) and in fast_ack (the forwarder reads it back from the journal).
 */
const PAYLOADS: Record<string, string> = {
  numbers: '{"big":1e400,"tiny":1e-400,"n":9007199254740993,"f":1.0,"e":1E+2,"neg":-0}',
  keys: '{"__proto__":{"x":1},"dup":1,"dup":2,"z":0,"a":0,"constructor":"c"}',
  spaced: '{\n  "a" : [ 1 , 2 ],\r\n\t"b": "x"\n}',
  strings: '{"s":"\\u00e9 é 😀 \\ud83d\\ude00 \\"q\\" \\\\ \\/","nul":"\\u0000","lone":"\\udc00","ctl":"\\u001b"}',
  empty: '{}',
};

for (const mode of ['sync', 'fast_ack'] as const) {
  describe(`issue 10: the payload is kept byte for byte (${mode})`, () => {
    const f = sluiceFixture({ SLUICE_WRITE_MODE: mode });

    test('from the request body to the journal line and the Kafka record value', async () => {
      const single = Object.entries(PAYLOADS).map(([key, payload]) =>
        fetch(`${f.sluice.url}/v1/events`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'exact' },
          body: `{"dedupe_key":"json-${key}","payload":${payload}}`,
        }),
      );
      const ndjson = Object.entries(PAYLOADS)
        .filter(([, p]) => !p.includes('\n'))
        .map(([key, payload]) => `{"payload" : ${payload} , "dedupe_key":"nd-${key}"}`);
      const batch = fetch(`${f.sluice.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'exact' }, body: ndjson.join('\n') });
      for (const res of await Promise.all([...single, batch])) expect(res.status).toBe(202);

      const expected = new Map<string, string>();
      for (const [key, payload] of Object.entries(PAYLOADS)) {
        expected.set(`exact:json-${key}`, payload);
        if (!payload.includes('\n')) expected.set(`exact:nd-${key}`, payload);
      }
      const records = await readTopic(f.brokers, f.sluice.topic, { expected: expected.size });
      expect(records.length).toBe(expected.size);
      for (const r of records) expect({ key: r.key, value: r.value }).toEqual({ key: r.key, value: expected.get(r.key) ?? '(unexpected key)' });

      // Every journal line is one JSON object (jq reads it) holding the payload verbatim: spliced in
      // as `payload`, or as the string `payload_text` when it has line breaks.
      const dir = join(f.sluice.journalDir, 'test-node');
      const lines = nodeJournalLines(dir);
      for (const line of lines) {
        const entry = JSON.parse(line) as { tenant_id: string; dedupe_key: string; payload?: unknown; payload_text?: string };
        const payload = expected.get(`${entry.tenant_id}:${entry.dedupe_key}`) ?? '';
        if (payload.includes('\n')) expect(entry.payload_text).toBe(payload);
        else expect(line).toContain(`"payload":${payload}`);
      }
      expect(lines.length).toBe(expected.size);
    }, 60_000);
  });
}
