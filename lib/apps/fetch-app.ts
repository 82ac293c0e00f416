import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { ignoreError } from '../http/body-source.js';
import { abortWatchOf } from '../http/client-exchange.js';
import { GatewayResponse } from '../http/gateway-response.js';
import { createRequest } from '../http/lazy-request.js';
import { sendAndReport, setResponseHead } from '../http/send-gateway-response.js';
import { concatChunks, readAhead, readableFrom, type BodyStart } from '../http/web-body.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';
import { brand, type GatewayApp, type GatewayExchange } from './gateway-app.js';

/** A WHATWG fetch handler: Hono's `app.fetch`, itty-router, a Cloudflare-style worker. */
export type FetchHandler = {
  handler(request: Request, env: GatewayEnv): Response | Promise<Response>;
}['handler'];

/** Wraps a fetch handler (or an object with `.fetch`, such as a Hono app) as a gateway app. */
export function fetchApp(handler: FetchHandler | { fetch: FetchHandler }): GatewayApp {
  const fetch = typeof handler === 'function' ? handler : handler.fetch.bind(handler);
  const respond = (exchange: GatewayExchange) => fetch(toRequest(exchange), envOf(exchange));
  return brand<GatewayApp>({
    kind: 'fetch',
    call: async (exchange) => toGatewayResponse(await respond(exchange), exchange),
    serve: async (exchange, res) => serveResponse(await respond(exchange), exchange, res),
  });
}

function envOf(exchange: GatewayExchange): GatewayEnv {
  return exchange.remoteUser === undefined ? exchange.env : { ...exchange.env, REMOTE_USER: exchange.remoteUser };
}

/** The Request the app would get at the root of its own server: absolute URL, streamed body. */
function toRequest(exchange: GatewayExchange): Request {
  return createRequest({
    url: `${exchange.protocol}://${exchange.host}${exchange.pathInfo || '/'}${exchange.search}`,
    method: exchange.method,
    rawHeaders: exchange.rawHeaders,
    body: exchange.method === 'GET' || exchange.method === 'HEAD' ? null : exchange.body(),
    signalSource: exchange,
  });
}

/** For callers that may change the response: headers of their own, a lazy Node body. */
async function toGatewayResponse(response: Response, exchange: GatewayExchange): Promise<GatewayResponse> {
  const body = await bodyOf(response, exchange);
  // A copy: the Response's own headers may be immutable (Response.redirect, fetch results).
  const headers = new Headers();
  for (const [name, value] of headersOf(response)) headers.append(name, value);
  const complete = body ? concatChunksIfComplete(body) : undefined;
  return new GatewayResponse({
    status: response.status,
    statusText: response.statusText,
    headers,
    body: complete ?? (body ? streamedBody(body, exchange) : null),
  });
}

/**
 * The rest of the app's body as a Node stream that breaks off when the call aborts (the
 * caller's signal, the client gone), cancelling the app's stream, as the other kinds do.
 */
function streamedBody(start: BodyStart, exchange: GatewayExchange): Readable {
  const body = readableFrom(start);
  // The break reaches a reader through its own listener; a body nobody reads (yet, or any
  // more) must not turn it into an uncaught exception.
  body.on('error', ignoreError);
  const unwatch = abortWatchOf(exchange).whenAborted(() => body.destroy(new Error(`Call of ${exchange.name} was aborted`)));
  body.once('close', unwatch);
  return body;
}

/**
 * Mounts answer on the client's response directly: no body, or a body that was complete at
 * once, goes out in a single write (Node adds the Content-Length); anything else is streamed
 * as a returned GatewayResponse would be.
 */
async function serveResponse(response: Response, exchange: GatewayExchange, res: ServerResponse): Promise<void> {
  const body = await bodyOf(response, exchange);
  const complete = body ? concatChunksIfComplete(body) : undefined;
  const headers = headersOf(response);
  if ((!body || complete) && canSendAtOnce(headers, complete, res)) {
    setResponseHead({ status: response.status, statusText: response.statusText, headers }, res);
    res.end(complete);
    return;
  }
  const gatewayResponse = new GatewayResponse({
    status: response.status,
    statusText: response.statusText,
    headers,
    body: complete ?? (body ? readableFrom(body) : null),
  });
  // As for a returned GatewayResponse; nothing sent (Node refused a header), the mount answers
  // with an error instead.
  await sendAndReport(gatewayResponse, res, exchange.logger);
}

/**
 * The headers that describe the body as it will be read. A `fetch()` result (type other than
 * 'default') has a body undici has already decoded, but keeps the upstream's Content-Encoding
 * and encoded Content-Length: passed on, they would make the client decode it again.
 */
function headersOf(response: Response): Headers {
  if (response.type === 'default' || !response.headers.has('content-encoding')) return response.headers;
  const headers = new Headers(response.headers);
  headers.delete('content-encoding');
  headers.delete('content-length');
  return headers;
}

/** The start of the body, or null for none (HEAD sends none whatever the app gave). */
async function bodyOf(response: Response, exchange: GatewayExchange): Promise<BodyStart | null> {
  if (!response.body) return null;
  if (exchange.method === 'HEAD') {
    void response.body.cancel().catch(() => undefined);
    return null;
  }
  return readAhead(response.body);
}

function concatChunksIfComplete(body: BodyStart): Buffer | undefined {
  return body.complete ? concatChunks(body.chunks) : undefined;
}

/**
 * Whether the body can go out with plain `res.end()`: what sendOrStream would do too,
 * minus the checks that only a mismatched Content-Length, or a response already started,
 * needs (those keep the general path).
 */
function canSendAtOnce(headers: Headers, body: Buffer | undefined, res: ServerResponse): boolean {
  if (res.headersSent) return false;
  const declared = headers.get('content-length');
  if (declared === null) return true;
  // A Content-Length that is no plain length (`5, 5`, on a HEAD answer say), or one beside a
  // Transfer-Encoding, is put right there.
  if (headers.has('transfer-encoding')) return false;
  return body ? declared === String(body.length) : declared === String(Number(declared));
}
