import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { brokenOffReason, closedBeforeEnd, takeWholeBody } from './body-source.js';
import { type GatewayResponse, unreadHeaderPairs } from './gateway-response.js';
import { type HeaderPairs, pairsOfHeaders } from './header-pairs.js';

/**
 * Sends a GatewayResponse on a client's response as is: status, reason phrase, every header
 * (each Set-Cookie separately), and the body streamed with backpressure. Headers already set
 * on `res` (by CORS middleware or `@Header()`) stay unless the response overrides them.
 *
 * A response that goes out at once (no body, or one already whole in memory: the usual
 * captured answer) returns undefined: this runs for every returned response, and a promise
 * less is a turn less. A streamed body returns a promise of its end; if the body breaks, the
 * connection is destroyed so the client sees a broken response rather than a truncated
 * success, and the promise rejects. Throws, with nothing sent, when headers were sent already
 * or Node refuses a header.
 */
function sendOrStream(response: GatewayResponse, res: ServerResponse): Promise<void> | undefined {
  if (res.headersSent) throw new Error('Cannot send a GatewayResponse: headers were already sent');
  const declared = announcedLength(setResponseHead(response, res), res);
  const body = response.body;
  if (!body) {
    res.end();
    return undefined;
  }
  const length = declared !== null && carriesBody(res) ? declared : undefined;
  // The app's whole body is already here (a captured Express response, a CGI answer that came
  // with its head, a string set by a filter): one write, and Node adds Content-Length if the
  // app did not send one.
  const whole = length !== undefined || (declared === null && !res.hasHeader('transfer-encoding')) ? takeWholeBody(body, length) : undefined;
  if (whole) {
    res.end(whole);
    return undefined;
  }
  return pump(body, res, length).catch((error: unknown) => {
    if (!(error instanceof BodyOverflowError)) res.destroy(error as Error);
    throw error;
  });
}

/**
 * `sendOrStream` for a response nobody waits on but the client: a body that breaks later is
 * logged (a client that goes away is routine), and the promise returned, if any, never
 * rejects. A response that could not be sent at all (Node refused a header) throws, with its
 * body closed, for an error to be answered instead; one whose headers went out already is
 * only logged.
 */
export function sendAndReport(
  response: GatewayResponse,
  res: ServerResponse,
  logger: { warn(message: string): void },
): Promise<void> | undefined {
  let sending: Promise<void> | undefined;
  try {
    sending = sendOrStream(response, res);
  } catch (error) {
    if (res.headersSent) return void reportBroken(logger, res, error as NodeJS.ErrnoException);
    response.body?.destroy();
    throw error;
  }
  return sending?.catch((error: NodeJS.ErrnoException) => reportBroken(logger, res, error));
}

function reportBroken(logger: { warn(message: string): void }, res: ServerResponse, error: NodeJS.ErrnoException): void {
  if (error.code !== 'ERR_STREAM_PREMATURE_CLOSE') {
    logger.warn(`Response body for ${res.req?.url ?? 'a request'} broke off: ${error.message}`);
  }
}

/**
 * Status, reason phrase and every header, each Set-Cookie on its own, onto a response not yet
 * sent. Returns the Content-Length the headers give, or null: read in the same pass, as each
 * lookup in a `Headers` costs about as much as setting a header. Throws if Node refuses a
 * header that `Headers` took (a control character in a value): the response then keeps its
 * status and, for the names of these headers, what it had before (none, a CORS header), for
 * an error to be answered on it instead.
 */
export function setResponseHead(head: { status: number; statusText: string; headers: Headers }, res: ServerResponse): string | null {
  // A response whose headers nobody has iterated sends them as its source gave them, with
  // the caller's changes, without ever filling a Headers.
  const pairs = unreadHeaderPairs(head) ?? pairsOfHeaders(head.headers);
  // What the response had before (CORS headers, a cookie, `@Header()`): put back if Node
  // refuses a header, so that the error answered instead goes out with them.
  const before = res.getHeaders();
  let contentLength: string | null;
  try {
    contentLength = setPairs(pairs, res);
  } catch (error) {
    // removeHeader('date') would also stop Node from adding a Date of its own.
    const sendDate = res.sendDate;
    for (let i = 0; i < pairs.length; i += 2) {
      const name = pairs[i];
      const previous = before[name];
      if (previous === undefined) res.removeHeader(name);
      else res.setHeader(name, previous);
    }
    res.sendDate = sendDate;
    throw error;
  }
  res.statusCode = head.status;
  res.statusMessage = head.statusText;
  return contentLength;
}

function setPairs(pairs: HeaderPairs, res: ServerResponse): string | null {
  let cookies: string[] | undefined;
  let contentLength: string | null = null;
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i];
    if (name === 'set-cookie') (cookies ??= []).push(pairs[i + 1]);
    else {
      if (name === 'content-length') contentLength = pairs[i + 1];
      res.setHeader(name, pairs[i + 1]);
    }
  }
  if (cookies) res.setHeader('set-cookie', cookies);
  return contentLength;
}

/** The app's body was longer than its Content-Length: the client got exactly that many bytes. */
export class BodyOverflowError extends Error {
  constructor(length: number) {
    super(`Body is longer than its Content-Length ${length}; the rest was dropped`);
    this.name = 'BodyOverflowError';
  }
}

/**
 * Streams the body to the client with backpressure; resolves once the response is ended. A
 * client that goes away destroys the body (the app sees its response closed); a body that
 * breaks rejects. With a `length` (the Content-Length the headers announce) exactly that many
 * bytes are sent: the bytes of a longer body would otherwise answer the next request on a
 * keep-alive connection (bytes of the app's choosing), so they are dropped and the body
 * destroyed; a shorter body rejects, which closes the connection instead of leaving the client
 * waiting for bytes that never come. The announced last byte goes out with `end()`, in the same
 * write as the head when the whole body arrives at once.
 *
 * Written by hand rather than with `stream.pipeline`: this runs for every response, and the
 * pipeline allocates an AbortController and a DOMException each time.
 */
function pump(body: Readable, res: ServerResponse, length: number | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let sent = 0;
    let done = false;
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onBodyClose);
      res.off('drain', onDrain).off('close', onClientClose);
      if (error) reject(error);
      else resolve();
    };
    const onData = (data: Buffer | string) => {
      const chunk = typeof data === 'string' ? Buffer.from(data) : data;
      if (length === undefined) {
        if (!res.write(chunk)) body.pause();
        return;
      }
      const room = length - sent;
      if (chunk.length < room) {
        sent += chunk.length;
        if (!res.write(chunk)) body.pause();
        return;
      }
      // The announced length is reached: end now; anything after it is an overflow.
      sent = length;
      res.end(chunk.length === room ? chunk : chunk.subarray(0, room));
      if (chunk.length > room) return overflow();
      body.off('data', onData).on('data', overflow);
    };
    const overflow = () => {
      body.off('data', overflow);
      finish(new BodyOverflowError(length!));
      body.destroy(); // the app is told nobody reads it any more
    };
    const onEnd = () => {
      const brokenOff = brokenOffReason(body);
      if (brokenOff) return finish(brokenOff);
      if (length !== undefined && sent < length) {
        return finish(new Error(`Body ended after ${sent} of its ${length}-byte Content-Length`));
      }
      if (!res.writableEnded) res.end();
      finish();
    };
    const onError = (error: Error) => finish(error);
    const onBodyClose = () => {
      if (!body.readableEnded) finish(closedBeforeEnd());
    };
    const onDrain = () => body.resume();
    const onClientClose = () => {
      if (res.writableFinished) return;
      finish(Object.assign(new Error('Client went away'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
      body.destroy();
    };
    body.on('data', onData).once('end', onEnd).once('error', onError).once('close', onBodyClose);
    res.on('drain', onDrain).once('close', onClientClose);
    if (body.readableEnded) onEnd();
    // No byte is ready to go with the head: it goes now, as from an app that flushed it on
    // Node's own server (an EventSource opens on it, and the first event may be minutes away).
    else if (body.readableLength === 0) res.flushHeaders();
  });
}

/**
 * The length a Content-Length header announces, or null for none. A list of one length
 * repeated (`5, 5`, two headers folded) is that length (RFC 9110, 8.6); anything else that is
 * no length, or one beside a Transfer-Encoding, is taken off, and Node frames the body
 * instead: passed on, it would leave the client unable to tell where the body ends.
 */
function announcedLength(value: string | null, res: ServerResponse): number | null {
  if (value === null) return null;
  // Transfer-Encoding frames the body: a Content-Length beside it must not go out (RFC 9112,
  // 6.1), and clients refuse a response with both.
  if (res.hasHeader('transfer-encoding')) {
    res.removeHeader('content-length');
    return null;
  }
  const length = lengthOf(value);
  if (length !== null) return length;
  const lengths = new Set(value.split(',').map((part) => part.trim()));
  const [only] = lengths;
  const listed = lengths.size === 1 ? lengthOf(only) : null;
  if (listed !== null) res.setHeader('content-length', only);
  else res.removeHeader('content-length');
  return listed;
}

/** The number `text` writes in decimal digits alone, if it is one JavaScript holds exactly. */
function lengthOf(text: string): number | null {
  if (!/^\d+$/.test(text)) return null;
  const length = Number(text);
  return Number.isSafeInteger(length) ? length : null;
}

/** Responses to HEAD, 1xx, 204 and 304 have no body on the wire, whatever Content-Length says. */
function carriesBody(res: ServerResponse): boolean {
  const status = res.statusCode;
  return res.req?.method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}
