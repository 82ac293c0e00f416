import type { INestApplication } from '@nestjs/common';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { captureResponse, type CapturedResponse } from '../http/capture-response.js';
import { createInnerRequest } from '../http/inner-request.js';
import { webStreamOf } from '../http/web-body.js';
import { createRequestListener, type EmbedOptions } from './create-request-listener.js';
import type { NestAppSource } from './nest-app-of.js';

/**
 * A fetch handler serving a Nest app; `close()` shuts the app down if the handler created it,
 * and from then on requests are answered 503 Service Unavailable.
 */
export type NestFetchHandler = ((request: Request) => Promise<Response>) & {
  readonly app: INestApplication;
  close(): Promise<void>;
};

/**
 * Serves a Nest module (or app, controller, handler function) as a WHATWG fetch handler:
 * Hono's `app.mount('/nest', handler)`, Bun/Deno-style servers, a Cloudflare-like worker
 * runtime on Node. The request body streams in, the response body streams out. A
 * `request.signal` that aborts rejects the call and closes the Nest response; one aborted
 * already rejects with its reason before the app sees the request. The signal aborting, or
 * the response body cancelled before its end, is the client leaving: the Nest app hears it
 * as on node:http (its request aborted and closed, its socket closed, an `@Sse()` stream
 * unsubscribed).
 */
export async function createFetchHandler(source: NestAppSource, options: EmbedOptions = {}): Promise<NestFetchHandler> {
  const listener = await createRequestListener(source, options);
  const handler = async (request: Request): Promise<Response> => {
    // Its 'abort' event has fired already and will not again: as fetch() does, reject at once.
    request.signal?.throwIfAborted();
    const url = new URL(request.url);
    const rawHeaders: string[] = [];
    for (const [name, value] of request.headers) rawHeaders.push(name, value);
    if (!request.headers.has('host')) rawHeaders.push('host', url.host);
    // A Request built in code carries no framing headers; Node apps (body parsers) see a body by them.
    if (request.body && !request.headers.has('content-length') && !request.headers.has('transfer-encoding')) {
      rawHeaders.push('transfer-encoding', 'chunked');
    }
    const socket = new Socket();
    // Express takes req.protocol, req.secure (and the prefix rewrite its scheme) from the socket.
    if (url.protocol === 'https:') Object.assign(socket, { encrypted: true });
    const outer = new IncomingMessage(socket);
    outer.httpVersion = '1.1';
    outer.httpVersionMajor = 1;
    outer.httpVersionMinor = 1;
    const req = createInnerRequest({
      outer,
      method: request.method,
      url: url.pathname + url.search,
      rawHeaders,
      body: request.body ? Readable.fromWeb(request.body as import('node:stream/web').ReadableStream<Uint8Array>) : null,
      extras: {},
    });
    const capture = captureResponse(req);
    const leave = () => clientLeft(req, socket, capture);
    request.signal?.addEventListener('abort', leave, { once: true });
    capture.res.once('close', () => {
      request.signal?.removeEventListener('abort', leave);
      // A body cancelled (or dropped) before its end is the client leaving too.
      if (!capture.res.writableFinished) leave();
    });
    listener(req, capture.res);
    const response = await capture.response;
    const headers = new Headers();
    for (const [name, value] of response.headers) if (name !== 'set-cookie') headers.append(name, value);
    for (const cookie of response.headers.getSetCookie()) headers.append('set-cookie', cookie);
    const bodyless = request.method === 'HEAD' || [101, 204, 205, 304].includes(response.status);
    const body = response.body && !bodyless ? webStreamOf(response.body) : null;
    if (bodyless) response.body?.resume();
    return new Response(body, { status: response.status, statusText: response.statusText, headers });
  };
  return Object.assign(handler, { app: listener.app, close: listener.close }) as NestFetchHandler;
}

/**
 * What node:http does when a client's connection drops: Nest watches `req.socket` for it
 * (an `@Sse()` stream, a handler still working), a handler reading the upload hears
 * 'aborted', 'error' (ECONNRESET) and 'close'.
 */
function clientLeft(req: IncomingMessage, socket: Socket, capture: CapturedResponse): void {
  capture.destroy(new Error('Request aborted'));
  req.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
  socket.destroy();
}
