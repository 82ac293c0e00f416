import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayExchange } from '../apps/gateway-app.js';
import { isNextFailure, lateFailure } from '../http/failures.js';
import { setHeaderLines } from '../http/header-lines.js';
import { headersFromRaw } from '../http/inner-request.js';
import { forgetUnreadBody, hasBody, isBodyUntouched, recordBodyReads, restoreContentType } from '../http/request-body.js';

/** Connect/Express middleware: `(req, res, next) => void`. */
export type NodeMiddleware = {
  middleware(req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): unknown;
}['middleware'];

/**
 * Runs a mount's middleware in order on the client's request and response, with mount
 * semantics (`req.url` under the mount, `req.baseUrl` the prefix, restored afterwards).
 * Resolves with the exchange the app gets when the last one passes the request on (with the
 * path and query a middleware rewrote `req.url` to, as Express would), false when one answered it.
 * A middleware may read the body (`express.json()`): what it reads, up to `bodyReplayLimit`
 * bytes, is replayed to the app.
 */
export function runMiddleware(
  middleware: readonly NodeMiddleware[],
  exchange: GatewayExchange,
  res: ServerResponse,
  bodyReplayLimit: number,
): Promise<GatewayExchange | false> {
  const req = exchange.req as IncomingMessage & { baseUrl?: string };
  // The body parsers were kept off this request; its middleware sees it as Express would.
  restoreContentType(req);
  recordBodyReads(req, bodyReplayLimit);
  const saved = { url: req.url, baseUrl: req.baseUrl, headers: req.headers, rawHeaders: req.rawHeaders };
  const url = (exchange.pathInfo || '/') + exchange.search;
  req.url = url;
  req.baseUrl = exchange.prefix;
  // It wraps the app, and sees the headers the app gets: a client's forged identity removed, the
  // principal added. A middleware that proxies the request on would otherwise pass them on.
  const headersReplaced = exchange.rawHeaders !== req.rawHeaders;
  if (headersReplaced) setHeaderLines(req, [...exchange.rawHeaders], headersFromRaw(exchange.rawHeaders));
  const restore = () => {
    req.url = saved.url;
    req.baseUrl = saved.baseUrl;
    if (headersReplaced) setHeaderLines(req, saved.rawHeaders, saved.headers);
  };
  return new Promise<GatewayExchange | false>((resolve, reject) => {
    let index = 0;
    let settled = false;
    const settle = (passed: boolean, error?: unknown) => {
      if (settled) return;
      settled = true;
      res.off('finish', answered).off('close', answered);
      const passedUrl = req.url ?? url;
      restore();
      forgetUnreadBody(req);
      if (error !== undefined) return reject(error);
      if (!passed) return resolve(false);
      const next = passedUrl === url ? exchange : withUrl(exchange, passedUrl);
      // A body a middleware read is no longer the client's live stream: the app gets the replay.
      const bodyIsLive = !hasBody(req) || isBodyUntouched(req);
      resolve(bodyIsLive === next.bodyIsLive ? next : { ...next, bodyIsLive });
    };
    const answered = () => settle(false);
    const fail = (error: unknown) => {
      if (!res.headersSent) return settle(false, error);
      const err = lateFailure(exchange.logger, `Middleware of ${exchange.name}`, error);
      settle(false);
      res.destroy(err);
    };
    res.once('finish', answered).once('close', answered);
    const next = (error?: unknown) => {
      if (isNextFailure(error)) return fail(error);
      const current = middleware[index++];
      if (!current) return settle(true);
      try {
        const result = current(req, res, next);
        if (result && typeof (result as PromiseLike<unknown>).then === 'function') {
          (result as PromiseLike<unknown>).then(undefined, (failure) => fail(failure ?? new Error('middleware failed')));
        }
      } catch (failure) {
        fail(failure);
      }
    };
    next();
  });
}

/** The exchange with the path and query of `url`; the apps check the new path as any other. */
function withUrl(exchange: GatewayExchange, url: string): GatewayExchange {
  const query = url.indexOf('?');
  const pathInfo = query === -1 ? url : url.slice(0, query);
  return { ...exchange, pathInfo, search: query === -1 ? '' : url.slice(query) };
}
