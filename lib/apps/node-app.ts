import { NotFoundException } from '@nestjs/common';
import { Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { captureResponseInto } from '../http/capture-response.js';
import { abortWatchOf } from '../http/client-exchange.js';
import { isNextFailure, lateFailure } from '../http/failures.js';
import { setHeaderLines } from '../http/header-lines.js';
import { createReleasableInnerRequest, headersFromRaw } from '../http/inner-request.js';
import type { GatewayResponse } from '../http/gateway-response.js';
import { settleOnce } from '../http/settle-once.js';
import { addsOnlyApp, handleInPlace, handlesInPlace, leaveInPlace, setOwnApp } from '../platform/express-in-place.js';
import type { AppPrototypes } from '../platform/request-shape.js';
import { brand, type GatewayApp, type GatewayExchange } from './gateway-app.js';

/**
 * A Node request listener or Connect/Express app. `next` is Express's fall-through callback.
 * Declared as a method so that listeners typed with Express's Request/Response are accepted.
 */
export type NodeListener = {
  listener(req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): unknown;
}['listener'];

/** The request properties that Express mount semantics change, and that are put back after. */
const MOUNT_PROPERTIES = ['url', 'baseUrl', 'originalUrl', 'params', 'route', 'next', 'gatewayEnv'] as const;

/** Handles an upgrade request (WebSocket) the way an `http.Server` 'upgrade' listener does. */
export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface NodeAppOptions {
  /**
   * Takes WebSocket (upgrade) requests that Nest let through, e.g.
   * `(req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))`.
   * `req.url` is the path under the mount, `req.baseUrl` the mount prefix.
   * @default undefined (upgrade requests are served as plain requests), or the server's own
   * 'upgrade' listeners when an `http.Server` is mounted
   */
  upgrade?: UpgradeListener;
}

/**
 * Wraps a Node listener (Express, Connect, Koa's `callback()`, plain `(req, res)`) as a
 * gateway app. An `http.Server` (not listening) is accepted too: its 'request' and 'upgrade'
 * listeners serve the mount, so an app with a `ws` server attached keeps its WebSockets.
 */
export function nodeApp(listener: NodeListener | Server, options: NodeAppOptions = {}): GatewayApp {
  let upgradeNow = (): UpgradeListener | undefined => options.upgrade;
  if (listener instanceof Server) {
    const server = listener;
    listener = (req, res) => void server.emit('request', req, res);
    const serverUpgrade: UpgradeListener = (req, socket, head) => void server.emit('upgrade', req, socket, head);
    // Asked per request: listeners may be added after mounting, and a server without any
    // serves an upgrade request as a plain one.
    upgradeNow = () => options.upgrade ?? (server.listenerCount('upgrade') > 0 ? serverUpgrade : undefined);
  }
  const handler = listener;
  const upgrade = async (exchange: GatewayExchange, socket: Duplex, head: Buffer) => {
    const listenerNow = upgradeNow();
    if (!listenerNow) throw new Error('The mounted server stopped listening for upgrades');
    upgradeListener(listenerNow, exchange, socket, head);
  };
  return brand<GatewayApp>({
    kind: 'node',
    call: (exchange) => callListener(handler, exchange),
    serve: (exchange, res) => serveListener(handler, exchange, res),
    get upgrade() {
      return upgradeNow() && upgrade;
    },
  });
}

/** Hands the client's upgrade request to the app as its own: prefix stripped, gateway headers. */
function upgradeListener(upgrade: UpgradeListener, exchange: GatewayExchange, socket: Duplex, head: Buffer): void {
  const req = exchange.req as IncomingMessage & Record<string, unknown>;
  showAppView(req, exchange);
  upgrade(req, socket, head);
}

/**
 * Express mount semantics on the client's request: the gateway's headers, the path under the
 * mount. True when the headers were replaced.
 */
function showAppView(req: IncomingMessage & Record<string, unknown>, exchange: GatewayExchange): boolean {
  const replaceHeaders = exchange.rawHeaders !== req.rawHeaders;
  if (replaceHeaders) {
    // The app sees the gateway's headers (forged identity removed, principal added).
    setHeaderLines(req, [...exchange.rawHeaders], headersFromRaw(exchange.rawHeaders));
  }
  req.originalUrl = exchange.originalUrl;
  req.baseUrl = exchange.prefix;
  req.url = appUrl(exchange);
  // Hidden when the request had none, as it stays behind (`undefined`) after the mount.
  if (Object.hasOwn(req, 'gatewayEnv')) req.gatewayEnv = exchange.env;
  else Object.defineProperty(req, 'gatewayEnv', { ...HIDDEN_UNDEFINED, value: exchange.env });
  return replaceHeaders;
}

function appUrl(exchange: GatewayExchange): string {
  return (exchange.pathInfo || '/') + exchange.search;
}

/**
 * Runs the listener on a request of its own and a captured response, built from the start on
 * the prototypes an Express app gives its requests and responses, which keeps V8's hidden
 * classes shared between requests.
 */
function callListener(listener: NodeListener, exchange: GatewayExchange): Promise<GatewayResponse> {
  const { request, response } = listener as AppPrototypes;
  const { request: inner, releaseBody } = createReleasableInnerRequest({
    outer: exchange.req,
    method: exchange.method,
    url: appUrl(exchange),
    rawHeaders: exchange.rawHeaders,
    body: exchange.body(),
    extras: { baseUrl: exchange.prefix, originalUrl: exchange.originalUrl, gatewayEnv: exchange.env },
    prototype: request,
  });
  return new Promise<GatewayResponse>((resolve, reject) => {
    // Let go of once settled: the app keeps its `next`, which reaches them.
    const settled = settleOnce(resolve, reject);
    const capture = captureResponseInto(
      inner,
      (answer) => settled()?.resolve(answer),
      (error) => settled()?.reject(error),
      response,
    );
    const abort = () => {
      inner.destroy();
      capture.destroy(new Error(`Call of ${exchange.name} was aborted`));
    };
    const stopWatching = abortWatchOf(exchange).whenAborted(abort);
    const fail = (error: unknown) => {
      if (capture.res.headersSent) capture.destroy(lateFailure(exchange.logger, `App ${exchange.name}`, error));
      else settled()?.reject(error);
    };
    const end = finalCallback(exchange, capture.res, (error?: unknown) => {
      if (isNextFailure(error)) fail(error);
      else if (!capture.res.headersSent) settled()?.reject(notFound(exchange));
    });
    capture.res.on(
      'close',
      onceThenNothing(() => {
        stopWatching();
        end.release();
        // Answered: as under Node's server, the app reads no more of the body, and the next
        // call on this request (or Node's server) gets what it left.
        releaseBody();
      }),
    );
    invoke(listener, inner, capture.res, end.next, fail);
  });
}

/** Express mount semantics on the client's own request and response, restored afterwards. */
function serveListener(listener: NodeListener, exchange: GatewayExchange, res: ServerResponse): Promise<void> {
  const req = exchange.req as IncomingMessage & Record<string, unknown>;
  exchange.body();
  const saved = MOUNT_PROPERTIES.map((key) => [key, Object.getOwnPropertyDescriptor(req, key)] as const);
  const { headers, rawHeaders } = req;
  const reqPrototype = Object.getPrototypeOf(req);
  const resPrototype = Object.getPrototypeOf(res);
  const inPlace = handlesInPlace(listener, req, res);
  const apps = inPlace ? ([req.app, (res as ServerResponse & { app?: unknown }).app] as const) : undefined;
  const headersReplaced = showAppView(req, exchange);

  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      res.off('finish', onDone);
      res.off('close', onDone);
      for (const [key, descriptor] of saved) restoreProperty(req, key, descriptor);
      if (headersReplaced) setHeaderLines(req, rawHeaders, headers);
      else {
        req.headers = headers;
        req.rawHeaders = rawHeaders;
      }
      if (apps) {
        leaveInPlace(req, apps[0], reqPrototype);
        leaveInPlace(res, apps[1], resPrototype);
      } else {
        restorePrototype(req, reqPrototype);
        restorePrototype(res, resPrototype);
      }
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDone = () => settle();
    const fail = (error: unknown) => {
      if (res.headersSent) {
        res.destroy(lateFailure(exchange.logger, `App mounted at ${exchange.name}`, error));
        settle();
      } else settle(error);
    };
    const next = (error?: unknown) => {
      if (isNextFailure(error)) fail(error);
      else if (!res.headersSent) settle(notFound(exchange));
    };
    // Prepended, so that the caller's own finish listeners already see its request restored.
    res.prependOnceListener('finish', onDone);
    res.prependOnceListener('close', onDone);
    if (!inPlace) invoke(listener, req, res, next, fail);
    else {
      try {
        handleInPlace(listener, req, res, next);
      } catch (error) {
        fail(error);
      }
    }
  });
}

/**
 * Puts back a property of the client's request as `before` (its descriptor before the app)
 * describes it. One the request did not have is left as a hidden `undefined` rather than
 * deleted: deleting any but the last property added turns the object into a dictionary in V8,
 * which cost every mounted request about 17 k instructions (4%). Properties that still have
 * the attributes they need are assigned: changing attributes, or `defineProperty` at all,
 * costs more (bench/findings.md, thirteenth round).
 */
function restoreProperty(object: Record<string, unknown>, key: string, before: PropertyDescriptor | undefined): void {
  const now = Object.getOwnPropertyDescriptor(object, key);
  if (now === undefined && before === undefined) return;
  const wanted = before ?? HIDDEN_UNDEFINED;
  if (now !== undefined && isPlainData(now) && isPlainData(wanted) && now.enumerable === wanted.enumerable) object[key] = wanted.value;
  else Object.defineProperty(object, key, wanted);
}

/** The property `gatewayEnv` becomes when the request had none. */
const HIDDEN_UNDEFINED: PropertyDescriptor = { value: undefined, writable: true, enumerable: false, configurable: true };

function isPlainData(descriptor: PropertyDescriptor): boolean {
  return descriptor.writable === true && descriptor.configurable === true;
}

/**
 * Gives `object` back what its prototype gave it before the app: Express re-prototypes every
 * request and response it handles. When the app's prototype differs from the original in
 * nothing but `app` (two Express apps on one Express), an own `app` has the same effect for
 * much less: changing the prototype back cost about 90 k instructions per request, the most
 * of any step of a mount (V8 gives the object a new hidden class that nothing has seen yet).
 */
function restorePrototype(object: object, original: object): void {
  const current = Object.getPrototypeOf(object) as object;
  if (current === original) return;
  const parent = appOnlyParent(current);
  if (parent !== null && parent === appOnlyParent(original) && !Object.hasOwn(object, 'app')) {
    setOwnApp(object, (original as { app?: unknown }).app);
  } else {
    Object.setPrototypeOf(object, original);
  }
}

/** Per prototype: its own parent when `app`, writable, is all it adds (Express's `app.request`), else null. */
const appOnlyParents = new WeakMap<object, object | null>();

function appOnlyParent(prototype: object): object | null {
  let parent = appOnlyParents.get(prototype);
  if (parent === undefined) {
    const writable = addsOnlyApp(prototype) && Object.getOwnPropertyDescriptor(prototype, 'app')?.writable === true;
    parent = writable ? (Object.getPrototypeOf(prototype) as object | null) : null;
    appOnlyParents.set(prototype, parent);
  }
  return parent;
}

function invoke(
  listener: NodeListener,
  req: IncomingMessage,
  res: ServerResponse,
  next: (error?: unknown) => void,
  fail: (error: unknown) => void,
): void {
  try {
    const result = listener(req, res, next);
    if (result && typeof (result as PromiseLike<unknown>).then === 'function') {
      (result as PromiseLike<unknown>).then(undefined, fail);
    }
  } catch (error) {
    fail(error);
  }
}

/**
 * `fn` for one call; after it the returned function holds nothing. A listener left on a
 * captured response must not keep the exchange alive: an app may keep its response (Express's
 * `req.res`) long after the call (bench/findings.md, seventh round).
 */
function onceThenNothing(fn: () => void): () => void {
  let held: (() => void) | undefined = fn;
  return () => {
    const call = held;
    held = undefined;
    call?.();
  };
}

/**
 * The final callback given to the app (Express's `next` once its router has nothing more). The
 * app's router keeps it for as long as the app keeps its request (`req.next` resumes the
 * routing, and a late error passed to it still reaches the app's own error handlers, as in
 * Express). So once the captured response is closed it holds nothing of the call: an error
 * that comes through it then is logged, as the call would have done after sending headers.
 * Built outside the call's closure scope, which it would otherwise keep whole.
 */
function finalCallback(
  exchange: GatewayExchange,
  res: ServerResponse,
  onEnd: (error?: unknown) => void,
): { next: (error?: unknown) => void; release(): void } {
  const { logger, name } = exchange;
  let held: ((error?: unknown) => void) | undefined = onEnd;
  return {
    next: (error) => {
      if (held) held(error);
      else if (isNextFailure(error) && res.headersSent) lateFailure(logger, `App ${name}`, error);
    },
    release: () => {
      held = undefined;
    },
  };
}

function notFound(exchange: GatewayExchange): NotFoundException {
  return new NotFoundException(`Cannot ${exchange.method} ${exchange.originalUrl.split('?')[0]}`);
}
