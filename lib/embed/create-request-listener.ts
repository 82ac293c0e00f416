import type { INestApplication, NestApplicationOptions } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { nestAppOf, type NestAppSource } from './nest-app-of.js';
import { trustsPeer } from '../platform/request-info.js';
import { buildsOnAppPrototypes, passesEveryRequestTo, type AppPrototypes } from '../platform/request-shape.js';
import { mountRequest } from './mounted-request.js';
import { clientOrigin, mountPrefixOf, rewriteForPrefix, validatePrefix } from './prefix-rewrite.js';

export interface EmbedOptions {
  /**
   * Options of `NestFactory.create` when a module, controller or handler is given.
   * @default { logger: ['error', 'warn'], abortOnError: false }
   */
  nestOptions?: NestApplicationOptions;
  /**
   * The prefix the app is served under, when the host server cannot tell (a fetch runtime
   * that does not strip it, Koa, Hono's `app.mount`). Requests whose path starts with it have
   * it removed, unless the host removed it already (its `req.baseUrl` is the prefix); either
   * way `req.originalUrl` is the prefix and the path below it, as under an Express mount.
   * @default the host's `req.baseUrl`, else the `X-Forwarded-Prefix` header of a proxy the
   * Nest app trusts (Express `trust proxy`, e.g. `app.set('trust proxy', 'loopback')`)
   */
  prefix?: string;
  /**
   * Make `Location` redirects and cookie paths that the Nest app sends carry the prefix.
   * @default true
   */
  rewrite?: boolean;
}

/**
 * A Node listener serving a Nest app; `close()` shuts the app down if the listener created it,
 * and from then on requests are answered 503 Service Unavailable (the app's providers are gone).
 */
export type NestRequestListener = ((req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void) & {
  readonly app: INestApplication;
  close(): Promise<void>;
};

/**
 * Serves a Nest module (or an initialised app, a controller class, a handler function)
 * inside any other server: `http.createServer(listener)`, `express().use('/nest', listener)`,
 * another Nest app's `@MountGateway`. URLs the app generates carry its mount prefix.
 */
export async function createRequestListener(source: NestAppSource, options: EmbedOptions = {}): Promise<NestRequestListener> {
  const fixedPrefix = options.prefix === undefined ? undefined : validatePrefix(options.prefix);
  const { app, owned } = await nestAppOf(source, options.nestOptions);
  const handle = app.getHttpAdapter().getInstance() as (req: IncomingMessage, res: ServerResponse) => void;
  const expressApp = handle as unknown as AppPrototypes & { get?(setting: string): unknown };
  let closed = false;
  const listener = (req: IncomingMessage & { baseUrl?: string; originalUrl?: string }, res: ServerResponse) => {
    if (closed) return serviceUnavailable(res);
    const trustsForwarding = () => trustsPeer(expressApp, req.socket?.remoteAddress);
    const prefix = mountPrefixOf(req, fixedPrefix, trustsForwarding);
    if (prefix) {
      mountRequest(req, prefix, fixedPrefix !== undefined);
      // Asked only when a redirect is sent; the forwarded host is the app's own, as Express's req.host says.
      if (options.rewrite !== false) rewriteForPrefix(res, prefix, () => clientOrigin(req, trustsForwarding));
    }
    // A host server that hands every request to this listener builds them on the app's
    // prototypes from its second request on, as Nest's own server does under GatewayModule.
    buildsOnAppPrototypes(req, expressApp);
    handle(req, res);
  };
  passesEveryRequestTo(listener, expressApp);
  return Object.assign(listener, {
    app,
    close: async () => {
      if (!owned) return;
      closed = true;
      await app.close();
    },
  }) as NestRequestListener;
}

function serviceUnavailable(res: ServerResponse): void {
  res.statusCode = 503;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end('Service Unavailable');
}
