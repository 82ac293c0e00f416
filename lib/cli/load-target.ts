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
 * module (a class, or a DynamicModule such as `AppModule.forRoot()`), as ESM or CommonJS;
 * anything else that is a file is run as a CGI script.
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
  const candidate = servedExport(exports);
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

/**
 * The default export, else `app`, `handler` or `AppModule`, else the first export. A CommonJS
 * module's `default` is its whole `module.exports` object: its names are looked up in it, and
 * its `exports.default` counts as the default export when it says it was compiled from ESM.
 */
function servedExport(exports: Record<string, unknown>): unknown {
  const commonJs = commonJsExports(exports);
  if (!commonJs) return exports.default ?? namedExport(exports) ?? Object.values(exports)[0];
  const compiledDefault = commonJs.__esModule === true ? commonJs.default : undefined;
  // `module.exports = { fetch }` names nothing known: the object itself is the app.
  return compiledDefault ?? namedExport(commonJs) ?? commonJs;
}

function namedExport(exports: Record<string, unknown>): unknown {
  return exports.app ?? exports.handler ?? exports.AppModule;
}

/** The `module.exports` object that `import()` of a CommonJS module gives as `default`, if it is one. */
function commonJsExports(exports: Record<string, unknown>): Record<string, unknown> | undefined {
  const value = exports.default;
  if (typeof value !== 'object' || value === null) return undefined;
  const moduleExports = value as Record<string, unknown>;
  // Node lifts the names it finds in `exports.x = ...` out of that object as named exports.
  const lifted = Object.keys(exports).some((name) => name !== 'default' && moduleExports[name] === exports[name]);
  return moduleExports.__esModule === true || lifted ? moduleExports : undefined;
}

// Keys that @Module() may set; @Module({}) sets none of them.
const MODULE_METADATA_KEYS = ['imports', 'controllers', 'providers', 'exports'];
const GLOBAL_MODULE_METADATA = '__module:global__';

function isNestModule(value: unknown): boolean {
  // A DynamicModule (`AppModule.forRoot()`) is a plain object naming its class in `module`.
  if (typeof value === 'object' && value !== null) return typeof (value as { module?: unknown }).module === 'function';
  if (typeof value !== 'function') return false;
  // A class cannot be a Node listener (calling it without `new` throws): what else it may be,
  // a module with no metadata (`@Module({})`, routes from configure()) or a controller, Nest serves.
  if (/^class[\s{]/.test(Function.prototype.toString.call(value))) return true;
  if (typeof (value.prototype as { configure?: unknown } | undefined)?.configure === 'function') return true;
  return [...MODULE_METADATA_KEYS, GLOBAL_MODULE_METADATA].some((key) => Reflect.getMetadata?.(key, value) !== undefined);
}
