import type { BodyInit } from '../http/body-source.js';
import type { RemoteUserResolver } from '../identity/remote-user.js';
import type { RewriteOptions } from '../headers/rewrite.js';
import type { NodeMiddleware } from '../middleware/run-middleware.js';
import type { MountDeclaration } from '../config/mount-declaration.js';

/** Per-request environ extras: WSGI's environ keys, CGI variables, `req.gatewayEnv`, Hono's `c.env`. */
export type GatewayEnv = Record<string, string | number | boolean | undefined>;

/** Options of `GatewayModule.forRoot()` / `forRootAsync()`. */
export interface GatewayModuleOptions {
  /**
   * Largest request body, in bytes, that the gateway remembers as it is read (by a body
   * parser or by a first app) so that a later `callApp` on the same request can replay it.
   * 0 turns replay off. Bodies of mounted routes are streamed and never remembered.
   * @default 1048576 (1 MiB)
   */
  bodyReplayLimit?: number;
  /**
   * Default time, in milliseconds, that an app has to send its headers before the client gets
   * a 504. 0 means no limit.
   * @default 0
   */
  timeout?: number;
  /**
   * The principal passed on to apps (REMOTE_USER). Anonymous when it returns undefined, null
   * or ''.
   * @default `req.user.username ?? req.user.id` when `req.user` is an object, `req.user` when a string
   */
  remoteUser?: RemoteUserResolver;
  /**
   * The header that carries the principal to Node, fetch and upstream apps. Client-sent
   * copies are always removed first, in any letter case.
   * @default 'remote-user'
   */
  identityHeader?: string;
  /**
   * More header names that apps might trust as a user name; client-sent copies are removed
   * (never set by the gateway).
   * @default ['x-remote-user', 'x-forwarded-user', 'x-webauth-user']
   */
  identityAliases?: string[];
  /**
   * What `RemoteUserGuard` answers an anonymous request with: the `WWW-Authenticate`
   * challenge of its 401 (git and hg clients only send credentials after a Basic challenge).
   * `false` sends no challenge.
   * @default 'Basic realm="nest-gateway", charset="UTF-8"'
   */
  challenge?: string | false;
  /**
   * Mounts declared as data, each behaving exactly like a `@MountGateway` class: path, app
   * (or `{ kind: 'cgi' | 'fastcgi' | 'proxy', … }`), guards, header changes, mount options.
   * With `forRootAsync`, routes must be known before the factory runs: declare the paths in
   * the async options' `mounts`; the factory's `mounts` may then supply their apps.
   * @default []
   */
  mounts?: MountDeclaration[];
  /**
   * When set, `RemoteUserGuard` redirects anonymous clients that accept HTML (by name, with a
   * q above 0) here instead of answering 401, with the request's local path and query as the
   * `next` query parameter (added before any `#fragment`).
   * @default undefined
   */
  loginUrl?: string;
}

/** Options shared by `@MountGateway` and `callApp`. */
export interface GatewayCallSettings {
  /**
   * Environ extras handed to the app (see `GatewayEnv`).
   * @default {}
   */
  env?: GatewayEnv;
  /**
   * Milliseconds the app has to send its headers before the client gets a 504; 0 means none.
   * @default the module's `timeout`
   */
  timeout?: number;
  /**
   * The principal for this mount or call: a name, `null` for anonymous, or a resolver.
   * @default the module's `remoteUser`
   */
  remoteUser?: string | null | RemoteUserResolver;
  /**
   * Fix-ups for apps that ignore their mount point: `Location` and `Set-Cookie` paths.
   * @default undefined (nothing rewritten)
   */
  rewrite?: RewriteOptions;
}

/** Options of `@MountGateway(path, app, options)`. */
export interface MountOptions extends GatewayCallSettings {
  /**
   * Controller version(s), as in `@Controller({ version })`, for URI/header versioning.
   * @default undefined (unversioned)
   */
  version?: string | string[];
  /**
   * Name used in logs and errors.
   * @default the mount path
   */
  name?: string;
  /**
   * Connect/Express middleware for this mount only, run in order before the app (after the
   * class's guards and interceptors), with `req.url` under the mount and `req.baseUrl` the
   * prefix. One that answers the request ends it there; `next(error)` becomes a 500, or the
   * error's own status when it has one (`status`/`statusCode` 400–599, as body-parser's 413).
   * @default []
   */
  middleware?: NodeMiddleware[];
}

/** Options of `GatewayService.callApp(app, req, pathInfo, options)`. */
export interface CallOptions extends GatewayCallSettings {
  /**
   * Method the app sees.
   * @default the client's method
   */
  method?: string;
  /**
   * Request header changes: a value sets the header, `null` removes it. The identity header
   * and its aliases are not taken from here (they are dropped): the principal comes from
   * `remoteUser`.
   * @default {}
   */
  headers?: Record<string, string | string[] | null>;
  /**
   * Replacement request body. `undefined` passes the client's body on.
   * @default undefined
   */
  body?: BodyInit;
  /**
   * Aborts the call (the app sees the request aborted, the response body errors).
   * @default undefined
   */
  signal?: AbortSignal;
  /**
   * Name used in logs and errors.
   * @default the mount prefix
   */
  name?: string;
}
