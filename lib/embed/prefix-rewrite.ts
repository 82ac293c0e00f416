import type { IncomingMessage, ServerResponse } from 'node:http';
import { applyOnWriteHead } from '../headers/header-changes.js';
import { rewriteCookiePath, rewriteLocation } from '../headers/rewrite.js';

// A prefix is a plain absolute path: no `//` (a protocol-relative Location), no odd characters.
const SAFE_PREFIX = /^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/;

/**
 * The prefix a request was mounted under: the host's `req.baseUrl`, else `X-Forwarded-Prefix`
 * when the peer is a trusted proxy (a client could otherwise put its own prefix into the
 * redirects and cookie paths, and a shared cache would keep them for everyone); the trust is
 * asked only when the header is the one that counts.
 */
export function mountPrefixOf(req: IncomingMessage & { baseUrl?: string }, fixed: string | undefined, trustsForwarding: () => boolean): string {
  const candidate = fixed ?? (req.baseUrl || (trustsForwarding() ? String(req.headers['x-forwarded-prefix'] ?? '').split(',')[0].trim() : ''));
  const prefix = candidate.replace(/\/+$/, '');
  return SAFE_PREFIX.test(prefix) ? prefix : '';
}

/** The scheme and host a client addressed: whose absolute redirects are the app's own. */
export interface ClientOrigin {
  protocol: 'http' | 'https';
  host: string;
}

/**
 * The client's scheme and host as Express's `req.protocol` and `req.host` see them: a trusted
 * proxy's X-Forwarded-Proto and X-Forwarded-Host (their first values), else the connection's
 * and the Host header. The same trust decides as for X-Forwarded-Prefix.
 */
export function clientOrigin(req: IncomingMessage, trustsForwarding: () => boolean): ClientOrigin {
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted;
  const own: ClientOrigin = { protocol: encrypted ? 'https' : 'http', host: req.headers.host ?? '' };
  if (!trustsForwarding()) return own;
  const proto = firstValue(req.headers['x-forwarded-proto']).toLowerCase();
  return {
    protocol: proto === 'https' || proto === 'http' ? proto : own.protocol,
    host: firstValue(req.headers['x-forwarded-host']) || own.host,
  };
}

function firstValue(header: string | string[] | undefined): string {
  return String(header ?? '').split(',')[0].trim();
}

/**
 * Makes the redirects and cookies a Nest app sends carry the prefix it is mounted under:
 * `Location: /login` becomes `/nest/login`, `Path=/` becomes `Path=/nest`. Applied when the
 * head is written (headers given to `writeHead` included), on this one response.
 */
export function rewriteForPrefix(res: ServerResponse, prefix: string, originOf: () => ClientOrigin): void {
  applyOnWriteHead(res, {
    edit: (response) => {
      const location = response.getHeader('location');
      if (typeof location === 'string') response.setHeader('location', rewriteLocation(location, { prefix, ...originOf() }, []));
      const cookies = response.getHeader('set-cookie');
      if (cookies !== undefined) {
        response.setHeader('set-cookie', [cookies].flat().map((cookie) => rewriteCookiePath(String(cookie), prefix)));
      }
    },
  });
}

/** A fixed prefix given by the caller: `/nest` (a trailing slash is dropped); anything else is a mistake. */
export function validatePrefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '');
  if (trimmed !== '' && !SAFE_PREFIX.test(trimmed)) {
    throw new TypeError(`prefix must be an absolute path such as '/nest', got ${JSON.stringify(prefix)}`);
  }
  return trimmed;
}
