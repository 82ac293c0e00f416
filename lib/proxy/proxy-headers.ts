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
  let connection = '';
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === 'connection') connection += raw[i + 1] + ',';
  const dropped = hopByHopNames(connection);
  // The identity header here is the gateway's own (client copies are already gone): a client
  // that names it in Connection must not make the upstream see an anonymous request.
  dropped.delete(exchange.identityHeader);
  const headers: string[] = ['host', settings.host];
  const incoming = new Map<string, string>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (dropped.has(name) || UNDICI_MANAGED.has(name)) continue;
    if (FORWARDED.has(name)) {
      if (settings.xForwarded) {
        const seen = incoming.get(name);
        incoming.set(name, seen === undefined ? raw[i + 1] : `${seen}, ${raw[i + 1]}`);
        continue;
      }
    }
    headers.push(raw[i], raw[i + 1]);
  }
  if (settings.xForwarded) {
    const peer = exchange.req.socket?.remoteAddress ?? exchange.remoteAddress ?? '';
    const chain = settings.trustsProxy ? incoming.get('x-forwarded-for') : undefined;
    const outerPrefix = settings.trustsProxy ? (incoming.get('x-forwarded-prefix') ?? '').replace(/\/+$/, '') : '';
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
    const name = raw[i].toString().toLowerCase();
    const item = raw[i + 1];
    // undici keeps the spaces and tabs after a value; `Headers` took them off.
    const value = withoutOws(typeof item === 'string' ? item : item.toString('latin1'));
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else if (!HOP_BY_HOP_HEADERS.has(name)) appendPair(pairs, name, value);
  }
  return withoutConnectionListed(pairs, connection);
}
