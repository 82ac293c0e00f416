import {
  GatewayTimeoutException,
  HttpException,
  Inject,
  Injectable,
  InternalServerErrorException,
  Logger,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server } from 'node:http';
import type { GatewayApp, GatewayExchange } from './apps/gateway-app.js';
import { toGatewayApp, type GatewayAppLike } from './apps/to-gateway-app.js';
import { GATEWAY_MODULE_OPTIONS } from './gateway.module-definition.js';
import { knownLength, toReadable } from './http/body-source.js';
import { ClientExchange } from './http/client-exchange.js';
import type { GatewayResponse } from './http/gateway-response.js';
import { PathInfoError, splitPrefix, splitUrl } from './http/path-info.js';
import { applyErrorHeaders, statusException, statusOf } from './http/status-error.js';
import { claimRequestBody, hasBody, isBodyUntouched, RequestBodyConsumedError } from './http/request-body.js';
import type {
  CallOptions,
  GatewayModuleOptions,
  MountOptions,
} from './interfaces/gateway-options.interface.js';
import { installExpressRequestHooks, mountOfPath } from './platform/express-platform.js';
import { installUpgradeDispatch, refuseUpgrade, upgradeOf } from './platform/upgrade-dispatch.js';
import { ALREADY_SENT, hookAdapterReply } from './platform/reply-hook.js';
import { clientView, originalUrlOf, rawRequest, rawResponse } from './platform/request-info.js';
import { FORWARDED_HEADERS, headerKey, withoutHeaders } from './identity/identity-headers.js';
import {
  DEFAULT_IDENTITY_ALIASES,
  DEFAULT_IDENTITY_HEADER,
  defaultRemoteUser,
  remoteUserHeaderValue,
  resolveRemoteUser,
} from './identity/remote-user.js';
import { rewriteResponseHeaders } from './headers/rewrite.js';
import { runMiddleware } from './middleware/run-middleware.js';
import { appOf, isLateApp, LATE_PATH, normalisePath, type LateApp } from './config/configured-mounts.js';

const UPGRADES_HOOKED = Symbol.for('nest-gateway.upgradesHooked');

/** Calls gateway apps on behalf of controllers and `@MountGateway` classes. */
@Injectable()
export class GatewayService implements OnApplicationBootstrap {
  private readonly logger = new Logger('Gateway');
  private readonly identityHeader: string;
  private readonly bodyReplayLimit: number;
  /** Identity header and aliases, normalised as `headerKey` does. */
  private readonly identityNames: ReadonlySet<string>;
  private readonly untrustedNames: ReadonlySet<string>;
  private readonly configuredApps = new Map<LateApp, GatewayApp>();

  constructor(
    @Inject(GATEWAY_MODULE_OPTIONS) private readonly options: GatewayModuleOptions,
    private readonly adapterHost: HttpAdapterHost,
  ) {
    this.identityHeader = (options.identityHeader ?? DEFAULT_IDENTITY_HEADER).toLowerCase();
    this.bodyReplayLimit = options.bodyReplayLimit ?? 1024 * 1024;
    // The default header stays stripped under a custom one: apps (and gunicorn's
    // HTTP_REMOTE_USER) may still trust it.
    this.identityNames = new Set(
      [this.identityHeader, DEFAULT_IDENTITY_HEADER, ...(options.identityAliases ?? DEFAULT_IDENTITY_ALIASES)].map(headerKey),
    );
    this.untrustedNames = new Set([...this.identityNames, ...FORWARDED_HEADERS]);
    // init$ fires as soon as the adapter exists: before Nest registers its body parsers.
    adapterHost.init$.subscribe(() => {
      const adapter = adapterHost.httpAdapter;
      if (!adapter) return;
      hookAdapterReply(adapter, this.logger);
      if (adapter.getType() === 'express') {
        installExpressRequestHooks(adapter.getInstance(), { bodyReplayLimit: this.bodyReplayLimit });
      }
    });
  }

  /** The HTTP server exists now: upgrade requests (WebSocket) start going through Nest. */
  onApplicationBootstrap(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (adapter?.getType() !== 'express') return;
    const server = adapter.getHttpServer() as Server | undefined;
    if (!server || UPGRADES_HOOKED in server) return;
    Object.defineProperty(server, UPGRADES_HOOKED, { value: true });
    const instance = adapter.getInstance();
    installUpgradeDispatch(server, instance, mountOfPath(instance), this.logger);
  }

  /**
   * Calls `app` with the client's request, the prefix being the request path minus `pathInfo`.
   * Resolves as soon as the app has sent its headers; the body follows lazily. Return the
   * result from a handler to send it as is, or change it first.
   */
  callApp(app: GatewayAppLike, req: unknown, pathInfo: string, options: CallOptions = {}): Promise<GatewayResponse> {
    // Not async: each async layer between the app and the caller costs promises and turns.
    let gatewayApp: GatewayApp;
    try {
      gatewayApp = toGatewayApp(app);
    } catch (error) {
      return Promise.reject(error);
    }
    const timeout = options.timeout ?? this.options.timeout ?? 0;
    return this.run(req, pathInfo, options, (exchange) => this.callAndShape(gatewayApp, exchange, options, timeout));
  }

  /** Serves a `@MountGateway` request: directly when the app can, else through a GatewayResponse. */
  async serveMount(
    app: GatewayApp,
    req: unknown,
    res: unknown,
    pathInfo: string,
    options: MountOptions & { name: string },
  ): Promise<GatewayResponse | typeof ALREADY_SENT> {
    if (isLateApp(app)) app = this.configuredApp(app);
    const timeout = options.timeout ?? this.options.timeout ?? 0;
    // The mount answers for the app, as Express's final handler would: with the headers of an
    // error that carries a status (a caller of callApp composes its own response instead).
    return this.run(req, pathInfo, options, (exchange) => this.serveExchange(app, exchange, res, options, timeout), res);
  }

  private async serveExchange(
    app: GatewayApp,
    clientExchange: GatewayExchange,
    res: unknown,
    options: MountOptions & { name: string },
    timeout: number,
  ): Promise<GatewayResponse | typeof ALREADY_SENT> {
    let exchange: GatewayExchange = clientExchange;
    if (options.middleware?.length) {
      const passed = await runMiddleware(options.middleware, exchange, rawResponse(res), this.bodyReplayLimit);
      if (!passed) return ALREADY_SENT;
      exchange = passed;
    }
    const upgrade = upgradeOf(exchange.req);
    if (upgrade && app.upgrade) {
      upgrade.claim();
      try {
        await app.upgrade(exchange, upgrade.socket, upgrade.head);
      } catch (error) {
        // The connection left Nest's response: the refusal is written on it directly.
        refuseUpgrade(upgrade.socket, error instanceof HttpException ? error.getStatus() : (statusOf(error) ?? 500));
        throw error;
      }
      return ALREADY_SENT;
    }
    if (app.serve && timeout <= 0 && !options.rewrite && exchange.bodyIsLive) {
      await app.serve(exchange, rawResponse(res));
      return ALREADY_SENT;
    }
    return this.callAndShape(app, exchange, options, timeout);
  }

  /** The app the (async) options give for a mount declared by path only; built once. */
  private configuredApp(late: LateApp): GatewayApp {
    let app = this.configuredApps.get(late);
    if (!app) {
      const declared = this.options.mounts?.find((mount) => normalisePath(mount.path) === late[LATE_PATH] && mount.app);
      if (!declared?.app) {
        const message = `No app is configured for the mount ${late[LATE_PATH]}: the async options' mounts must give one`;
        this.logger.error(message);
        throw new InternalServerErrorException();
      }
      app = appOf(declared.app);
      this.configuredApps.set(late, app);
    }
    return app;
  }

  /**
   * Runs one app call; a failure aborts the exchange and becomes an HTTP error, logged once.
   * `answeredOn`: the response the failure is answered on, which gets the error's headers.
   */
  private async run<T>(
    req: unknown,
    pathInfo: string,
    options: CallOptions,
    work: (exchange: GatewayExchange) => Promise<T>,
    answeredOn?: unknown,
  ): Promise<T> {
    const exchange = this.createExchange(req, pathInfo, options);
    try {
      return await work(exchange);
    } catch (error) {
      const clientGone = exchange.signal.aborted;
      exchange.abort(error);
      if (answeredOn !== undefined && statusOf(error) !== undefined) applyErrorHeaders(error, rawResponse(answeredOn));
      throw this.toHttpError(error, exchange.name, clientGone);
    }
  }

  private callAndShape(app: GatewayApp, exchange: GatewayExchange, options: CallOptions, timeout: number): Promise<GatewayResponse> {
    const call = this.withTimeout(app.call(exchange), exchange, timeout);
    const rewrite = options.rewrite;
    if (!rewrite) return call;
    return call.then((response) => {
      rewriteResponseHeaders(response.headers, exchange, rewrite, response);
      return response;
    });
  }

  private createExchange(platformReq: unknown, requestedPathInfo: string, options: CallOptions): ClientExchange {
    const req = rawRequest(platformReq);
    const originalUrl = originalUrlOf(platformReq);
    const { path, search } = splitUrl(originalUrl);
    const { prefix, pathInfo } = splitPrefix(path, requestedPathInfo);
    const client = clientView(platformReq);
    const remoteUser = resolveRemoteUser(platformReq, options.remoteUser, this.options.remoteUser ?? defaultRemoteUser);
    const replacedBody = options.body !== undefined;
    const socket = req.socket;
    return new ClientExchange({
      req,
      method: (options.method ?? req.method ?? 'GET').toUpperCase(),
      rawHeaders: this.requestHeaders(req.rawHeaders, options, client.trustsProxy, remoteUser),
      prefix,
      pathInfo,
      search,
      originalUrl,
      protocol: client.protocol,
      host: client.host ?? socketHost(socket),
      remoteAddress: client.remoteAddress,
      remoteUser,
      identityHeader: this.identityHeader,
      env: { ...options.env },
      name: options.name ?? (prefix || '/'),
      logger: this.logger,
      bodyIsLive: !replacedBody && (!hasBody(req) || isBodyUntouched(req)),
      takeBody: () => (replacedBody ? toReadable(options.body) : claimRequestBody(req)),
      callerSignal: options.signal,
    });
  }

  /**
   * The headers an app sees: client-sent identity headers (and, unless the proxy is trusted,
   * forwarding headers) removed, the caller's changes applied, then the principal added.
   */
  private requestHeaders(
    raw: readonly string[],
    options: CallOptions,
    trustsProxy: boolean,
    remoteUser: string | undefined,
  ): readonly string[] {
    const untrusted = trustsProxy ? this.identityNames : this.untrustedNames;
    const cleaned = withoutHeaders(raw, untrusted, !trustsProxy);
    const changed = applyHeaderChanges(cleaned, options.headers, options.body);
    const result = options.headers ? withoutHeaders(changed, this.identityNames) : changed;
    // Unchanged headers stay the very same array: a mounted app then keeps the request's own.
    return remoteUser === undefined ? result : [...result, this.identityHeader, remoteUserHeaderValue(remoteUser)];
  }

  private withTimeout(
    call: Promise<GatewayResponse>,
    exchange: GatewayExchange,
    timeout = 0,
  ): Promise<GatewayResponse> {
    if (timeout <= 0) return call;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new GatewayTimeoutException(`${exchange.name} sent no headers within ${timeout} ms`));
      }, timeout);
    });
    return Promise.race([call, expired]).finally(() => clearTimeout(timer));
  }

  /**
   * One log line naming the app; the client gets a plain 500 without internals, or the status
   * an error carries (see `statusOf`: client errors are not logged as failures).
   */
  private toHttpError(error: unknown, name: string, clientGone = false): unknown {
    if (clientGone) {
      // Nobody is left to answer; a client that hangs up is not an app failure.
      this.logger.debug?.(`${name}: client went away (${(error as Error)?.message ?? error})`);
      return error instanceof HttpException ? error : new InternalServerErrorException(undefined, { cause: error });
    }
    if (error instanceof GatewayTimeoutException) {
      this.logger.warn(`${name}: ${error.message}`);
      return error;
    }
    if (error instanceof HttpException) return error;
    if (error instanceof PathInfoError) return error;
    if (error instanceof RequestBodyConsumedError) {
      this.logger.error(`${name}: ${error.message}`);
      return new InternalServerErrorException(error.message, { cause: error });
    }
    // A plain object passed to next() may carry the status too, as finalhandler reads it.
    const status = statusOf(error);
    const err = error instanceof Error ? error : new Error(messageOf(error));
    if (status !== undefined && status < 500) {
      this.logger.debug?.(`${name}: ${status} ${err.message}`);
      return statusException(error, status);
    }
    this.logger.error(`App mounted at ${name} failed: ${err.message}`, err.stack);
    return status === undefined ? new InternalServerErrorException(undefined, { cause: err }) : statusException(error, status);
  }
}

/** An error-like value's own message (`{ status, message }`), else the value as text. */
function messageOf(value: unknown): string {
  const message = (value as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(value);
}

/** Applies CallOptions.headers to flat raw headers; a replaced body gets its own length. */
function applyHeaderChanges(
  raw: readonly string[],
  changes: CallOptions['headers'],
  replacedBody: CallOptions['body'] | undefined,
): readonly string[] {
  const overrides = new Map<string, string | string[] | null>();
  for (const [name, value] of Object.entries(changes ?? {})) overrides.set(name.toLowerCase(), value);
  if (replacedBody !== undefined) {
    const length = knownLength(replacedBody);
    overrides.set('transfer-encoding', length === undefined ? 'chunked' : null);
    overrides.set('content-length', length === undefined || replacedBody === null ? null : String(length));
    // No body has no type: an app would otherwise look for the JSON the client's Content-Type names.
    if (replacedBody === null && !overrides.has('content-type')) overrides.set('content-type', null);
  }
  if (overrides.size === 0) return raw;
  const result: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!overrides.has(raw[i].toLowerCase())) result.push(raw[i], raw[i + 1]);
  }
  for (const [name, value] of overrides) {
    if (value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) result.push(name, item);
  }
  return result;
}

/** The server's own address as a Host, for requests that name none (or no valid one). */
function socketHost(socket: IncomingMessage['socket'] | undefined): string {
  const address = socket?.localAddress ?? 'localhost';
  return `${address.includes(':') ? `[${address}]` : address}:${socket?.localPort ?? 80}`;
}
