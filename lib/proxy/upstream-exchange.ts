import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { AbortWatch } from '../http/abort-watch.js';
import { BodyHold, closedBeforeEnd, PushedBody } from '../http/body-source.js';
import { toError } from '../http/failures.js';
import { type Settle, settleOnce } from '../http/settle-once.js';

/** An upstream's answer, as soon as its head has arrived. */
export interface UpstreamResponse {
  status: number;
  statusText: string;
  /** Names and values as they came, alternating. */
  rawHeaders: Buffer[];
  /** Null for HEAD. Destroying it before its end aborts the upstream request. */
  body: Readable | null;
}

/**
 * Sends one request through an undici dispatcher and resolves with the response head.
 *
 * Written on `dispatch` rather than `Pool.request`, which wraps the same in an AsyncResource,
 * parses the head into objects twice and gives a body stream with fetch's mixins: about a
 * third more CPU per request, none of it used by a proxy (bench/findings.md, fifteenth round).
 * The exchange's abort ends the request however far it got: queued, sent, or mid-body.
 */
export function dispatchUpstream(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, abort: AbortWatch): Promise<UpstreamResponse> {
  // undici would open a tunnel, which no handler here takes: the call would never settle.
  if (options.method === 'CONNECT') {
    destroyStream(options.body, undefined);
    return Promise.reject(new TypeError('CONNECT cannot be sent to an upstream as a request'));
  }
  return new Promise((resolve, reject) => {
    dispatcher.dispatch(options, new UpstreamHandler(options, abort, resolve, reject));
  });
}

/** A small answer usually arrives whole with its head: the sender then takes it in one write. */
class UpstreamBody extends PushedBody {
  constructor(private readonly handler: UpstreamHandler) {
    // undici's own: a body under 64 KiB completes, and frees its connection, even if nobody
    // reads it (a caller that returns something else); Node 20's default would hold it at 16.
    super({ highWaterMark: 64 * 1024 });
  }

  override _read(): void {
    this.handler.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.handler.bodyDestroyed(error);
    callback(error);
  }
}

class UpstreamHandler implements Dispatcher.DispatchHandler {
  /** undici makes a new controller each time the request is (re)started on a connection. */
  private controller: Dispatcher.DispatchController | undefined;
  /** Weakly once the body has paused: see `pause`. */
  private body: BodyHold<UpstreamBody> | undefined;
  private over = false;
  private readonly unwatch: () => void;

  /** Let go of once settled: the promise they settle holds the response, and with it the body. */
  private readonly takeSettle: () => Settle<UpstreamResponse> | undefined;

  constructor(
    private readonly options: Dispatcher.DispatchOptions,
    private readonly abort: AbortWatch,
    resolve: (response: UpstreamResponse) => void,
    reject: (reason: unknown) => void,
  ) {
    this.takeSettle = settleOnce(resolve, reject);
    this.unwatch = abort.whenAborted((reason) => this.aborted(reason));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abort.aborted) controller.abort(asError(this.abort.reason));
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, _headers: unknown, statusText?: string): void {
    // Informational heads (103 Early Hints) are not passed on.
    if (status < 200) return;
    const body = this.options.method === 'HEAD' ? null : new UpstreamBody(this);
    if (body) this.body = new BodyHold(body, () => this.bodyDestroyed(new Error('The response body was dropped unread')));
    this.takeSettle()!.resolve({ status, statusText: statusText ?? '', rawHeaders: controller.rawHeaders as Buffer[], body });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const body = this.currentBody();
    if (body && !body.push(chunk)) this.pause(controller);
  }

  onResponseEnd(): void {
    this.finish();
    this.currentBody()?.markEnded();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.finish();
    // undici leaves a request body it was given as it is on a failure; its reader must stop.
    destroyStream(this.options.body, error);
    const settle = this.takeSettle();
    if (settle) settle.reject(error);
    else this.currentBody()?.destroy(error);
  }

  resume(): void {
    this.body?.reading();
    this.controller?.resume();
  }

  bodyDestroyed(error: Error | null): void {
    if (!this.over) this.controller?.abort(error ?? closedBeforeEnd());
  }

  private currentBody(): UpstreamBody | undefined {
    return this.body?.body;
  }

  /**
   * Stops the upstream while the body's reader has a buffer's worth unread. A body its caller
   * dropped unread lets go of the connection once collected, instead of keeping it paused for
   * good: a paused parser has no body timeout.
   */
  private pause(controller: Dispatcher.DispatchController): void {
    controller.pause();
    this.body!.full();
  }

  private aborted(reason: unknown): void {
    const body = this.currentBody();
    if (body) body.destroy(asError(reason));
    else this.controller?.abort(asError(reason));
  }

  private finish(): void {
    if (this.over) return;
    this.over = true;
    this.unwatch();
    this.body?.done();
  }
}

function destroyStream(body: Dispatcher.DispatchOptions['body'], error: Error | undefined): void {
  if (body instanceof Readable && !body.destroyed) body.on('error', noop).destroy(error);
}

function asError(reason: unknown): Error {
  return toError(reason ?? 'Request aborted');
}

function noop(): void {}
