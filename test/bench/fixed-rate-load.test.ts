import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { completeResponse, Http1Connection } from '../../bench/http1-client.ts';

const LOAD = join(import.meta.dir, '../../bench/fixed-rate-load.ts');

interface Summary {
  sent: number;
  ok: number;
  failed: number;
  missed: number;
  rate: number;
}

async function runLoad(url: string, rate: number, seconds: number): Promise<{ summary: Summary; stderr: string }> {
  const proc = Bun.spawn({
    cmd: ['bun', LOAD, url, String(rate), String(seconds), 'run1'],
    env: { ...process.env, BENCH_TOKEN: 'tok-1', BENCH_TENANT: 'acme', BENCH_PAYLOAD: JSON.stringify({ kind: 'k', n: 1 }) },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  return { summary: JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Summary, stderr };
}

describe('bench HTTP/1.1 client', () => {
  test('a response is complete once its Content-Length bytes are in, wherever the chunks split it', () => {
    const response = Buffer.from('HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{"id":"17"}HTTP/1.1 200');
    const end = response.indexOf('HTTP/1.1 200');
    for (let cut = 0; cut < end; cut++) expect(completeResponse(response.subarray(0, cut))).toBeUndefined();
    expect(completeResponse(response.subarray(0, end))).toEqual({ status: 202, end, close: false });
    expect(completeResponse(response)).toEqual({ status: 202, end, close: false });
    const closing = Buffer.from('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
    expect(completeResponse(closing)).toEqual({ status: 204, end: closing.length, close: true });
    expect(() => completeResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'))).toThrow(/chunked/);
    expect(() => completeResponse(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(/not an HTTP\/1.1 response/);
  });

  test('one connection carries request after request, and a closed one fails its request', async () => {
    let seen = 0;
    const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: async (req) => new Response(`${++seen}:${await req.text()}`, { status: seen === 3 ? 500 : 202 }) });
    try {
      const conn = await Http1Connection.open('127.0.0.1', server.port as number);
      const request = (body: string) => Buffer.from(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      expect(await conn.request(request('a'))).toBe(202);
      expect(await conn.request(request('bb'))).toBe(202);
      expect(await conn.request(request('ccc'))).toBe(500);
      await expect(Promise.all([conn.request(request('d')), conn.request(request('e'))])).rejects.toThrow(/already in flight/);
      conn.close();
      await expect(conn.request(request('f'))).rejects.toThrow(/closed/);
    } finally {
      await server.stop(true);
    }
  });
});

describe('bench fixed-rate load', () => {
  test('sends the asked rate of events, each with its dedupe key, token, tenant and send time, and counts the answers', async () => {
    const bodies: { dedupe_key: string; payload: { kind: string; n: number; sent_at: number; warmup: boolean } }[] = [];
    const auth = new Set<string>();
    let arrivedLate = 0;
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: async (req) => {
        const url = new URL(req.url);
        if (req.method !== 'POST' || url.pathname !== '/v1/events' || req.headers.get('content-type') !== 'application/json') return new Response('bad', { status: 400 });
        auth.add(`${req.headers.get('authorization')} ${req.headers.get('x-tenant-id')}`);
        const body = (await req.json()) as (typeof bodies)[number];
        if (Date.now() - body.payload.sent_at > 1000) arrivedLate++;
        bodies.push(body);
        // Every 10th is refused: counted as failed, not ok.
        return Response.json({ id: String(bodies.length) }, { status: bodies.length % 10 === 0 ? 429 : 202 });
      },
    });
    try {
      const { summary } = await runLoad(`http://127.0.0.1:${server.port}`, 400, 2);
      expect(bodies.length).toBeGreaterThanOrEqual(760);
      expect(bodies.length).toBeLessThanOrEqual(800);
      expect(summary.sent).toBe(bodies.length);
      expect(summary.missed).toBe(0);
      expect(summary.failed).toBe(Math.floor(bodies.length / 10));
      expect(summary.ok).toBe(bodies.length - summary.failed);
      expect([...auth]).toEqual(['Bearer tok-1 acme']);
      expect(new Set(bodies.map((b) => b.dedupe_key)).size).toBe(bodies.length);
      expect(bodies.map((b) => b.dedupe_key).sort()).toEqual(bodies.map((_, i) => `run1-${i}`).sort());
      expect(bodies.every((b) => b.payload.kind === 'k' && b.payload.n === 1)).toBe(true);
      // The first second is warm-up, the second is not.
      expect(bodies.filter((b) => b.payload.warmup).length).toBeGreaterThan(300);
      expect(bodies.filter((b) => !b.payload.warmup).length).toBeGreaterThan(300);
      expect(arrivedLate).toBe(0);
    } finally {
      await server.stop(true);
    }
  }, 30_000);

  test('a server that stops answering: sends past the in-flight bound are missed, nothing hangs, the process reports', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let received = 0;
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: async () => {
        received++;
        await held;
        return new Response('{}', { status: 202 });
      },
    });
    try {
      const running = runLoad(`http://127.0.0.1:${server.port}`, 1500, 1);
      await Bun.sleep(1500);
      release();
      const { summary } = await running;
      expect(summary.sent).toBe(1024);
      expect(summary.missed).toBeGreaterThan(300);
      expect(summary.ok).toBe(1024);
      expect(received).toBe(1024);
    } finally {
      await server.stop(true);
    }
  }, 30_000);
});
