import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * What the gateway needs to know about the platform's request objects. Express's are Node's
 * own; Fastify wraps them in `.raw`. Everything platform-specific about reading a request
 * lives here and in the platform's installer.
 */
type PlatformRequest = IncomingMessage & {
  raw?: IncomingMessage;
  originalUrl?: string;
  route?: { path?: string };
  routeOptions?: { url?: string };
};

export function rawRequest(req: unknown): IncomingMessage {
  const platform = req as PlatformRequest;
  return platform.raw ?? platform;
}

export function rawResponse(res: unknown): ServerResponse {
  const platform = res as ServerResponse & { raw?: ServerResponse };
  return platform.raw ?? platform;
}

const ABSOLUTE_FORM_AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * Path and query exactly as the client sent them, whatever routers did to `req.url`. An
 * absolute-form target (`GET http://host/x`, which servers must accept, RFC 9112 3.2.2) loses
 * its scheme and host: routers match its path, and so must the mount prefix and pathInfo.
 */
export function originalUrlOf(req: unknown): string {
  const platform = req as PlatformRequest;
  const url = platform.originalUrl ?? rawRequest(req).url ?? '/';
  if (url.charCodeAt(0) === 0x2f) return url;
  const authority = ABSOLUTE_FORM_AUTHORITY.exec(url);
  if (authority === null) return url;
  const rest = url.slice(authority[0].length);
  return rest.charCodeAt(0) === 0x2f ? rest : '/' + rest;
}

/** The route pattern that matched (`/api/wiki/*path`), with global prefix and version. */
export function routePatternOf(req: unknown): string | undefined {
  const platform = req as PlatformRequest;
  return platform.route?.path ?? platform.routeOptions?.url;
}

/**
 * Scheme, host and client address as the platform established them: behind a trusted proxy
 * (Express `trust proxy`) the forwarded ones, otherwise the socket's.
 */
export function clientView(req: unknown): {
  protocol: 'http' | 'https';
  host: string | undefined;
  remoteAddress: string | undefined;
  trustsProxy: boolean;
} {
  const platform = req as PlatformRequest & {
    protocol?: string;
    host?: string;
    ip?: string;
    app?: { get?(setting: string): unknown };
  };
  const raw = rawRequest(req);
  const socket = raw.socket as IncomingMessage['socket'] & { encrypted?: boolean };
  const trustsProxy = trustsPeer(platform.app, socket?.remoteAddress);
  const protocol = trustsProxy && platform.protocol ? platform.protocol : socket?.encrypted ? 'https' : 'http';
  return {
    protocol: protocol === 'https' ? 'https' : 'http',
    host: authorityOrUndefined((trustsProxy && platform.host) || raw.headers.host),
    remoteAddress: (trustsProxy && platform.ip) || socket?.remoteAddress,
    trustsProxy,
  };
}

// A host name or IP literal and an optional port, with no character that ends the authority
// of a URL: a Host of `x/admin` or `x?` would otherwise move the path fetch apps see.
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=-]+)(?::\d{1,5})?$/;

/** The client's Host only when it is one; otherwise the gateway falls back to the socket's address. */
function authorityOrUndefined(host: string | undefined): string | undefined {
  return host !== undefined && AUTHORITY.test(host) ? host : undefined;
}

/**
 * Whether an Express app's `trust proxy` setting trusts the peer at `address`: only then do
 * the forwarding headers it sends count. Express compiles the setting (true, addresses,
 * subnets, a hop count) into a function.
 */
export function trustsPeer(app: { get?(setting: string): unknown } | undefined, address: string | undefined): boolean {
  const trustFn = app?.get?.('trust proxy fn');
  return typeof trustFn === 'function'
    ? Boolean((trustFn as (address: string | undefined, hop: number) => boolean)(address, 0))
    : Boolean(app?.get?.('trust proxy'));
}
