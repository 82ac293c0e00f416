import type { IncomingMessage } from 'node:http';
import { hideContentType, recordBodyReads } from '../http/request-body.js';
import { compileMountPrefix, isMountPattern, MOUNT_WILDCARD } from './mount-matcher.js';

interface ExpressLayer {
  route?: { path?: unknown; _handlesMethod?(method: string): boolean };
  match?(path: string): unknown;
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
  const isServedByMount = mountRouteMatcher(app);
  app.use(function nestGatewayRequestHooks(req, _res, next) {
    const path = (req.url ?? '/').split('?')[0];
    if (isMountPath(path) && isServedByMount(path, req.method ?? 'GET')) hideContentType(req);
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

/**
 * Whether the route that will serve a request under a mount prefix is the mount's: a Nest
 * route registered before it (one path of the app taken over by a controller) wins, and
 * needs its body parsed. Only the routes before the last mount route are looked at.
 */
function mountRouteMatcher(app: ExpressApp): (path: string, method: string) => boolean {
  let routes: ExpressLayer[] | undefined;
  const mountPaths = new Set<string>();
  return (path, method) => {
    if (!routes) {
      const all = (app.router?.stack ?? []).filter((layer) => layer.route);
      const lastMount = all.findLastIndex((layer) => isMountPattern(layer.route?.path));
      routes = all.slice(0, lastMount + 1);
      // A mount also serves its bare path, through a route of its own without the wildcard.
      for (const layer of routes) {
        const pattern = layer.route?.path;
        if (isMountPattern(pattern)) mountPaths.add(pattern.slice(0, pattern.indexOf(`*${MOUNT_WILDCARD}`)).replace(/\{?\/$/, ''));
      }
    }
    for (const layer of routes) {
      if (!layer.match || !layer.route?._handlesMethod) return true;
      const pattern = layer.route.path;
      if (layer.match(path) && layer.route._handlesMethod(method)) {
        return isMountPattern(pattern) || (typeof pattern === 'string' && mountPaths.has(pattern.replace(/\/$/, '')));
      }
    }
    return true;
  };
}
