import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINT_FILE, readCheckpoint, type Checkpoint } from './checkpoint.ts';
import { parseEntry, readSegmentLines } from './reader.ts';
import { listSegments, type SegmentFile } from './segments.ts';

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
 * segments), segment names matching their first seq, no segment both plain and gzipped, no torn tail,
 * and the forwarder's checkpoint consistent with the files (on a line boundary, at the seq it names,
 * never past what the files hold).
 */
export async function verifyJournal(dir: string): Promise<VerifyReport> {
  const report: VerifyReport = { nodes: [], problems: [] };
  for (const nodeDir of await nodeDirs(dir)) report.nodes.push(await verifyNode(nodeDir, report.problems));
  if (report.nodes.length === 0) report.problems.push({ file: dir, message: 'no journal segments found' });
  return report;
}

/** Directories holding segments or a checkpoint (every segment forwarded and retired by retention). */
async function nodeDirs(dir: string): Promise<string[]> {
  if (await isNodeDir(dir)) return [dir];
  const found: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const sub = join(dir, name);
    if ((await stat(sub)).isDirectory() && (await isNodeDir(sub))) found.push(sub);
  }
  return found;
}

async function isNodeDir(dir: string): Promise<boolean> {
  return (await listSegments(dir)).length > 0 || (await stat(join(dir, CHECKPOINT_FILE)).then(() => true, () => false));
}

async function verifyNode(nodeDir: string, problems: Problem[]): Promise<NodeReport> {
  const segments = await listSegments(nodeDir);
  const node: NodeReport = { dir: nodeDir, segments: segments.length, records: 0, firstSeq: undefined, lastSeq: undefined };
  const cpFile = join(nodeDir, CHECKPOINT_FILE);
  let cp: Checkpoint | undefined;
  try {
    cp = await readCheckpoint(nodeDir);
  } catch (err) {
    problems.push({ file: cpFile, message: (err as Error).message });
  }
  const seen = new Set<number>();
  for (const seg of segments) {
    if (seen.has(seg.firstSeq)) {
      problems.push({ file: seg.path, message: `segment ${seg.firstSeq} exists both plain and gzipped` });
      continue;
    }
    seen.add(seg.firstSeq);
    let firstInSegment = true;
    const atCheckpoint = cp !== undefined && cp.segment === seg.firstSeq && cp.offset > 0 ? cp : undefined;
    let checkpointLine = false;
    let bytes = 0;
    try {
      for await (const l of readSegmentLines(seg.path, {
        gzipped: seg.gzipped,
        onPartial: (bytes) => problems.push({ file: seg.path, message: `torn tail: ${bytes} bytes after the last newline` }),
        // The newest segment may be preallocated (its zeros are what is not written yet); a sealed one was cut to its lines.
        onZeros: (offset) => {
          if (seg !== segments.at(-1)) problems.push({ file: seg.path, message: `NUL bytes from byte ${offset} on: the rest of this sealed segment is not read` });
        },
      })) {
        bytes = l.end;
        const e = parseEntry(l.text);
        if (l.end === atCheckpoint?.offset) {
          checkpointLine = true;
          // The last good seq up to here is what the forwarder passed.
          const passed = typeof e === 'string' ? node.lastSeq : Math.max(node.lastSeq ?? 0, e.seq);
          if (passed !== atCheckpoint.seq) {
            problems.push({ file: cpFile, message: `the checkpoint says seq ${atCheckpoint.seq} ends at byte ${atCheckpoint.offset} of ${seg.file}, but seq ${passed ?? '-'} does` });
          }
        }
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
      if (atCheckpoint !== undefined && !checkpointLine) {
        problems.push({
          file: cpFile,
          message: atCheckpoint.offset > bytes
            ? `the checkpoint is at byte ${atCheckpoint.offset} of ${seg.file}, past its end (${bytes} bytes)`
            : `the checkpoint's byte ${atCheckpoint.offset} of ${seg.file} is not at a line boundary`,
        });
      }
    } catch (err) {
      problems.push({ file: seg.path, message: `unreadable: ${(err as Error).message}` });
    }
  }
  if (cp !== undefined) checkCheckpointAgainstFiles(cp, segments, node, cpFile, problems);
  return node;
}

/** The checkpoint must not have passed records the files do not hold, nor name a segment lost in the middle. */
function checkCheckpointAgainstFiles(cp: Checkpoint, segments: SegmentFile[], node: NodeReport, file: string, problems: Problem[]): void {
  // With no segment left, retention retired everything the checkpoint passed: nothing to compare.
  if (segments.length > 0 && cp.seq > (node.lastSeq ?? 0)) {
    problems.push({ file, message: `the checkpoint passed seq ${cp.seq} but the journal ends at seq ${node.lastSeq ?? '-'}` });
  }
  if (cp.offset > 0 && !segments.some((s) => s.firstSeq === cp.segment)) {
    const later = segments.find((s) => s.firstSeq > cp.segment);
    // Retention deletes forwarded segments only: what follows must start right after the checkpoint.
    if (later !== undefined && later.firstSeq !== cp.seq + 1) {
      problems.push({ file, message: `the checkpoint's segment ${cp.segment} is missing and the next one starts at seq ${later.firstSeq}, not ${cp.seq + 1}` });
    }
  }
}
