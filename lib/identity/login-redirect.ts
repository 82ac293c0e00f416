import { originalUrlOf, rawRequest } from '../platform/request-info.js';

/** Media types that mean a browser asking for a page (a wildcard does not: git, curl and fetch() send one). */
const PAGE_TYPES = new Set(['text/html', 'application/xhtml+xml']);

/** Whether the client names HTML in its Accept header with a weight above 0 (`q=0`: not acceptable). */
export function acceptsHtml(req: unknown): boolean {
  const accept = rawRequest(req).headers.accept;
  if (!accept) return false;
  return accept.split(',').some((range) => {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    if (!PAGE_TYPES.has(type)) return false;
    const weight = params.find((param) => param.startsWith('q='));
    return weight === undefined || Number(weight.slice(2)) > 0;
  });
}

/** `loginUrl` with `next=<the request's local path>` added to its query, before any fragment. */
export function loginUrlWithNext(loginUrl: string, req: unknown): string {
  const hash = loginUrl.indexOf('#');
  const base = hash === -1 ? loginUrl : loginUrl.slice(0, hash);
  const fragment = hash === -1 ? '' : loginUrl.slice(hash);
  const separator = base.includes('?') ? '&' : '?';
  return `${base}${separator}next=${encodeURIComponent(localTargetOf(req))}${fragment}`;
}

/**
 * The request's path and query as a local path, whatever form its target had: an
 * absolute-form target (`GET http://evil.example/x`) loses its scheme and host, and leading
 * slashes and backslashes become one `/` (`//host` and `/\host` are other sites to a browser).
 */
function localTargetOf(req: unknown): string {
  const target = originalUrlOf(req);
  const hash = target.indexOf('#');
  const withoutFragment = hash === -1 ? target : target.slice(0, hash);
  return '/' + withoutFragment.replace(/^[/\\]+/, '');
}
