import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, inflateRaw, type ZlibOptions } from 'node:zlib';
import { BodyTooLargeError } from './read-body.js';

type Decoder = (bytes: Buffer, options: ZlibOptions) => Promise<Buffer>;

const gunzipAsync = promisify(gunzip) as Decoder;
const inflateAsync = promisify(inflate) as Decoder;
const inflateRawAsync = promisify(inflateRaw) as Decoder;

const DECODERS: Record<string, Decoder> = {
  gzip: gunzipAsync,
  'x-gzip': gunzipAsync,
  // 'deflate' means zlib-wrapped, but some servers send a raw deflate stream. A zlib body
  // that outgrew the limit is no raw one: retried raw, it would read as corrupt.
  deflate: (bytes, options) =>
    inflateAsync(bytes, options).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ERR_BUFFER_TOO_LARGE') throw error;
      return inflateRawAsync(bytes, options);
    }),
  br: promisify(brotliDecompress) as Decoder,
};

/** A body whose Content-Encoding is unknown, or whose encoded bytes are corrupt. */
export class ContentEncodingError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ContentEncodingError';
  }
}

/**
 * Undoes a body's content codings (RFC 9110 8.4; applied in the order listed, so undone in
 * reverse), with the decoded size capped at `limit` bytes: a small compressed body may
 * inflate to gigabytes.
 */
export async function decodeContent(bytes: Buffer, contentEncoding: string | null, limit: number): Promise<Buffer> {
  if (!contentEncoding || bytes.length === 0) return bytes;
  const codings = contentEncoding
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity');
  let decoded = bytes;
  for (const coding of codings.reverse()) {
    const decode = DECODERS[coding];
    if (!decode) throw new ContentEncodingError(`Cannot decode a body with Content-Encoding ${coding}`);
    try {
      decoded = await decode(decoded, { maxOutputLength: limit });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new BodyTooLargeError(limit);
      throw new ContentEncodingError(`The ${coding}-encoded body is corrupt: ${(error as Error).message}`, { cause: error });
    }
  }
  return decoded;
}
