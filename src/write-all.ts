import type { FileHandle } from 'node:fs/promises';

/**
 * Writes all of `bytes` at `position`: a write may take fewer bytes than asked (a disk that fills
 * midway) without an error, so the rest is written on, and a full disk then fails as the error it is.
 */
export async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let offset = 0; offset < bytes.byteLength; ) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset, position + offset);
    if (bytesWritten === 0) throw new Error(`no byte written at ${position + offset} of ${handle.fd}`);
    offset += bytesWritten;
  }
}
