import { HttpException, HttpStatus, PayloadTooLargeException } from '@nestjs/common';
import { Readable } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';

/** A request body with the length CONTENT_LENGTH must announce. */
export interface SizedBody {
  /** Undefined when the request has no body; `'unknown'` for one streamed as it comes. */
  length: number | 'unknown' | undefined;
  stream: Readable | null;
}

/**
 * CGI needs CONTENT_LENGTH up front. A body of known length streams as it is; a chunked one is
 * buffered up to `bufferLimit` bytes to learn its length (411 when buffering is off, 413
 * beyond the limit), or with `streamUnsized` streamed with no length, as Apache's mod_cgi does.
 */
export async function sizedRequestBody(exchange: GatewayExchange, bufferLimit: number, streamUnsized = false): Promise<SizedBody> {
  const raw = exchange.rawHeaders;
  let declared: string | undefined;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name === 'content-length') declared = raw[i + 1];
    else if (name === 'transfer-encoding') chunked = true;
  }
  if (!chunked) {
    const length = declared === undefined ? 0 : Number(declared);
    if (length === 0) return { length: declared === undefined ? undefined : 0, stream: null };
    return { length, stream: exchange.body() };
  }
  const stream = exchange.body();
  if (!stream) return { length: undefined, stream: null };
  if (streamUnsized) return { length: 'unknown', stream };
  if (bufferLimit <= 0) {
    discard(stream);
    throw new HttpException('A request body needs a Content-Length here', HttpStatus.LENGTH_REQUIRED);
  }
  const body = await readUpTo(stream, bufferLimit);
  if (!body) {
    throw new PayloadTooLargeException(`A request body without Content-Length may not exceed ${bufferLimit} bytes`);
  }
  return { length: body.length, stream: body.length > 0 ? Readable.from([body]) : null };
}

/** The whole body, or undefined (the rest discarded) once it grows past `limit`. */
function readUpTo(stream: Readable, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      stream.off('data', onData).off('end', onEnd).off('error', reject);
      discard(stream);
      resolve(undefined);
    };
    const onEnd = () => resolve(Buffer.concat(chunks, size));
    stream.on('data', onData).once('end', onEnd).once('error', reject);
  });
}

/**
 * Drops the rest of a body without destroying it: on a mounted route it is the client's own
 * request, and destroying it would close the connection before the 411/413 is sent.
 */
function discard(stream: Readable): void {
  stream.on('error', () => undefined);
  stream.resume();
}
