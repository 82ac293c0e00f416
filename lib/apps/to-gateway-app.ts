import { Server } from 'node:http';
import { fetchApp, type FetchHandler } from './fetch-app.js';
import { isGatewayApp, type GatewayApp } from './gateway-app.js';
import { nodeApp, type NodeListener } from './node-app.js';

/** Everything `toGatewayApp()` accepts. */
export type GatewayAppLike =
  | GatewayApp
  | NodeListener
  | FetchHandler
  | { callback(): NodeListener }
  | { fetch: FetchHandler }
  | Server;

/** What each app object was normalised to: `callApp(app, …)` runs per request. */
const normalised = new WeakMap<object, GatewayApp>();

/**
 * Normalises any supported app to a GatewayApp. Functions are Node listeners unless they take
 * exactly one parameter (a fetch handler); use `nodeApp()` or `fetchApp()` to be explicit.
 * The result is remembered per app object, so a Koa app's `callback()` is taken once, on the
 * first call, as a mount takes it once at declaration.
 */
export function toGatewayApp(app: GatewayAppLike): GatewayApp {
  if (isGatewayApp(app)) return app;
  let gatewayApp = normalised.get(app);
  if (!gatewayApp) {
    gatewayApp = normalise(app);
    normalised.set(app, gatewayApp);
  }
  return gatewayApp;
}

function normalise(app: Exclude<GatewayAppLike, GatewayApp>): GatewayApp {
  if (app instanceof Server) return nodeApp(app);
  if (typeof app === 'function') {
    const looksLikeExpress = 'handle' in app || 'use' in app;
    return !looksLikeExpress && app.length === 1 ? fetchApp(app as FetchHandler) : nodeApp(app as NodeListener);
  }
  if (app && typeof (app as { callback?: unknown }).callback === 'function') {
    return nodeApp((app as { callback(): NodeListener }).callback());
  }
  if (app && typeof (app as { fetch?: unknown }).fetch === 'function') {
    return fetchApp(app as { fetch: FetchHandler });
  }
  throw new TypeError(
    'Not a gateway app: expected a Node listener, an Express/Koa app, a fetch handler or an object with .fetch',
  );
}
