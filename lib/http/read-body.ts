import type { Readable } from 'node:stream';

/** Thrown when a body is larger than the limit its reader was given. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Body exceeds the ${limit}-byte limit; read it as a stream or raise the limit`);
    this.name = 'BodyTooLargeError';
  }
}

/** Reads a stream into one Buffer, destroying it as soon as it grows past `limit` bytes. */
export async function readLimited(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > limit) {
      stream.destroy();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(buf);
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
}
