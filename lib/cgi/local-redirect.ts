import type { GatewayExchange } from '../apps/gateway-app.js';
import type { GatewayResponse } from '../http/gateway-response.js';
import { splitUrl } from '../http/path-info.js';

/** `'client'`: a local redirect reaches the client as a 302. `'follow'`: the gateway serves it. */
export type LocalRedirects = 'client' | 'follow';

const MAX_HOPS = 10;
const hops = new WeakMap<GatewayExchange, number>();

/**
 * RFC 3875 6.2.2: the script asked the server to serve another path instead. Under the mount
 * prefix, the same app serves it as a GET without body; anywhere else (or after too many
 * hops) the client gets the redirect.
 */
export async function followLocalRedirect(
  location: string,
  response: GatewayResponse,
  exchange: GatewayExchange,
  call: (exchange: GatewayExchange) => Promise<GatewayResponse>,
): Promise<GatewayResponse> {
  const { path, search } = splitUrl(location);
  const prefix = exchange.prefix;
  const inside = path === prefix || path.startsWith(prefix + '/');
  const hop = (hops.get(exchange) ?? 0) + 1;
  if (!inside || hop > MAX_HOPS) return response;
  response.body?.destroy();
  const next: GatewayExchange = {
    ...exchange,
    method: 'GET',
    pathInfo: path.slice(prefix.length),
    search,
    originalUrl: location,
    rawHeaders: withoutBodyHeaders(exchange.rawHeaders),
    bodyIsLive: true,
    body: () => null,
  };
  hops.set(next, hop);
  return call(next);
}

function withoutBodyHeaders(raw: readonly string[]): string[] {
  const result: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name !== 'content-length' && name !== 'content-type' && name !== 'transfer-encoding') {
      result.push(raw[i], raw[i + 1]);
    }
  }
  return result;
}
