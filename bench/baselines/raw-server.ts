// The HTTP ceiling: Bun.serve doing the least an ingest endpoint must do with the same request —
// read the body, parse every event's JSON, answer 202 with a small JSON body. Run as its own process.
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(req) {
    const text = await req.text();
    if (req.headers.get('content-type') === 'application/x-ndjson') {
      const lines = text.split('\n');
      for (const line of lines) JSON.parse(line);
      return Response.json({ accepted: lines.length, duplicates: 0 }, { status: 202 });
    }
    const event = JSON.parse(text) as { dedupe_key?: string };
    return Response.json({ id: null, dedupe_key: event.dedupe_key, duplicate: false }, { status: 202 });
  },
});
console.log(`listening http://127.0.0.1:${server.port}`);
process.once('SIGTERM', () => {
  void server.stop(true).then(() => process.exit(0));
});
