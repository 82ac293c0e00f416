import type { BodyInit } from '../http/body-source.js';

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
}

/** Options of `GatewayService.callApp(app, req, pathInfo, options)`. */
export interface CallOptions extends GatewayCallSettings {
  /**
   * Method the app sees.
   * @default the client's method
   */
  method?: string;
  /**
   * Request header changes: a value sets the header, `null` removes it.
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
