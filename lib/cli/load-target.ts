import { existsSync, statSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cgiApp } from '../apps/cgi-app.js';
import type { GatewayApp } from '../apps/gateway-app.js';
import { toGatewayApp, type GatewayAppLike } from '../apps/to-gateway-app.js';
import { createRequestListener } from '../embed/create-request-listener.js';

const MODULE_EXTENSIONS = new Set(['.js', '.mjs', '.cjs']);
const INTERPRETERS: Record<string, string> = { '.php': 'php-cgi' };

/** What `serve` found in its target, ready to mount. */
export interface ServeTarget {
  app: GatewayApp;
  /** `node listener`, `fetch handler`, `Nest module`, `CGI script`: said when the server starts. */
  kind: string;
  close(): Promise<void>;
}

export class TargetError extends Error {}

/**
 * Loads the target of `nest-gateway serve`: a JavaScript module exporting a Node listener,
 * a fetch handler (or an object with `.fetch`, such as a Hono app), a Koa app or a Nest
 * module (a class, or a DynamicModule such as `AppModule.forRoot()`); anything else that
 * is a file is run as a CGI script.
 */
export async function loadTarget(target: string): Promise<ServeTarget> {
  const path = resolve(target);
  if (!existsSync(path) || !statSync(path).isFile()) throw new TargetError(`${target}: no such file`);
  const extension = extname(path);
  if (extension === '.ts') throw new TargetError(`${target}: compile it to JavaScript first (Node 20 does not run TypeScript)`);
  if (!MODULE_EXTENSIONS.has(extension)) {
    const interpreter = INTERPRETERS[extension];
    return { app: cgiApp(path, interpreter ? { interpreter } : {}), kind: 'CGI script', close: async () => undefined };
  }
  const exports = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const candidate = exports.default ?? exports.app ?? exports.handler ?? exports.AppModule ?? Object.values(exports)[0];
  if (candidate === undefined) throw new TargetError(`${target}: exports nothing to serve`);
  if (isNestModule(candidate)) {
    const listener = await createRequestListener(candidate as never);
    return { app: toGatewayApp(listener), kind: 'Nest module', close: () => listener.close() };
  }
  try {
    const app = toGatewayApp(candidate as GatewayAppLike);
    return { app, kind: app.kind === 'fetch' ? 'fetch handler' : 'Node listener', close: async () => undefined };
  } catch {
    throw new TargetError(`${target}: its export is not a Node listener, fetch handler, Koa app or Nest module`);
  }
}

function isNestModule(value: unknown): boolean {
  // A DynamicModule (`AppModule.forRoot()`) is a plain object naming its class in `module`.
  if (typeof value === 'object' && value !== null) return typeof (value as { module?: unknown }).module === 'function';
  if (typeof value !== 'function') return false;
  return ['imports', 'controllers', 'providers', 'exports'].some((key) => Reflect.getMetadata?.(key, value) !== undefined);
}
