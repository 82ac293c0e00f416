import type { IncomingMessage, ServerResponse } from 'node:http';
import { rewriteCookiePath, rewriteLocation } from '../headers/rewrite.js';

// A prefix is a plain absolute path: no `//` (a protocol-relative Location), no odd characters.
const SAFE_PREFIX = /^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/;

/** The prefix a request was mounted under: the host's `req.baseUrl`, else `X-Forwarded-Prefix`. */
export function mountPrefixOf(req: IncomingMessage & { baseUrl?: string }, fixed?: string): string {
  const candidate = fixed ?? (req.baseUrl || String(req.headers['x-forwarded-prefix'] ?? '').split(',')[0].trim());
  const prefix = candidate.replace(/\/+$/, '');
  return SAFE_PREFIX.test(prefix) ? prefix : '';
}

/**
 * Makes the redirects and cookies a Nest app sends carry the prefix it is mounted under:
 * `Location: /login` becomes `/nest/login`, `Path=/` becomes `Path=/nest`. Applied when the
 * head is written, as an own property of this one response.
 */
export function rewriteForPrefix(res: ServerResponse, prefix: string, protocol: string, host: string): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    const location = this.getHeader('location');
    if (typeof location === 'string') this.setHeader('location', rewriteLocation(location, { prefix, protocol, host }, []));
    const cookies = this.getHeader('set-cookie');
    if (cookies !== undefined) {
      this.setHeader('set-cookie', [cookies].flat().map((cookie) => rewriteCookiePath(String(cookie), prefix)));
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['writeHead'];
}
