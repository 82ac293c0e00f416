import type { IncomingMessage } from 'node:http';
import { hideContentType, recordBodyReads } from '../http/request-body.js';
import { compileMountPrefix, isMountPattern } from './mount-matcher.js';

interface ExpressLayer {
  route?: { path?: unknown };
}
export interface ExpressApp {
  use(handler: (req: IncomingMessage, res: unknown, next: () => void) => void): void;
  router?: { stack?: ExpressLayer[] };
}

export interface RequestHookOptions {
  bodyReplayLimit: number;
}

/**
 * Runs before Nest's body parsers (it is added as soon as the adapter exists, and the
 * parsers only during `init()`). Requests for a mount get their Content-Type hidden so that
 * no parser reads the body the app will stream; other requests have their body reads
 * recorded so that `callApp` can replay them.
 */
export function installExpressRequestHooks(app: ExpressApp, options: RequestHookOptions): void {
  const isMountPath = mountPathMatcher(app);
  app.use(function nestGatewayRequestHooks(req, _res, next) {
    const path = (req.url ?? '/').split('?')[0];
    if (isMountPath(path)) hideContentType(req);
    else recordBodyReads(req, options.bodyReplayLimit);
    next();
  });
}

/** Whether a raw request path falls under a mount; the routes are read once, on first use. */
export function mountPathMatcher(app: ExpressApp): (path: string) => boolean {
  let mountPrefixes: RegExp[] | undefined;
  return (path) => {
    mountPrefixes ??= (app.router?.stack ?? [])
      .map((layer) => layer.route?.path)
      .filter(isMountPattern)
      .map(compileMountPrefix);
    return mountPrefixes.some((prefix) => prefix.test(path));
  };
}
