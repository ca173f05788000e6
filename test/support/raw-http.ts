import { connect } from 'node:net';

/**
 * Sends bytes on a fresh TCP connection and collects whatever comes back until the server closes it
 * or `waitMs` passes: for requests fetch() cannot send (HTTP/1.0 without Host, odd framings, a body
 * cut off mid-way with `abort`). With `responses`, it stops as soon as that many whole responses came.
 */
export function rawRequest(
  url: string,
  data: string | Uint8Array,
  opts: { waitMs?: number; abort?: boolean; responses?: number } = {},
): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let received = '';
    const done = (): void => {
      socket.destroy();
      resolve(received);
    };
    socket.on('data', (d) => {
      received += d.toString('latin1');
      if (opts.responses !== undefined && parseResponses(received).length >= opts.responses) done();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.write(data, () => {
      if (opts.abort === true) done();
    });
    setTimeout(done, opts.waitMs ?? 2_000);
  });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits a stream of HTTP/1.x responses (Content-Length framed, as sluice answers) into each one. */
export function parseResponses(text: string): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = text;
  while (rest.startsWith('HTTP/')) {
    const headEnd = rest.indexOf('\r\n\r\n');
    if (headEnd < 0) break;
    const [statusLine = '', ...lines] = rest.slice(0, headEnd).split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const bodyBytes = Buffer.from(rest.slice(headEnd + 4), 'latin1');
    out.push({ status: Number(statusLine.split(' ')[1]), headers, body: bodyBytes.subarray(0, length).toString('utf8') });
    rest = bodyBytes.subarray(length).toString('latin1');
  }
  return out;
}
