/**
 * Linear scans of JSON text, so that sluice can carry a client's payload as the exact text it sent
 * (JSON.parse and JSON.stringify round-trips change numbers such as 1e400 or 2^53+1 and drop
 * `__proto__` keys) and refuse deep nesting before anything recursive touches it.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** Index just past the string starting at `start` (a quote), or text.length when it never ends. */
function stringEnd(text: string, start: number): number {
  // A plain loop: event strings are short, where calling indexOf per quote cost more than it saved.
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) i++;
  }
  return text.length;
}

/** What `scanEvent` found: the text nests too deep, or the raw payload (undefined when none was seen). */
export type EventScan = { tooDeep: true } | { tooDeep: false; payload: string | undefined };

const TOO_DEEP: EventScan = { tooDeep: true };

/**
 * Whether arrays and objects in `text` nest deeper than `max` (a top-level object is depth 1), and
 * `rawMember(text, 'payload')`, in one pass: ingest needs both of every event. The depth verdict
 * holds for any text, valid JSON or not (strings are skipped, brackets counted); the payload only
 * once `text` has passed JSON.parse as an object (on other text it is meaningless). A member's value spans from its first
 * character after the colon to the end of its last token before the `,` or `}` that closes it.
 */
export function scanEvent(text: string, max: number): EventScan {
  let depth = 0;
  let expectKey = false;
  let awaitingValue = false;
  let isPayload = false;
  let valueStart = 0;
  let lastEnd = 0;
  let payload: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    if (awaitingValue) {
      valueStart = i;
      awaitingValue = false;
    }
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (depth === 1) {
        if (expectKey) {
          isPayload = isPayloadKey(text, i, end);
          expectKey = false;
        } else {
          lastEnd = end;
        }
      }
      i = end - 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return TOO_DEEP;
      if (depth === 1) expectKey = c === OPEN_BRACE;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
      if (depth === 1) lastEnd = i + 1;
      else if (depth === 0 && isPayload) {
        payload = text.slice(valueStart, lastEnd);
        isPayload = false;
      }
    } else if (depth === 1) {
      if (c === COLON) {
        awaitingValue = true;
      } else if (c === COMMA) {
        if (isPayload) payload = text.slice(valueStart, lastEnd);
        isPayload = false;
        expectKey = true;
      } else {
        lastEnd = i + 1;
      }
    }
  }
  return { tooDeep: false, payload };
}

/** Whether the key string text[start, end) (quotes included) is `payload`, escapes decoded as JSON.parse does. */
function isPayloadKey(text: string, start: number, end: number): boolean {
  const length = end - start;
  if (length === 9) return text.startsWith('"payload"', start);
  // Escaped, it takes 10 to 44 characters with its quotes (all seven as \uXXXX at most).
  if (length < 10 || length > 44 || !text.slice(start, end).includes('\\')) return false;
  try {
    return JSON.parse(text.slice(start, end)) === 'payload';
  } catch {
    return false;
  }
}

function skipSpace(text: string, i: number): number {
  let c = text.charCodeAt(i);
  while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = text.charCodeAt(++i);
  return i;
}

/** Index just past the JSON value starting at `start`; `text` is known to be valid JSON. */
function valueEnd(text: string, start: number): number {
  const first = text.charCodeAt(start);
  if (first === QUOTE) return stringEnd(text, start);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    let i = start;
    for (let c = text.charCodeAt(i); i < text.length; c = text.charCodeAt(++i)) {
      if (c === COMMA || c === CLOSE_BRACE || c === CLOSE_BRACKET || c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) break;
    }
    return i;
  }
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) i = stringEnd(text, i) - 1;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) return i + 1;
  }
  return text.length;
}

/**
 * The exact text of the member `name` of the JSON object `json` (the last one, as JSON.parse keeps
 * the last of repeated names), or undefined. `json` must already have passed JSON.parse.
 */
export function rawMember(json: string, name: string): string | undefined {
  let i = skipSpace(json, 0);
  if (json.charCodeAt(i) !== OPEN_BRACE) return undefined;
  let found: string | undefined;
  i = skipSpace(json, i + 1);
  while (i < json.length && json.charCodeAt(i) !== CLOSE_BRACE) {
    const keyEnd = stringEnd(json, i);
    const rawKey = json.slice(i + 1, keyEnd - 1);
    const key = rawKey.includes('\\') ? (JSON.parse(json.slice(i, keyEnd)) as string) : rawKey;
    // Past the colon to the value.
    const start = skipSpace(json, skipSpace(json, keyEnd) + 1);
    const end = valueEnd(json, start);
    if (key === name) found = json.slice(start, end);
    i = skipSpace(json, end);
    if (json.charCodeAt(i) === COMMA) i = skipSpace(json, i + 1);
  }
  return found;
}

/** What `strictValueEnd` and its helpers return for text they do not take. */
const REFUSED = -1;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Index just past the JSON string at `start` (a quote), checked as JSON.parse checks it; or REFUSED. */
function strictStringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c < 0x20) return REFUSED;
    if (c === BACKSLASH) {
      const e = text.charCodeAt(++i);
      if (e === 0x75) {
        if (!(isHex(text.charCodeAt(i + 1)) && isHex(text.charCodeAt(i + 2)) && isHex(text.charCodeAt(i + 3)) && isHex(text.charCodeAt(i + 4)))) return REFUSED;
        i += 4;
      } else if (!(e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74)) {
        return REFUSED;
      }
    }
  }
  return REFUSED;
}

function digitsEnd(text: string, i: number): number {
  if (!isDigit(text.charCodeAt(i))) return REFUSED;
  while (isDigit(text.charCodeAt(i))) i++;
  return i;
}

/** Index just past the JSON number at `start`, by JSON's grammar; or REFUSED. */
function strictNumberEnd(text: string, start: number): number {
  let i = text.charCodeAt(start) === 0x2d ? start + 1 : start;
  if (text.charCodeAt(i) === 0x30) i++;
  else if ((i = digitsEnd(text, i)) === REFUSED) return REFUSED;
  if (text.charCodeAt(i) === 0x2e && (i = digitsEnd(text, i + 1)) === REFUSED) return REFUSED;
  const e = text.charCodeAt(i);
  if (e === 0x65 || e === 0x45) {
    const sign = text.charCodeAt(i + 1);
    return digitsEnd(text, sign === 0x2b || sign === 0x2d ? i + 2 : i + 1);
  }
  return i;
}

/**
 * Index just past the JSON value at `start`, whose containers sit at `depth` (the top level's
 * members at 1), checked by JSON's grammar with containers at most `max` deep; REFUSED for anything
 * else. What it takes JSON.parse takes; what it refuses goes the slow way (JSON.parse, whose error
 * is the answer), so it need not be complete, only never wrong.
 */
function strictValueEnd(text: string, start: number, depth: number, max: number): number {
  const c = text.charCodeAt(start);
  if (c === QUOTE) return strictStringEnd(text, start);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    if (depth + 1 > max) return REFUSED;
    const object = c === OPEN_BRACE;
    const close = object ? CLOSE_BRACE : CLOSE_BRACKET;
    let i = skipSpace(text, start + 1);
    if (text.charCodeAt(i) === close) return i + 1;
    for (;;) {
      if (object) {
        if (text.charCodeAt(i) !== QUOTE || (i = strictStringEnd(text, i)) === REFUSED) return REFUSED;
        i = skipSpace(text, i);
        if (text.charCodeAt(i) !== COLON) return REFUSED;
        i = skipSpace(text, i + 1);
      }
      if ((i = strictValueEnd(text, i, depth + 1, max)) === REFUSED) return REFUSED;
      i = skipSpace(text, i);
      const next = text.charCodeAt(i);
      if (next === close) return i + 1;
      if (next !== COMMA) return REFUSED;
      i = skipSpace(text, i + 1);
    }
  }
  if (c === 0x74) return text.startsWith('true', start) ? start + 4 : REFUSED;
  if (c === 0x66) return text.startsWith('false', start) ? start + 5 : REFUSED;
  if (c === 0x6e) return text.startsWith('null', start) ? start + 4 : REFUSED;
  return strictNumberEnd(text, start);
}

/**
 * Index just past the JSON value at `start`, checked by JSON's grammar with containers at most `max`
 * deep, without building it; -1 for anything it does not take. What it takes JSON.parse takes; what
 * it refuses may still be JSON (deeper than `max`, say): the caller then asks JSON.parse.
 */
export function strictJsonEnd(text: string, start: number, max: number): number {
  return strictValueEnd(text, start, 0, max);
}

/**
 * Where `topMembers` found each named member's value: `spans[2k]` and `spans[2k + 1]` are the start
 * and end in the text of names[k]'s value (the last of repeated names, as JSON.parse keeps), -1 when
 * absent. Filled in place, so reading a line allocates nothing but what the caller slices out.
 */
export type MemberSpans = Int32Array;

/** Spans for `names`, to be reused from line to line. */
export function memberSpans(names: readonly string[]): MemberSpans {
  return new Int32Array(names.length * 2);
}

/**
 * The members of the JSON object `text` located in `spans` (see MemberSpans), after checking the
 * whole text by JSON's grammar and its nesting against `max` (a top-level object is depth 1), in one
 * pass and without building the values or the keys. False for any text it does not take: not an
 * object, not JSON, too deep, a member not among `names` or a name written with escapes, or only
 * unusual (the caller then parses it as before). `spans` is meaningful only when it returns true.
 */
export function topMembers(text: string, max: number, names: readonly string[], spans: MemberSpans): boolean {
  spans.fill(-1);
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_BRACE || max < 1) return false;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) !== CLOSE_BRACE) {
    for (;;) {
      const keyStart = i;
      if (text.charCodeAt(i) !== QUOTE || (i = strictStringEnd(text, i)) === REFUSED) return false;
      const slot = nameIndex(text, keyStart + 1, i - 1, names);
      if (slot < 0) return false;
      i = skipSpace(text, i);
      if (text.charCodeAt(i) !== COLON) return false;
      const valueStart = skipSpace(text, i + 1);
      if ((i = strictValueEnd(text, valueStart, 1, max)) === REFUSED) return false;
      spans[2 * slot] = valueStart;
      spans[2 * slot + 1] = i;
      i = skipSpace(text, i);
      const next = text.charCodeAt(i);
      if (next === CLOSE_BRACE) break;
      if (next !== COMMA) return false;
      i = skipSpace(text, i + 1);
    }
  }
  return skipSpace(text, i + 1) === text.length;
}

/**
 * Which of `names` the key text[start, end) (quotes excluded) spells, or -1: compared in place, so no
 * key string is made. A key with escapes is -1 even when it decodes to a name (rare; the caller's slow way takes it).
 */
function nameIndex(text: string, start: number, end: number, names: readonly string[]): number {
  const length = end - start;
  for (let k = 0; k < names.length; k++) {
    const name = names[k] as string;
    if (name.length === length && text.startsWith(name, start)) return k;
  }
  return -1;
}
