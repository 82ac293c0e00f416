import type { Logger } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';
import { type AbortWatch, ExchangeAbort, signalWatch } from './abort-watch.js';

/** What an exchange is made of, apart from its signal. */
export type ExchangeInit = Omit<GatewayExchange, 'signal' | 'body'> & {
  /** Takes the request body (see `GatewayExchange.body`). */
  readonly takeBody: () => Readable | null;
  /** The caller's own signal (`CallOptions.signal`): its abort aborts the exchange. */
  readonly callerSignal: AbortSignal | undefined;
};

/**
 * `signal`, made on first read. An own enumerable property, so that an app that derives an
 * exchange with `{ ...exchange, pathInfo }` still passes a signal on; one shared getter, so
 * that every exchange keeps the same hidden class.
 */
const LAZY_SIGNAL: PropertyDescriptor = {
  enumerable: true,
  get(this: ClientExchange) {
    return this.watchedSignal();
  },
};

/**
 * One client request as gateway apps see it. Its AbortController, and the listener that
 * aborts it when the client goes away, are made only when something asks for them: a
 * mounted Node or fetch app that answers on the client's own response never does, the
 * gateway's own apps use the cheaper `abortWatch`, and every request would otherwise pay.
 */
export class ClientExchange implements GatewayExchange {
  /** Aborts when the client goes away, the caller's signal aborts, or the call is abandoned. */
  declare readonly signal: AbortSignal;
  readonly req: IncomingMessage;
  readonly method: string;
  readonly rawHeaders: readonly string[];
  readonly prefix: string;
  readonly pathInfo: string;
  readonly search: string;
  readonly originalUrl: string;
  readonly protocol: 'http' | 'https';
  readonly host: string;
  readonly remoteAddress: string | undefined;
  readonly remoteUser: string | undefined;
  readonly identityHeader: string;
  readonly env: GatewayEnv;
  readonly name: string;
  readonly logger: Logger;
  readonly bodyIsLive: boolean;
  /** Takes the request body: a stream, or null when there is none. Throws if it is gone. */
  readonly body: () => Readable | null;
  readonly #abort: ExchangeAbort;

  constructor(init: ExchangeInit) {
    this.req = init.req;
    this.method = init.method;
    this.rawHeaders = init.rawHeaders;
    this.prefix = init.prefix;
    this.pathInfo = init.pathInfo;
    this.search = init.search;
    this.originalUrl = init.originalUrl;
    this.protocol = init.protocol;
    this.host = init.host;
    this.remoteAddress = init.remoteAddress;
    this.remoteUser = init.remoteUser;
    this.identityHeader = init.identityHeader;
    this.env = init.env;
    this.name = init.name;
    this.logger = init.logger;
    this.bodyIsLive = init.bodyIsLive;
    this.body = init.takeBody;
    this.#abort = new ExchangeAbort((init.req as IncomingMessage & { res?: ServerResponse }).res, init.callerSignal);
    Object.defineProperty(this, 'signal', LAZY_SIGNAL);
  }

  /** The signal, watching the client and the caller from now on. */
  watchedSignal(): AbortSignal {
    return this.#abort.signal();
  }

  /** The abort state without the signal's cost (see `abortWatchOf`). */
  get abortWatch(): AbortWatch {
    return this.#abort;
  }

  /** Abandons the call (a timeout, a failure): apps watching the signal stop. */
  abort(reason: unknown): void {
    this.#abort.abort(reason);
  }
}

/**
 * What the gateway's own apps wait on to hear of an abort. An exchange an app derived with
 * `{ ...exchange, pathInfo }` is watched through its signal.
 */
export function abortWatchOf(exchange: GatewayExchange): AbortWatch {
  return exchange instanceof ClientExchange ? exchange.abortWatch : signalWatch(exchange.signal);
}
