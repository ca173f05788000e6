// A keep-alive HTTP/1.1 client on raw sockets for the bench's fixed-rate load: one request at a time
// per connection, requests written as prebuilt bytes, responses read by Content-Length. fetch()
// spends ~120-150 µs of CPU a request on this machine (Request/Response objects, header maps, promise
// chains): the load process took a quarter of the 2 cores in publish latency, beside what it measures.

const HEADER_END = Buffer.from('\r\n\r\n');

/** The status of a complete response at the start of `buf` and where it ends; undefined while it is incomplete. */
export function completeResponse(buf: Buffer): { status: number; end: number; close: boolean } | undefined {
  const headerEnd = buf.indexOf(HEADER_END);
  if (headerEnd === -1) return undefined;
  const head = buf.toString('latin1', 0, headerEnd);
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (status === null) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(head.slice(0, 80))}`);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length === null) {
    if (/\r\ntransfer-encoding:/i.test(head)) throw new Error('a response without Content-Length (chunked) is not read by this client');
  }
  const end = headerEnd + HEADER_END.length + Number(length?.[1] ?? 0);
  if (buf.length < end) return undefined;
  return { status: Number(status[1]), end, close: /\r\nconnection:\s*close/i.test(head) };
}

interface Waiting {
  resolve: (status: number) => void;
  reject: (err: Error) => void;
}

/** One keep-alive connection; `request` while another is in flight is refused (the pool takes care). */
export class Http1Connection {
  #socket: Bun.Socket<Http1Connection> | undefined;
  #received: Buffer = Buffer.alloc(0);
  #unwritten: Uint8Array | undefined;
  #waiting: Waiting | undefined;
  #closed = false;

  static async open(host: string, port: number): Promise<Http1Connection> {
    const conn = new Http1Connection();
    conn.#socket = await Bun.connect<Http1Connection>({
      hostname: host,
      port,
      data: conn,
      socket: {
        data: (_s, chunk) => conn.#onData(chunk),
        drain: (s) => conn.#write(s),
        close: () => conn.#fail(new Error('connection closed by the server')),
        error: (_s, err) => conn.#fail(err),
      },
    });
    return conn;
  }

  get usable(): boolean {
    return !this.#closed;
  }

  /** Sends `bytes` (a whole request) and resolves with the response's status once its body is read. */
  request(bytes: Uint8Array): Promise<number> {
    if (this.#waiting !== undefined) return Promise.reject(new Error('a request is already in flight on this connection'));
    if (this.#closed || this.#socket === undefined) return Promise.reject(new Error('connection closed'));
    return new Promise<number>((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#unwritten = bytes;
      this.#write(this.#socket as Bun.Socket<Http1Connection>);
    });
  }

  close(): void {
    this.#closed = true;
    this.#socket?.end();
  }

  #write(socket: Bun.Socket<Http1Connection>): void {
    const bytes = this.#unwritten;
    if (bytes === undefined) return;
    const n = socket.write(bytes);
    this.#unwritten = n >= bytes.length ? undefined : bytes.subarray(Math.max(0, n));
  }

  #onData(chunk: Buffer): void {
    this.#received = this.#received.length === 0 ? chunk : Buffer.concat([this.#received, chunk]);
    let done: ReturnType<typeof completeResponse>;
    try {
      done = completeResponse(this.#received);
    } catch (err) {
      this.#fail(err as Error);
      this.close();
      return;
    }
    // The socket's chunk may be reused once this returns: an incomplete response is kept as a copy.
    if (done === undefined) {
      if (this.#received === chunk) this.#received = Buffer.from(chunk);
      return;
    }
    this.#received = this.#received.length === done.end ? Buffer.alloc(0) : Buffer.from(this.#received.subarray(done.end));
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (done.close) this.close();
    waiting?.resolve(done.status);
  }

  #fail(err: Error): void {
    this.#closed = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(err);
  }
}
