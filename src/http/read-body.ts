import { SluiceError } from '../errors.ts';
import { eventLineCount, type BodyBudget, type BodyHold } from './body-budget.ts';

/**
 * Reads a request body, refusing (413) as soon as it passes `maxBytes`, declared or not. `limit`
 * names where the limit comes from, for the error's details. With a `budget`, the whole body is
 * taken from it once it has arrived (the caller releases `hold` when done with it), and a body
 * whose declared length does not fit beside the bodies already held is refused (503 `overloaded`)
 * before it is read. A body still arriving holds nothing: a client that declares a length and sends
 * slowly, or never, cannot fill the budget for everyone else.
 */
export async function readBody(
  req: Request,
  maxBytes: number,
  limit = `SLUICE_MAX_BODY_BYTES=${maxBytes}`,
  budget?: BodyBudget,
  /** An NDJSON body's SLUICE_MAX_BATCH_LINES: its event lines count in the budget (see MIN_LINE_CHARGE). */
  maxLines?: number,
): Promise<{ body: Uint8Array; hold: BodyHold | undefined }> {
  let body: Uint8Array;
  try {
    body = await read(req, maxBytes, limit, budget);
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    // The client went away or stalled past the server's idle timeout mid-body: its fault, not ours.
    throw new SluiceError('request_incomplete', 'the request body ended before it was complete (aborted or timed out)', { cause: err });
  }
  return { body, hold: budget?.take(body.byteLength, maxLines === undefined ? 0 : linesCounted(body, maxLines)) };
}

/** A body of more lines than a batch may have is refused by its parse (413), not by the budget (a 503 to retry). */
function linesCounted(body: Uint8Array, maxLines: number): number {
  const lines = eventLineCount(body);
  return lines > maxLines ? 0 : lines;
}

async function read(req: Request, maxBytes: number, limit: string, budget: BodyBudget | undefined): Promise<Uint8Array> {
  const declared = req.headers.get('content-length');
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge(maxBytes, limit);
  // A declared length bounds the body (HTTP framing ends it there), so it is read in one call: the
  // chunk-by-chunk stream below cost ~10% of the CPU of a single-event ingest. Touching `req.body`
  // first would build that stream anyway.
  if (declared !== null) {
    budget?.check(Number(declared));
    return req.bytes();
  }
  if (req.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes, limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

function tooLarge(maxBytes: number, limit: string): SluiceError {
  return new SluiceError('payload_too_large', `request body exceeds ${maxBytes} bytes`, {
    details: [{ message: `limit is ${limit}` }],
  });
}
