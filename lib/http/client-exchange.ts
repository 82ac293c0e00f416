import type { Logger } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';

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
 * aborts it when the client goes away, are made only when something asks for `signal`: a
 * mounted Node or fetch app that answers on the client's own response never does, and
 * every request would otherwise pay for both.
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
  readonly #callerSignal: AbortSignal | undefined;
  #controller: AbortController | undefined;

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
    this.#callerSignal = init.callerSignal;
    Object.defineProperty(this, 'signal', LAZY_SIGNAL);
  }

  /** The signal, watching the client and the caller from now on. */
  watchedSignal(): AbortSignal {
    return (this.#controller ??= this.#watch()).signal;
  }

  /** Abandons the call (a timeout, a failure): apps watching the signal stop. */
  abort(reason: unknown): void {
    (this.#controller ??= new AbortController()).abort(reason);
  }

  #watch(): AbortController {
    const controller = new AbortController();
    const res = (this.req as IncomingMessage & { res?: ServerResponse }).res;
    if (res) {
      // Left on until the response closes, also after an abort (aborting twice is a no-op):
      // an 'abort' listener to take it off would cost more than it saves.
      if (res.closed) clientGone(controller, res);
      else res.once('close', () => clientGone(controller, res));
    }
    const caller = this.#callerSignal;
    if (caller?.aborted) controller.abort(caller.reason);
    else caller?.addEventListener('abort', () => controller.abort(caller.reason), { once: true });
    return controller;
  }
}

function clientGone(controller: AbortController, res: ServerResponse): void {
  if (!res.writableFinished) controller.abort(new Error('Client disconnected'));
}
