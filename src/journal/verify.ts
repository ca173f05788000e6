import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseEntry, readSegmentLines } from './reader.ts';
import { listSegments } from './segments.ts';

export interface Problem {
  file: string;
  line?: number;
  message: string;
}

export interface NodeReport {
  dir: string;
  segments: number;
  records: number;
  firstSeq: number | undefined;
  lastSeq: number | undefined;
}

export interface VerifyReport {
  nodes: NodeReport[];
  problems: Problem[];
}

/**
 * Checks every segment under `dir` (a node directory, or a journal root holding node directories):
 * gzip integrity, one JSON entry per line, seq strictly increasing without gaps (within and across
 * segments), segment names matching their first seq, no segment both plain and gzipped, no torn tail.
 */
export async function verifyJournal(dir: string): Promise<VerifyReport> {
  const report: VerifyReport = { nodes: [], problems: [] };
  for (const nodeDir of await nodeDirs(dir)) report.nodes.push(await verifyNode(nodeDir, report.problems));
  if (report.nodes.length === 0) report.problems.push({ file: dir, message: 'no journal segments found' });
  return report;
}

async function nodeDirs(dir: string): Promise<string[]> {
  if ((await listSegments(dir)).length > 0) return [dir];
  const found: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const sub = join(dir, name);
    if ((await stat(sub)).isDirectory() && (await listSegments(sub)).length > 0) found.push(sub);
  }
  return found;
}

async function verifyNode(nodeDir: string, problems: Problem[]): Promise<NodeReport> {
  const segments = await listSegments(nodeDir);
  const node: NodeReport = { dir: nodeDir, segments: segments.length, records: 0, firstSeq: undefined, lastSeq: undefined };
  const seen = new Set<number>();
  for (const seg of segments) {
    if (seen.has(seg.firstSeq)) {
      problems.push({ file: seg.path, message: `segment ${seg.firstSeq} exists both plain and gzipped` });
      continue;
    }
    seen.add(seg.firstSeq);
    let firstInSegment = true;
    try {
      for await (const l of readSegmentLines(seg.path, {
        gzipped: seg.gzipped,
        onPartial: (bytes) => problems.push({ file: seg.path, message: `torn tail: ${bytes} bytes after the last newline` }),
      })) {
        const e = parseEntry(l.text);
        if (typeof e === 'string') {
          problems.push({ file: seg.path, line: l.line, message: e });
          continue;
        }
        if (firstInSegment && e.seq !== seg.firstSeq) {
          problems.push({ file: seg.path, line: l.line, message: `first seq ${e.seq} does not match the segment name (${seg.firstSeq})` });
        }
        firstInSegment = false;
        if (node.lastSeq !== undefined && e.seq <= node.lastSeq) {
          problems.push({ file: seg.path, line: l.line, message: `seq ${e.seq} is not after ${node.lastSeq}` });
        } else if (node.lastSeq !== undefined && e.seq !== node.lastSeq + 1) {
          problems.push({ file: seg.path, line: l.line, message: `gap: seq ${e.seq} follows ${node.lastSeq} (${e.seq - node.lastSeq - 1} missing)` });
        }
        node.firstSeq ??= e.seq;
        node.lastSeq = Math.max(node.lastSeq ?? e.seq, e.seq);
        node.records++;
      }
    } catch (err) {
      problems.push({ file: seg.path, message: `unreadable: ${(err as Error).message}` });
    }
  }
  return node;
}
