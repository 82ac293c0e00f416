import { BadGatewayException, BadRequestException, GatewayTimeoutException, HttpException } from '@nestjs/common';
import type { Duplex, Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { GatewayExchange } from './gateway-app.js';
import { brand, type GatewayApp } from './gateway-app.js';
import { type GatewayResponse, responseOfHead } from '../http/gateway-response.js';
import type { AbortWatch } from '../http/abort-watch.js';
import { abortWatchOf } from '../http/client-exchange.js';
import { maySendAgain } from '../http/idempotent.js';
import { UNSENDABLE_VALUE } from '../http/header-pairs.js';
import { setAppBase } from '../headers/rewrite.js';
import { clientResponsePairs, upstreamRequestHeaders } from '../proxy/proxy-headers.js';
import { ClientLeftError, proxyUpgrade } from '../proxy/proxy-upgrade.js';
import { RetryableBody } from '../proxy/retryable-body.js';
import { dispatchUpstream, type UpstreamResponse } from '../proxy/upstream-exchange.js';
import { createUpstream, UpstreamBalancer, type Upstream } from '../proxy/upstream-pool.js';
import { clientView } from '../platform/request-info.js';

/** Options of `proxyApp(url, options)`. Times are in milliseconds; 0 turns a limit off. */
export interface ProxyAppOptions {
  /**
   * Host header sent upstream: `'keep'` passes the client's on (the app builds URLs for the
   * public host), `'upstream'` sends the upstream's own, a string sends that.
   * @default 'keep'
   */
  host?: 'keep' | 'upstream' | string;
  /**
   * Send X-Forwarded-For, -Proto, -Host and -Prefix (the mount prefix, for apps behind e.g.
   * Werkzeug's ProxyFix to build their URLs).
   * @default true
   */
  xForwarded?: boolean;
  /**
   * Connections per upstream.
   * @default 64
   */
  connections?: number;
  /**
   * How long an idle upstream connection is kept for reuse.
   * @default 4000
   */
  keepAliveTimeout?: number;
  /**
   * Time to connect to an upstream (504 after it).
   * @default 10000
   */
  connectTimeout?: number;
  /**
   * Time the upstream has to send its response headers (504 after it).
   * @default 30000
   */
  headersTimeout?: number;
  /**
   * Time the upstream may go without sending body bytes; the response is cut after it.
   * @default 60000
   */
  bodyTimeout?: number;
  /**
   * Largest response head the upstream may send (502 beyond), as for CGI and FastCGI apps: an
   * app with many cookies passes Node's own 16 KiB.
   * @default 65536
   */
  maxHeaderBytes?: number;
}

const STALE = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
// `.` and `..` segments, also percent-encoded or between backslashes or encoded slashes: an
// upstream that resolves them (WHATWG URL parsers, Tomcat, Apache; nginx after decoding `%2F`)
// would serve paths outside its base path.
const DOT_SEGMENT = /(?:^|\/|\\|%5c|%2f)(?:\.|%2e){1,2}(?=\/|\\|%5c|%2f|$)/i;
/** How long an upstream's connections are used once each after one broke under a request. */
const SINGLE_USE_MS = 10 * 60_000;

/**
 * A connection broke under a request with nothing answered: the upstream may close kept-alive
 * connections without saying so, and the next POST on one would get a 502. For a while each
 * connection now serves one request.
 */
function noteSilentClose(upstream: Upstream, exchange: GatewayExchange): void {
  const now = Date.now();
  if (upstream.closesSilentlyUntil < now) {
    exchange.logger.warn(
      `${exchange.name}: a connection to ${upstream.name} closed under a request with nothing answered; ` +
        `its connections serve one request each for the next ${SINGLE_USE_MS / 60_000} minutes`,
    );
  }
  upstream.closesSilentlyUntil = now + SINGLE_USE_MS;
}

/** nginx's status for a client that left before the answer; nobody receives it. */
const CLIENT_CLOSED_REQUEST = 499;
const TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']);
// Failures where the upstream never saw the request, so another one may take it.
const NOT_REACHED = new Set(['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * An upstream HTTP server (gunicorn, uWSGI, `hg serve`, Grafana, another Node process) as a
 * gateway app, over undici connection pools. Several URLs are balanced by load.
 */
export function proxyApp(url: string | URL | Array<string | URL>, options: ProxyAppOptions = {}): GatewayApp & { close(): Promise<void> } {
  const balancer = new UpstreamBalancer(
    [url].flat().map((target) =>
      createUpstream(target, {
        connections: options.connections ?? 64,
        keepAliveTimeout: options.keepAliveTimeout ?? 4000,
        connectTimeout: options.connectTimeout ?? 10_000,
        maxHeaderSize: options.maxHeaderBytes ?? 64 * 1024,
      }),
    ),
  );
  const hostPolicy = options.host ?? 'keep';

  const pathOf = (upstream: Upstream, exchange: GatewayExchange) =>
    (upstream.basePath + (exchange.pathInfo || '/')).replace(/^(?!\/)/, '/') + exchange.search;
  const headersFor = (upstream: Upstream, exchange: GatewayExchange) =>
    upstreamRequestHeaders(exchange, {
      host: hostPolicy === 'keep' ? exchange.host : hostPolicy === 'upstream' ? upstream.host : hostPolicy,
      xForwarded: options.xForwarded ?? true,
      trustsProxy: clientView(exchange.req).trustsProxy,
    });
  const send = (upstream: Upstream, exchange: GatewayExchange, body: Readable | null, abort: AbortWatch) =>
    dispatchUpstream(
      upstream.pool,
      {
        path: pathOf(upstream, exchange),
        method: exchange.method as Dispatcher.HttpMethod,
        headers: headersFor(upstream, exchange),
        body,
        headersTimeout: options.headersTimeout ?? 30_000,
        bodyTimeout: options.bodyTimeout ?? 60_000,
        // Closed after its answer rather than kept for the next request.
        reset: upstream.closesSilentlyUntil !== 0 && upstream.closesSilentlyUntil > Date.now(),
      },
      abort,
    );

  const call = async (exchange: GatewayExchange): Promise<GatewayResponse> => {
    refuseDotSegments(exchange.pathInfo);
    const hasBody = exchange.rawHeaders.some((value, i) => i % 2 === 0 && /^(content-length|transfer-encoding)$/i.test(value));
    const source = hasBody ? exchange.body() : null;
    const body = source ? new RetryableBody(source) : null;
    const tried = new Set<Upstream>();
    const abort = abortWatchOf(exchange);
    let resent = false;
    for (;;) {
      const upstream = balancer.pick(tried)!;
      tried.add(upstream);
      try {
        const response = toGatewayResponse(await send(upstream, exchange, body?.view() ?? null, abort));
        setAppBase(response, upstream.basePath);
        return response;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? '';
        if (abort.aborted) throw error;
        // A pooled connection the upstream had already closed (uWSGI's --http-socket does so
        // without saying): an idempotent request is sent once more when the upstream sent
        // nothing back and the whole body can be sent again (bodiless, or a small one). Nothing
        // tells that close from an upstream that did the work and died before answering, so a
        // POST or PATCH is never sent twice (RFC 9110 9.2.2; nginx does the same) unless its
        // client gave it an Idempotency-Key; the upstream's connections then serve one request
        // each for a while, so that the next POST does not meet one.
        if (STALE.has(code)) {
          noteSilentClose(upstream, exchange);
          if (!resent && maySendAgain(exchange.method, exchange.rawHeaders) && (!body || body.replayable)) {
            resent = true;
            tried.delete(upstream);
            continue;
          }
        }
        if (NOT_REACHED.has(code)) upstream.downUntil = Date.now() + 5000;
        // Only a request whose body is still unread can go to another upstream.
        const retryable = NOT_REACHED.has(code) && !body?.started;
        if (retryable && tried.size < balancer.upstreams.length) continue;
        throw toHttpError(error, code, upstream, exchange);
      }
    }
  };

  const upgrade = async (exchange: GatewayExchange, socket: Duplex, head: Buffer): Promise<void> => {
    refuseDotSegments(exchange.pathInfo);
    const upstream = balancer.pick()!;
    const headers = headersFor(upstream, exchange);
    try {
      await proxyUpgrade(upstream, exchange, socket, head, headers, pathOf(upstream, exchange), options.headersTimeout ?? 30_000);
    } catch (error) {
      if (error instanceof ClientLeftError) {
        exchange.logger.debug?.(`${exchange.name}: ${error.message}`);
        throw new HttpException(error.message, CLIENT_CLOSED_REQUEST, { cause: error });
      }
      // The gateway logs a timeout (or any other HTTP error) once, as it answers with it.
      if (error instanceof HttpException) throw error;
      throw toHttpError(error, (error as NodeJS.ErrnoException).code ?? '', upstream, exchange);
    }
  };

  return Object.assign(brand<GatewayApp>({ kind: 'proxy', call, upgrade }), { close: () => balancer.close() });
}

function refuseDotSegments(pathInfo: string): void {
  if (DOT_SEGMENT.test(pathInfo)) throw new BadRequestException('Path contains a dot segment');
}

function toGatewayResponse(response: UpstreamResponse): GatewayResponse {
  const pairs = clientResponsePairs(response.rawHeaders);
  // A reason phrase is only words for people: one Node would refuse to send gets the standard one.
  const statusText = response.statusText && !UNSENDABLE_VALUE.test(response.statusText) ? response.statusText : undefined;
  return responseOfHead({ status: response.status, statusText, pairs }, response.body);
}

function toHttpError(error: unknown, code: string, upstream: Upstream, exchange: GatewayExchange): Error {
  const message = (error as Error)?.message ?? String(error);
  if (error instanceof HttpException) {
    exchange.logger.warn(`${exchange.name}: ${message}`);
    return error;
  }
  if (TIMEOUTS.has(code)) {
    exchange.logger.warn(`${exchange.name}: upstream ${upstream.name} timed out (${message})`);
    return new GatewayTimeoutException(undefined, { cause: error });
  }
  exchange.logger.error(`${exchange.name}: upstream ${upstream.name} failed: ${message}${code ? ` (${code})` : ''}`);
  return new BadGatewayException(undefined, { cause: error });
}
