import { BadGatewayException, ServiceUnavailableException } from '@nestjs/common';
import { cgiVariables } from '../cgi/cgi-variables.js';
import { respondFromOutput } from '../cgi/cgi-response.js';
import { sizedRequestBody } from '../cgi/sized-request-body.js';
import { ErrorOutputLog } from '../cgi/stderr-log.js';
import type { FastcgiAddress } from '../fastcgi/fastcgi-connection.js';
import { FastcgiPool } from '../fastcgi/fastcgi-pool.js';
import { FastcgiConnectionError, FastcgiRefusedError } from '../fastcgi/fastcgi-connection.js';
import { ProtocolStatus } from '../fastcgi/records.js';
import { RetryableBody } from '../proxy/retryable-body.js';
import { locateScript } from '../fastcgi/script-location.js';
import { abortWatchOf } from '../http/client-exchange.js';
import { maySendAgain } from '../http/idempotent.js';
import type { GatewayResponse } from '../http/gateway-response.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';
import { brand, type GatewayApp, type GatewayExchange } from './gateway-app.js';

/** Options of `fastcgiApp(address, options)`. Times are in milliseconds; 0 turns a limit off. */
export interface FastcgiAppOptions {
  /**
   * The script every request runs (fcgiwrap, php-fpm with a front controller); the whole
   * path after the mount is PATH_INFO.
   * @default undefined
   */
  scriptFilename?: string;
  /**
   * Document root on the responder's side: the path names the script, as with nginx's
   * `fastcgi_split_path_info` (`/x/index.php/rest`). Ignored when `scriptFilename` is set.
   * @default undefined
   */
  documentRoot?: string;
  /**
   * Script run for a path ending in `/` under `documentRoot`.
   * @default 'index.php'
   */
  index?: string;
  /**
   * A path segment ending in one of these names the script under `documentRoot`.
   * @default ['.php']
   */
  scriptExtensions?: string[];
  /**
   * Fixed params; they override request-derived ones (a call's `env` overrides these).
   * @default {}
   */
  env?: GatewayEnv;
  /**
   * Pass Authorization and Proxy-Authorization on as HTTP_* params.
   * @default false
   */
  passAuthorization?: boolean;
  /**
   * AUTH_TYPE sent along with REMOTE_USER.
   * @default 'Nest'
   */
  authType?: string;
  /**
   * Requests in flight per responder, each on its own kept-alive connection; further requests
   * wait. A responder with fewer workers (php-fpm's `pm.max_children`, fcgiwrap's `-c`) is
   * detected, and the pool keeps to the connections it serves; sizing this to the responder
   * spares that detection.
   * @default 16
   */
  maxConnections?: number;
  /**
   * Requests that may wait for a connection per responder (503 beyond). A request waits at most `headersTimeout`.
   * @default 1000
   */
  maxQueue?: number;
  /**
   * How long an idle connection is kept for reuse (FCGI_KEEP_CONN); 0 opens one per request.
   * @default 4000
   */
  keepAliveTimeout?: number;
  /**
   * Time to establish a connection.
   * @default 5000
   */
  connectTimeout?: number;
  /**
   * Time the responder has to send its headers (504 after it); for a Status without
   * Content-Type, to end its output too (only then is it known to have no body).
   * @default 30000
   */
  headersTimeout?: number;
  /**
   * Time the responder may go without output once the headers are sent; the response is cut after it.
   * @default 60000
   */
  idleTimeout?: number;
  /**
   * Time a request may take in all.
   * @default 0 (no limit)
   */
  totalTimeout?: number;
  /**
   * Largest header block accepted (502 beyond).
   * @default 65536
   */
  maxHeaderBytes?: number;
  /**
   * STDERR logged per request; the rest is dropped.
   * @default 65536
   */
  maxStderrBytes?: number;
  /**
   * A body without Content-Length is buffered up to this size to learn CONTENT_LENGTH
   * (413 beyond); 0 answers such bodies with 411.
   * @default 10485760 (10 MiB)
   */
  maxBufferedBody?: number;
  /**
   * What a body without Content-Length (chunked) becomes: `'buffer'` holds it up to
   * `maxBufferedBody` to give the responder its CONTENT_LENGTH; `'stream'` streams it of any
   * size with CONTENT_LENGTH unset, for scripts that read their input to its end
   * (git-http-backend under fcgiwrap; PHP reads no body without a length).
   * @default 'buffer'
   */
  unsizedBody?: 'buffer' | 'stream';
}

/**
 * A FastCGI responder (php-fpm, fcgiwrap, uWSGI, …) as a gateway app, over a pool of
 * keep-alive connections. Several addresses are balanced by load.
 */
export function fastcgiApp(address: FastcgiAddress | FastcgiAddress[], options: FastcgiAppOptions = {}): GatewayApp & { close(): void } {
  const pool = new FastcgiPool([address].flat(), {
    maxConnections: options.maxConnections ?? 16,
    maxQueue: options.maxQueue ?? 1000,
    keepAliveTimeout: options.keepAliveTimeout ?? 4000,
    connectTimeout: options.connectTimeout ?? 5000,
  });
  const limits = {
    headersTimeout: options.headersTimeout ?? 30_000,
    idleTimeout: options.idleTimeout ?? 60_000,
    totalTimeout: options.totalTimeout ?? 0,
    maxHeaderBytes: options.maxHeaderBytes ?? 64 * 1024,
  };

  const call = async (exchange: GatewayExchange): Promise<GatewayResponse> => {
    const script = locateScript(exchange.prefix, exchange.pathInfo, {
      scriptFilename: options.scriptFilename,
      documentRoot: options.documentRoot,
      index: options.index ?? 'index.php',
      scriptExtensions: options.scriptExtensions ?? ['.php'],
    });
    const input = await sizedRequestBody(exchange, options.maxBufferedBody ?? 10 * 1024 * 1024, options.unsizedBody === 'stream');
    const params = cgiVariables(exchange, {
      scriptFilename: script.scriptFilename,
      split: script.split,
      documentRoot: options.documentRoot,
      passAuthorization: options.passAuthorization ?? false,
      authType: options.authType ?? 'Nest',
      contentLength: input.length ?? 0,
      env: options.env,
    });
    const body = input.stream ? new RetryableBody(input.stream) : null;
    const abort = abortWatchOf(exchange);
    const resendable = maySendAgain(exchange.method, exchange.rawHeaders);
    for (;;) {
      let lease;
      try {
        lease = await pool.lease(abort, limits.headersTimeout);
      } catch (error) {
        input.stream?.destroy();
        throw mapFailure(error, exchange, exchange.name);
      }
      const { connection, release } = lease;
      const reused = connection.answered;
      const tag = `${exchange.name} [FastCGI ${connection.socket.remoteAddress ?? 'unix'}:${connection.socket.remotePort ?? ''}]`;
      const errorLog = new ErrorOutputLog(exchange.logger, tag, options.maxStderrBytes ?? 64 * 1024);
      // A request that must not run twice goes on a reused connection with a probe, which the
      // worker answers as it takes the request: one left unanswered was not taken.
      const probe = !resendable && reused && connection.answersProbes;
      const keep = options.keepAliveTimeout !== 0;
      const request = connection.request(params, body?.view() ?? null, keep, (chunk) => errorLog.write(chunk), probe);
      request.ended.then(
        (end) => {
          release();
          errorLog.end();
          if (end.appStatus !== 0) exchange.logger.warn(`${tag} ended with application status ${end.appStatus}`);
        },
        () => release(),
      );
      try {
        const { response } = await respondFromOutput(request.stdout, exchange, limits, tag, () => connection.destroy());
        return response;
      } catch (error) {
        // A kept-alive connection that the responder closed as it was reused (php-fpm's worker
        // retiring after pm.max_requests): sent again on another. A request that is not
        // idempotent only when its probe shows no worker took it: a worker killed while running
        // it (a php-fpm restart, the OOM killer) may have done its work. Each such connection
        // fails once and is gone, so this ends at a new one at the latest.
        const stale = error instanceof FastcgiConnectionError && reused && !request.answered && (resendable || probe);
        if (stale && !abort.aborted && (!body || body.replayable)) continue;
        throw mapFailure(error, exchange, tag);
      }
    }
  };
  return Object.assign(brand<GatewayApp>({ kind: 'fastcgi', call }), { close: () => pool.close() });
}

/** END_REQUEST refusals and broken connections, as the client should see them. */
function mapFailure(error: unknown, exchange: GatewayExchange, tag: string): unknown {
  if (error instanceof FastcgiRefusedError) {
    if (error.protocolStatus === ProtocolStatus.UnknownRole) {
      exchange.logger.error(`${tag} does not accept the Responder role`);
      return new BadGatewayException(undefined, { cause: error });
    }
    exchange.logger.warn(`${tag} ${error.message}`);
    return new ServiceUnavailableException(undefined, { cause: error });
  }
  if (error instanceof FastcgiConnectionError) {
    exchange.logger.error(`${tag} ${error.message}`);
    return new BadGatewayException(undefined, { cause: error });
  }
  return error;
}
