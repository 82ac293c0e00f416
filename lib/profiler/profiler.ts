import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeMiddleware } from '../middleware/run-middleware.js';
import { CpuSampler } from './cpu-sampler.js';
import { toCpuProfile } from './profile-merge.js';
import { SORT_KEYS, type SortKey, defaultDescending, renderProfilePage } from './profile-page.js';

export interface ProfilerOptions {
  /**
   * Where the report lives, relative to the mount: the page at `<mount><path>`, the download at
   * `<mount><path>/profile.cpuprofile`, the reset at `POST <mount><path>/clear`.
   * @default '/__profile__'
   */
  path?: string;
  /**
   * Leave the first wrapped request (JIT compilation, caches warming up) unprofiled and
   * uncounted. Only the very first one: clearing the profile does not bring it back.
   * @default false
   */
  discardFirstRequest?: boolean;
  /**
   * Microseconds between two CPU samples.
   * @default 500
   */
  samplingInterval?: number;
  /**
   * When false the middleware only calls `next()` and serves no page.
   * @default true
   */
  enabled?: boolean;
}

export const DEFAULT_PROFILE_PATH = '/__profile__';

function normalisePath(path: string): string {
  const trimmed = `/${path}`.replace(/\/+/g, '/').replace(/\/$/, '');
  if (trimmed === '') throw new TypeError('profiler: `path` must not be the mount root');
  return trimmed;
}

function reply(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

const text = { 'content-type': 'text/plain; charset=utf-8' };

/**
 * CPU-profiles the requests of a mount, in the spirit of repoze.profile. V8 samples the whole
 * process, so whatever else runs meanwhile shows up too.
 *
 * V8's profiler does not see code it compiled on-stack (OSR, for a long-running loop) before
 * the current profiling window began: such a loop's time shows up in its caller, at the line
 * of the call. Since the profiler is off between requests, a function that loops long and is
 * called rarely can vanish from later profiles; Node's `--no-use-osr` avoids that, at some cost.
 *
 * @example
 * ```ts
 * @MountGateway('app', legacyApp, { middleware: [profiler({ discardFirstRequest: true })] })
 * @UseGuards(AdminGuard) // the report is behind the mount's guards
 * class LegacyApp {}
 * ```
 */
export function profiler(options: ProfilerOptions = {}): NodeMiddleware {
  if (options.enabled === false) return (_req, _res, next) => next();
  const path = normalisePath(options.path ?? DEFAULT_PROFILE_PATH);
  const interval = options.samplingInterval ?? 500;
  if (!Number.isInteger(interval) || interval <= 0) throw new TypeError('profiler: `samplingInterval` must be a positive integer');
  const discardFirstRequest = options.discardFirstRequest ?? false;
  let discardNext = discardFirstRequest;
  const sampler = new CpuSampler(interval);

  const serve = (req: IncomingMessage & { baseUrl?: string }, res: ServerResponse, action: string, query: string) => {
    const base = `${req.baseUrl ?? ''}${path}`;
    const method = req.method ?? 'GET';
    const readOnly = method === 'GET' || method === 'HEAD';
    if (action === '' || action === '/') {
      if (!readOnly) return reply(res, 405, { ...text, allow: 'GET, HEAD' }, 'Method Not Allowed\n');
      const params = new URLSearchParams(query);
      const sortParam = params.get('sort') as SortKey;
      const sort = SORT_KEYS.includes(sortParam) ? sortParam : 'self';
      const order = params.get('order');
      const descending = order === 'asc' ? false : order === 'desc' ? true : defaultDescending(sort);
      const nonce = randomBytes(16).toString('base64');
      const html = renderProfilePage({
        base,
        merged: sampler.merged,
        requests: sampler.requests,
        profilingNow: sampler.profiling,
        samplingInterval: interval,
        discardFirstRequest,
        failure: sampler.failure,
        sort,
        descending,
        nonce,
      });
      return reply(
        res,
        200,
        {
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'`,
          'x-content-type-options': 'nosniff',
        },
        html,
      );
    }
    if (action === '/profile.cpuprofile') {
      if (!readOnly) return reply(res, 405, { ...text, allow: 'GET, HEAD' }, 'Method Not Allowed\n');
      return reply(
        res,
        200,
        { 'content-type': 'application/json', 'content-disposition': 'attachment; filename="profile.cpuprofile"' },
        JSON.stringify(toCpuProfile(sampler.merged)),
      );
    }
    if (action === '/clear') {
      if (method !== 'POST') return reply(res, 405, { ...text, allow: 'POST' }, 'Method Not Allowed\n');
      if (postedFromElsewhere(req)) return reply(res, 403, text, 'Forbidden\n');
      sampler.clear();
      return reply(res, 303, { ...text, location: base }, 'See Other\n');
    }
    return reply(res, 404, text, 'Not Found\n');
  };

  return (req, res, next) => {
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
    if (pathname === path || pathname.startsWith(`${path}/`)) {
      return serve(req, res, pathname.slice(path.length), queryAt === -1 ? '' : url.slice(queryAt + 1));
    }
    if (discardNext) {
      discardNext = false;
      return next();
    }
    const visit = sampler.enter();
    res.once('finish', visit.leave).once('close', visit.leave);
    void visit.ready.then(() => {
      if (!visit.left) next();
    });
  };
}

/**
 * A browser's request that another origin made (a form on another site, or on a sibling
 * subdomain) must not wipe the profile: Fetch Metadata where the browser sends it, else
 * `Origin`. A request with neither does not come from a browser page, so no page forged it.
 */
function postedFromElsewhere(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) return site !== 'same-origin' && site !== 'none';
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  try {
    const { protocol, host } = new URL(origin);
    // Read as a URL of the Origin's scheme, the Host drops a default port and its case as the Origin did.
    return new URL(`${protocol}//${req.headers.host ?? ''}`).host !== host;
  } catch {
    return true; // 'null' (a sandboxed or file page) or garbage
  }
}
