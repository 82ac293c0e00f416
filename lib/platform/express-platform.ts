import type { IncomingMessage, ServerResponse } from 'node:http';
import { hideContentType, recordBodyReads } from '../http/request-body.js';
import { compileMountPrefix, isMountPattern, mountPathOf } from './mount-matcher.js';
import { buildsOnAppPrototypes, useDictionaryMode } from './request-shape.js';

interface ExpressLayer {
  route?: { path?: unknown; _handlesMethod?(method: string): boolean };
  match?(path: string): unknown;
}
export interface ExpressApp {
  use(handler: (req: IncomingMessage, res: ServerResponse, next: () => void) => void): void;
  router?: { stack?: ExpressLayer[] };
  /** The prototypes Express gives every request and response. */
  request?: object;
  response?: object;
}

export interface RequestHookOptions {
  bodyReplayLimit: number;
}

/**
 * Runs before Nest's body parsers (it is added as soon as the adapter exists, and the
 * parsers only during `init()`). Requests for a mount get their Content-Type hidden so that
 * no parser reads the body the app will stream; other requests have their body reads
 * recorded so that `callApp` can replay them. The server is made to build its requests and
 * responses on Express's prototypes (see `buildsOnAppPrototypes`); requests it did not build that
 * way go into V8's dictionary mode where that is cheaper (see `useDictionaryMode`). Both apply to
 * every route: any route may call an app.
 */
export function installExpressRequestHooks(app: ExpressApp, options: RequestHookOptions): void {
  const isMountPath = mountPathMatcher(app);
  const isServedByMount = mountRouteMatcher(app);
  app.use(function nestGatewayRequestHooks(req, res, next) {
    if (!buildsOnAppPrototypes(req, app)) {
      useDictionaryMode(req);
      useDictionaryMode(res);
    }
    const path = (req.url ?? '/').split('?')[0];
    if (isMountPath(path) && isServedByMount(path, req.method ?? 'GET')) hideContentType(req);
    else recordBodyReads(req, options.bodyReplayLimit);
    next();
  });
}

/** Whether a raw request path falls under a mount; the routes are read once, on first use. */
export function mountPathMatcher(app: ExpressApp): (path: string) => boolean {
  const mountOf = mountOfPath(app);
  return (path) => mountOf(path) !== undefined;
}

/** The path of the mount (its route's path, without the wildcard) a raw request path falls under. */
export function mountOfPath(app: ExpressApp): (path: string) => string | undefined {
  let mounts: { prefix: RegExp; path: string }[] | undefined;
  return (path) => {
    mounts ??= (app.router?.stack ?? [])
      .map((layer) => layer.route?.path)
      .filter(isMountPattern)
      .map((pattern) => ({ prefix: compileMountPrefix(pattern), path: mountPathOf(pattern) }));
    return mounts.find((mount) => mount.prefix.test(path))?.path;
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
      const candidates = all.slice(0, lastMount + 1);
      // A mount also serves its bare path, through a route of its own without the wildcard.
      for (const layer of candidates) {
        const pattern = layer.route?.path;
        if (isMountPattern(pattern)) mountPaths.add(mountPathOf(pattern));
      }
      // Express matches every route in front of the mount for each request anyway; matching
      // them all a second time here would double that. Only routes that can match some path
      // under a mount prefix (their literal start and the prefix's agree) are kept.
      const mountStarts = [...mountPaths].map(literalStart);
      routes = candidates.filter((layer) => {
        const pattern = layer.route?.path;
        if (typeof pattern !== 'string' || isMountPattern(pattern)) return true;
        const start = literalStart(pattern);
        return mountStarts.some((mount) => start.startsWith(mount) || mount.startsWith(start));
      });
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

/** A route pattern up to its first parameter, wildcard or special character, lower-cased. */
function literalStart(pattern: string): string {
  const end = pattern.search(/[:*{}()[\]+?!\\]/);
  return (end === -1 ? pattern : pattern.slice(0, end)).toLowerCase();
}
