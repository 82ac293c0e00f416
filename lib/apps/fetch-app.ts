import { Readable } from 'node:stream';
import { GatewayResponse } from '../http/gateway-response.js';
import { HOP_BY_HOP_HEADERS } from '../http/hop-by-hop.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';
import { brand, type GatewayApp, type GatewayExchange } from './gateway-app.js';

/** A WHATWG fetch handler: Hono's `app.fetch`, itty-router, a Cloudflare-style worker. */
export type FetchHandler = {
  handler(request: Request, env: GatewayEnv): Response | Promise<Response>;
}['handler'];

/** Wraps a fetch handler (or an object with `.fetch`, such as a Hono app) as a gateway app. */
export function fetchApp(handler: FetchHandler | { fetch: FetchHandler }): GatewayApp {
  const fetch = typeof handler === 'function' ? handler : handler.fetch.bind(handler);
  return brand<GatewayApp>({
    kind: 'fetch',
    call: async (exchange) => {
      const env = exchange.remoteUser === undefined ? exchange.env : { ...exchange.env, REMOTE_USER: exchange.remoteUser };
      return toGatewayResponse(await fetch(toRequest(exchange), env), exchange);
    },
  });
}

/** The Request the app would get at the root of its own server: absolute URL, streamed body. */
function toRequest(exchange: GatewayExchange): Request {
  const headers = new Headers();
  const raw = exchange.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!HOP_BY_HOP_HEADERS.has(name)) headers.append(name, raw[i + 1]);
  }
  const body = exchange.method === 'GET' || exchange.method === 'HEAD' ? null : exchange.body();
  const url = `${exchange.protocol}://${exchange.host}${exchange.pathInfo || '/'}${exchange.search}`;
  return new Request(url, {
    method: exchange.method,
    headers,
    body: body ? (Readable.toWeb(body) as ReadableStream<Uint8Array>) : null,
    signal: exchange.signal,
    duplex: 'half',
  } as RequestInit);
}

function toGatewayResponse(response: Response, exchange: GatewayExchange): GatewayResponse {
  let body: Readable | null = null;
  if (response.body && exchange.method !== 'HEAD') {
    body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
  } else {
    void response.body?.cancel().catch(() => undefined);
  }
  const headers = new Headers();
  for (const [name, value] of response.headers) headers.append(name, value);
  return new GatewayResponse({ status: response.status, statusText: response.statusText, headers, body });
}
