import type { Logger } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { GatewayResponse } from '../http/gateway-response.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';

/**
 * One request as a gateway app receives it: the WSGI environ of this library. Every app kind
 * (Node, fetch, CGI, FastCGI, upstream HTTP) is an adapter that turns an exchange into a
 * GatewayResponse.
 */
export interface GatewayExchange {
  /** The client's request (raw Node object). Apps must not mutate it. */
  readonly req: IncomingMessage;
  readonly method: string;
  /** Request headers as flat name/value pairs, after the caller's changes. */
  readonly rawHeaders: readonly string[];
  /** The mount prefix (SCRIPT_NAME): `''` or `/…` without a trailing slash. */
  readonly prefix: string;
  /** PATH_INFO: `''` or `/…`, undecoded, without the query. */
  readonly pathInfo: string;
  /** `?…` or `''`, raw. */
  readonly search: string;
  /** The URL the client asked for, path and query, unchanged. */
  readonly originalUrl: string;
  /** `http` or `https`, as the client used it. */
  readonly protocol: 'http' | 'https';
  /** Host (and port) the client addressed. */
  readonly host: string;
  /** The client's address (the forwarded one behind a trusted proxy). */
  readonly remoteAddress: string | undefined;
  /** The principal the Nest app authenticated (REMOTE_USER), or undefined for anonymous. */
  readonly remoteUser: string | undefined;
  /** The header that carries `remoteUser` to Node, fetch and upstream apps (already set in rawHeaders). */
  readonly identityHeader: string;
  readonly env: GatewayEnv;
  /** Aborts when the client goes away or the call is abandoned (timeout, caller's signal). */
  readonly signal: AbortSignal;
  /** Used in logs and errors. */
  readonly name: string;
  readonly logger: Logger;
  /** Takes the request body: a stream, or null when there is none. Throws if it is gone. */
  body(): Readable | null;
  /** Whether the body can be streamed straight from the client's request. */
  readonly bodyIsLive: boolean;
}

/** Anything that can be called with an exchange: the one abstraction at the centre. */
export interface GatewayApp {
  readonly kind: string;
  /** Runs the app; resolves as soon as its headers are known, with a lazy body. */
  call(exchange: GatewayExchange): Promise<GatewayResponse>;
  /**
   * Optional fast path for mounts: serve the client's response directly. Resolves when the app
   * is done with the request; rejects (before headers) to let Nest answer.
   */
  serve?(exchange: GatewayExchange, res: ServerResponse): Promise<void>;
  /**
   * Optional: takes over the connection of an upgrade request (WebSocket) that Nest let
   * through. Resolves once the app owns it; rejects (before anything was written) to let the
   * gateway answer with an error.
   */
  upgrade?(exchange: GatewayExchange, socket: Duplex, head: Buffer): Promise<void>;
}

export const GATEWAY_APP = Symbol.for('nest-gateway.app');

export type Branded<T extends GatewayApp> = T & { readonly [GATEWAY_APP]: true };

export function brand<T extends GatewayApp>(app: T): Branded<T> {
  return Object.defineProperty(app, GATEWAY_APP, { value: true }) as Branded<T>;
}

export function isGatewayApp(value: unknown): value is GatewayApp {
  return typeof value === 'object' && value !== null && GATEWAY_APP in value;
}
