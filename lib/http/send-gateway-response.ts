import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { GatewayResponse } from './gateway-response.js';

/**
 * Sends a GatewayResponse on a client's response as is: status, reason phrase, every header
 * (each Set-Cookie separately), and the body streamed with backpressure. Headers already set
 * on `res` (by CORS middleware or `@Header()`) stay unless the response overrides them.
 * Resolves when the body is sent; if the body breaks, the connection is destroyed so the
 * client sees a broken response rather than a truncated success.
 */
export async function sendGatewayResponse(response: GatewayResponse, res: ServerResponse): Promise<void> {
  if (res.headersSent) throw new Error('Cannot send a GatewayResponse: headers were already sent');
  res.statusCode = response.status;
  res.statusMessage = response.statusText;
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  const body = response.body;
  if (!body) {
    res.end();
    return;
  }
  const declared = response.headers.get('content-length');
  try {
    if (declared !== null && /^\d+$/.test(declared) && carriesBody(res)) await sendExactly(body, res, Number(declared));
    else await pipeline(body, res);
  } catch (error) {
    if (!(error instanceof BodyOverflowError)) res.destroy(error as Error);
    throw error;
  }
}

/** The app's body was longer than its Content-Length: the client got exactly that many bytes. */
export class BodyOverflowError extends Error {
  constructor(length: number) {
    super(`Body is longer than its Content-Length ${length}; the rest was dropped`);
    this.name = 'BodyOverflowError';
  }
}

/**
 * Sends exactly the Content-Length that the headers announce. The bytes of a longer body
 * would otherwise answer the next request on a keep-alive connection (bytes of the app's
 * choosing), so they are dropped and the body destroyed, after the announced bytes are
 * sent. A shorter body fails the send, which closes the connection instead of leaving the
 * client waiting for bytes that never come.
 */
async function sendExactly(body: Readable, res: ServerResponse, length: number): Promise<void> {
  let sent = 0;
  let overflow = false;
  for await (const data of body) {
    const chunk = typeof data === 'string' ? Buffer.from(data) : (data as Buffer);
    const part = chunk.length > length - sent ? chunk.subarray(0, length - sent) : chunk;
    sent += part.length;
    if (part.length > 0 && !res.write(part)) await drained(res);
    if (res.destroyed) throw Object.assign(new Error('Client went away'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    if (part !== chunk) {
      overflow = true;
      break; // destroys the body: the app is told nobody reads it any more
    }
  }
  if (sent < length) throw new Error(`Body ended after ${sent} of its ${length}-byte Content-Length`);
  res.end();
  if (overflow) throw new BodyOverflowError(length);
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done).off('close', done);
      resolve();
    };
    res.on('drain', done).on('close', done);
  });
}

/** Responses to HEAD, 1xx, 204 and 304 have no body on the wire, whatever Content-Length says. */
function carriesBody(res: ServerResponse): boolean {
  const status = res.statusCode;
  return res.req?.method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}
