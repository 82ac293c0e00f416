import { dirname, resolve } from 'node:path';
import { cgiVariables, inheritedEnvironment } from '../cgi/cgi-variables.js';
import { CgiRun } from '../cgi/cgi-run.js';
import { ConcurrencyLimit } from '../cgi/concurrency-limit.js';
import { followLocalRedirect, type LocalRedirects } from '../cgi/local-redirect.js';
import { sizedRequestBody } from '../cgi/sized-request-body.js';
import { directSpawner, type CgiSpawner } from '../cgi/spawner.js';
import { sharedSpawnHelpers } from '../cgi/spawn-helper-pool.js';
import { abortWatchOf } from '../http/client-exchange.js';
import type { GatewayResponse } from '../http/gateway-response.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';
import { brand, type GatewayApp, type GatewayExchange } from './gateway-app.js';

/** Options of `cgiApp(scriptPath, options)`. Times are in milliseconds; 0 turns a limit off. */
export interface CgiAppOptions {
  /**
   * Fixed variables; they override request-derived ones (a call's `env` overrides these).
   * An `undefined` value removes a variable.
   * @default {}
   */
  env?: GatewayEnv;
  /**
   * Program that runs the script, with leading arguments: `'php-cgi'`, `['python3', '-u']`.
   * The script path is its last argument. Without it the script itself is executed. A name
   * without a `/` is looked up on the PATH that the script gets (`env`, else the inherited one).
   * @default undefined
   */
  interpreter?: string | string[];
  /**
   * Working directory of the process.
   * @default the script's directory
   */
  cwd?: string;
  /**
   * Document root: sets DOCUMENT_ROOT and PATH_TRANSLATED (document root + PATH_INFO).
   * @default undefined
   */
  documentRoot?: string;
  /**
   * Variables of this process that the script inherits. Nothing else of the parent's
   * environment reaches it.
   * @default ['PATH', 'LANG', 'LC_ALL', 'TZ']
   */
  inheritEnv?: string[];
  /**
   * Run scripts as this user id (the Nest process must run as root), e.g. 65534 for nobody,
   * with `gid`, which must be given too. The environment rules stay the same.
   * @default the Nest process's own
   */
  uid?: number;
  /**
   * Run scripts with this group id and no supplementary groups.
   * @default the Nest process's own
   */
  gid?: number;
  /**
   * Pass the client's Authorization and Proxy-Authorization headers on as HTTP_AUTHORIZATION
   * and HTTP_PROXY_AUTHORIZATION. Off, the script only learns the principal (REMOTE_USER).
   * @default false
   */
  passAuthorization?: boolean;
  /**
   * AUTH_TYPE sent along with REMOTE_USER.
   * @default 'Nest'
   */
  authType?: string;
  /**
   * Time the script has to finish its headers (504 after it); for a Status without
   * Content-Type, to end its output too (only then is it known to have no body).
   * @default 30000
   */
  headersTimeout?: number;
  /**
   * Time the script may go without output once its headers are sent (not counting time the
   * client spends not reading); the response is cut after it.
   * @default 60000
   */
  idleTimeout?: number;
  /**
   * Time the script may run in all.
   * @default 0 (no limit)
   */
  totalTimeout?: number;
  /**
   * Time between SIGTERM and SIGKILL when a process group is stopped; also how long output
   * may stay open after the script exited (a forked child holding it) before the group is stopped.
   * @default 2000
   */
  killGrace?: number;
  /**
   * Scripts of this app that may run at once; further requests wait in a queue. Scripts that
   * wait on a slow client (a `git clone` over a thin line) hold their slot all along, and a
   * limit below the number of busy connections costs throughput even for quick scripts
   * (measured: 16 against 64 at 32 connections, about 10% fewer requests/s), hence not a
   * multiple of the CPUs.
   * @default 64
   */
  maxConcurrency?: number;
  /**
   * Requests that may wait for a free slot (503 beyond). A request waits at most `headersTimeout`.
   * @default 1000
   */
  maxQueue?: number;
  /**
   * Largest header block a script may print (502 beyond).
   * @default 65536
   */
  maxHeaderBytes?: number;
  /**
   * Error output logged per request; the rest is read and dropped.
   * @default 65536
   */
  maxStderrBytes?: number;
  /**
   * A body without Content-Length (chunked) is buffered up to this size to learn the
   * CONTENT_LENGTH that CGI requires (413 beyond); 0 answers such bodies with 411.
   * @default 10485760 (10 MiB)
   */
  maxBufferedBody?: number;
  /**
   * What a body without Content-Length (chunked) becomes: `'buffer'` holds it up to
   * `maxBufferedBody` to give the script its CONTENT_LENGTH; `'stream'` streams it to stdin of
   * any size with CONTENT_LENGTH unset, as Apache's mod_cgi does, for scripts that read stdin
   * to its end (git-http-backend: git sends packs over 1 MiB chunked).
   * @default 'buffer'
   */
  unsizedBody?: 'buffer' | 'stream';
  /**
   * What to do with a local redirect (`Location: /path` without Status, RFC 3875 6.2.2):
   * `'client'` sends it to the client as a 302; `'follow'` serves the new path from the same
   * script as a GET when it lies under the mount prefix (else 302).
   * @default 'client'
   */
  localRedirects?: LocalRedirects;
  /**
   * How processes are started. `'helpers'`: by small helper processes, so that forking never
   * stalls this process's event loop; `'direct'`: from this process. A custom spawner is accepted.
   * @default 'helpers'
   */
  spawner?: 'helpers' | 'direct' | CgiSpawner;
}

/** A CGI/1.1 script (RFC 3875) in any language as a gateway app: one process per request. */
export function cgiApp(scriptPath: string, options: CgiAppOptions = {}): GatewayApp {
  if (options.uid !== undefined && options.gid === undefined) {
    // The group would stay the Nest process's: root's, when it can change users at all.
    throw new TypeError(`cgiApp(${scriptPath}): uid ${options.uid} needs a gid as well, or scripts run in the group of the Nest process (root)`);
  }
  const script = resolve(scriptPath);
  const interpreter = options.interpreter === undefined ? [] : [options.interpreter].flat();
  const [file, ...leadingArgs] = interpreter.length > 0 ? interpreter : [script];
  const args = interpreter.length > 0 ? [...leadingArgs, script] : [];
  const cwd = options.cwd ?? dirname(script);
  const baseEnv = inheritedEnvironment(options.inheritEnv ?? ['PATH', 'LANG', 'LC_ALL', 'TZ']);
  const limits = {
    headersTimeout: options.headersTimeout ?? 30_000,
    idleTimeout: options.idleTimeout ?? 60_000,
    totalTimeout: options.totalTimeout ?? 0,
    killGrace: options.killGrace ?? 2000,
    maxHeaderBytes: options.maxHeaderBytes ?? 64 * 1024,
    maxStderrBytes: options.maxStderrBytes ?? 64 * 1024,
    // A script's output ends when it exits, usually a moment after its last write: the head
    // waits that long at most, so that a short answer goes out whole (a streaming one is
    // held back by no more than this).
    endLookahead: 20,
  };
  const limit = new ConcurrencyLimit(
    options.maxConcurrency ?? 64,
    options.maxQueue ?? 1000,
    `CGI script ${script}`,
  );
  const spawner = (): CgiSpawner =>
    typeof options.spawner === 'object' ? options.spawner : options.spawner === 'direct' ? directSpawner : sharedSpawnHelpers();

  const run = async (exchange: GatewayExchange): Promise<GatewayResponse> => {
    const input = await sizedRequestBody(exchange, options.maxBufferedBody ?? 10 * 1024 * 1024, options.unsizedBody === 'stream');
    const release = await limit.acquire(abortWatchOf(exchange), limits.headersTimeout);
    let child;
    try {
      const env = {
        ...baseEnv,
        ...cgiVariables(exchange, {
          scriptFilename: script,
          documentRoot: options.documentRoot,
          passAuthorization: options.passAuthorization ?? false,
          authType: options.authType ?? 'Nest',
          contentLength: input.length,
          env: options.env,
        }),
      };
      // One byte over the limit: enough for the log to say that there was more.
      const stderrBytes = limits.maxStderrBytes + 1;
      child = await spawner().spawn({ file, args, env, cwd, stdin: input.stream !== null, uid: options.uid, gid: options.gid, stderrBytes });
    } catch (error) {
      release();
      input.stream?.destroy();
      throw error;
    }
    const { head, response } = await new CgiRun(child, exchange, limits, release).respond(input.stream);
    if (head.localRedirect !== undefined && options.localRedirects === 'follow') {
      return followLocalRedirect(head.localRedirect, response, exchange, run);
    }
    return response;
  };
  return brand<GatewayApp>({ kind: 'cgi', call: run });
}
