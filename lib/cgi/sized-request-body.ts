import { HttpException, HttpStatus, PayloadTooLargeException } from '@nestjs/common';
import { Readable } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';
import { BodyTooLargeError, readLimited } from '../http/read-body.js';

/** A request body with the length CONTENT_LENGTH must announce. */
export interface SizedBody {
  /** Undefined when the request has no body. */
  length: number | undefined;
  stream: Readable | null;
}

/**
 * CGI needs CONTENT_LENGTH up front. A body of known length streams as it is; a chunked one is
 * buffered up to `bufferLimit` bytes to learn its length (411 when buffering is off, 413
 * beyond the limit).
 */
export async function sizedRequestBody(exchange: GatewayExchange, bufferLimit: number): Promise<SizedBody> {
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
  if (bufferLimit <= 0) {
    stream.destroy();
    throw new HttpException('A request body needs a Content-Length here', HttpStatus.LENGTH_REQUIRED);
  }
  try {
    const body = await readLimited(stream, bufferLimit);
    return { length: body.length, stream: body.length > 0 ? Readable.from([body]) : null };
  } catch (error) {
    if (error instanceof BodyTooLargeError) {
      throw new PayloadTooLargeException(`A request body without Content-Length may not exceed ${bufferLimit} bytes`);
    }
    throw error;
  }
}
