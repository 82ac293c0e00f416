import type { GatewayExchange } from '../apps/gateway-app.js';
import { appendPair, type HeaderPairs, withoutConnectionListed, withoutOws } from '../http/header-pairs.js';
import { HOP_BY_HOP_HEADERS, hopByHopNames } from '../http/hop-by-hop.js';

// undici refuses these request headers (it frames the message itself).
const UNDICI_MANAGED = new Set(['expect', 'host']);
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-prefix', 'forwarded']);

/** How the request headers for an upstream are built. */
export interface ProxyHeaderSettings {
  /** Host header sent upstream. */
  host: string;
  /** Add X-Forwarded-For/Proto/Host/Prefix. */
  xForwarded: boolean;
  /** Whether the Nest app trusts its own proxy (so client-sent X-Forwarded-* are real). */
  trustsProxy: boolean;
}

/**
 * The request headers an upstream gets: hop-by-hop ones (and those named in Connection)
 * removed, X-Forwarded-* describing the client's request (chained behind a trusted proxy),
 * the identity header as the gateway set it.
 */
export function upstreamRequestHeaders(exchange: GatewayExchange, settings: ProxyHeaderSettings): string[] {
  const raw = exchange.rawHeaders;
  const names: string[] = [];
  let connection = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    names.push(name);
    if (name === 'connection') connection = connection === '' ? raw[i + 1] : `${connection},${raw[i + 1]}`;
  }
  const dropped = hopByHopNames(connection);
  // The identity header here is the gateway's own (client copies are already gone): a client
  // that names it in Connection must not make the upstream see an anonymous request.
  const identity = exchange.identityHeader;
  const headers: string[] = ['host', settings.host];
  // Of the client's own X-Forwarded-*, only these two are chained (behind a trusted proxy).
  let forwardedFor: string | undefined;
  let forwardedPrefix: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = names[i >> 1];
    if ((dropped.has(name) && name !== identity) || UNDICI_MANAGED.has(name)) continue;
    if (settings.xForwarded && FORWARDED.has(name)) {
      const value = raw[i + 1];
      if (name === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      else if (name === 'x-forwarded-prefix') forwardedPrefix = forwardedPrefix === undefined ? value : `${forwardedPrefix}, ${value}`;
      continue;
    }
    headers.push(raw[i], raw[i + 1]);
  }
  if (settings.xForwarded) {
    const peer = exchange.req.socket?.remoteAddress ?? exchange.remoteAddress ?? '';
    const chain = settings.trustsProxy ? forwardedFor : undefined;
    const outerPrefix = settings.trustsProxy ? (forwardedPrefix ?? '').replace(/\/+$/, '') : '';
    headers.push('x-forwarded-for', chain ? `${chain}, ${peer}` : peer);
    headers.push('x-forwarded-proto', exchange.protocol);
    headers.push('x-forwarded-host', exchange.host);
    if (outerPrefix || exchange.prefix) headers.push('x-forwarded-prefix', outerPrefix + exchange.prefix);
  }
  return headers;
}

/** The upstream's response headers for the client: hop-by-hop ones removed, repeats kept. */
export function clientResponsePairs(raw: readonly Buffer[] | readonly string[]): HeaderPairs {
  const pairs: HeaderPairs = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1').toLowerCase();
    const item = raw[i + 1];
    // undici keeps the spaces and tabs after a value; `Headers` took them off.
    const value = withoutOws(typeof item === 'string' ? item : item.toString('latin1'));
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else if (!HOP_BY_HOP_HEADERS.has(name)) appendPair(pairs, name, value);
  }
  return withoutConnectionListed(pairs, connection);
}
