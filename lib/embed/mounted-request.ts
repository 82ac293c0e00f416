import type { IncomingMessage } from 'node:http';

type MountableRequest = IncomingMessage & { baseUrl?: string; originalUrl?: string };

/**
 * Express mount semantics on a request served under `prefix`: `req.baseUrl` is the prefix,
 * `req.url` the path below it and `req.originalUrl` the client's URL, prefix included (login
 * redirects' `next`, logs). A host that leaves the prefix in the path (Koa, a fetch runtime
 * given the whole URL) has it removed when `stripsPrefix`; one that removed it already (Hono's
 * `app.mount`, a proxy that sends X-Forwarded-Prefix) has it put back into `originalUrl`. An
 * Express mount did all this itself, and says so in `req.baseUrl`.
 */
export function mountRequest(req: MountableRequest, prefix: string, stripsPrefix: boolean): void {
  if (req.baseUrl !== prefix) {
    const path = req.url ?? '/';
    if (stripsPrefix && isUnder(path, prefix)) {
      req.originalUrl ??= path;
      const rest = path.slice(prefix.length);
      req.url = rest === '' ? '/' : rest.startsWith('?') ? '/' + rest : rest;
    } else {
      req.originalUrl ??= prefix + path;
    }
  }
  req.baseUrl = prefix;
}

function isUnder(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix + '/') || path.startsWith(prefix + '?');
}
