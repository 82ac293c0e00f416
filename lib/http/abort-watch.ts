import type { ServerResponse } from 'node:http';

/**
 * Whether, and why, an exchange was aborted, and a way to hear of it. The gateway's own apps
 * wait on this rather than on the exchange's AbortSignal: an AbortController and an
 * EventTarget listener cost about 70 k instructions per request, which most requests, served
 * to the end, never need.
 */
export interface AbortWatch {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Calls `listener` once the exchange aborts (at once if it has); returns what takes it off. */
  whenAborted(listener: (reason: unknown) => void): () => void;
}

const nothing = () => undefined;

/**
 * The abort state of one client exchange: the client going away, the caller's signal, or the
 * gateway abandoning the call. Watches the client only once something asks; the AbortSignal
 * is made only when an app reads it.
 */
export class ExchangeAbort implements AbortWatch {
  reason: unknown = undefined;
  #aborted = false;
  #controller: AbortController | undefined;
  #listeners: Array<(reason: unknown) => void> | undefined;
  #watching = false;
  #resClosed = false;
  #onCallerAbort: (() => void) | undefined;

  constructor(
    private readonly res: ServerResponse | undefined,
    private readonly callerSignal: AbortSignal | undefined,
  ) {}

  /** Whether it has aborted; a client already gone counts from the first question on. */
  get aborted(): boolean {
    if (!this.#aborted) {
      this.#watch();
      const caller = this.callerSignal;
      if (!this.#aborted && caller?.aborted) this.abort(caller.reason);
    }
    return this.#aborted;
  }

  signal(): AbortSignal {
    let controller = this.#controller;
    if (!controller) {
      controller = this.#controller = new AbortController();
      if (this.aborted) controller.abort(this.reason);
      else this.#followCaller();
    }
    return controller.signal;
  }

  whenAborted(listener: (reason: unknown) => void): () => void {
    if (this.aborted) {
      listener(this.reason);
      return nothing;
    }
    const listeners = (this.#listeners ??= []);
    listeners.push(listener);
    this.#followCaller();
    return () => {
      // After the abort the list is done with (and may be being walked).
      if (this.#listeners !== listeners) return;
      const at = listeners.indexOf(listener);
      if (at === -1) return;
      listeners.splice(at, 1);
      this.#followCaller();
    };
  }

  /** Aborts with `reason`; aborting again does nothing. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.reason = reason;
    this.#followCaller();
    this.#controller?.abort(reason);
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) for (const listener of listeners) listener(reason);
  }

  #watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    const res = this.res;
    if (!res) return;
    if (res.closed) {
      this.#resClosed = true;
      this.#clientGone(res);
      return;
    }
    // `on`, not `once`: 'close' comes once, and `once` binds a wrapper. Left on after an
    // abort too: taking it off would cost more.
    res.on('close', () => {
      this.#resClosed = true;
      this.#followCaller();
      this.#clientGone(res);
    });
  }

  /**
   * Listens to the caller's signal while something waits on this exchange: a call that
   * outlives the client's response still hears it, and a long-lived signal (an app-wide
   * shutdown signal) keeps no listener, holding its request, per finished call. The
   * AbortSignal's readers cannot say when they are done: it listens until the response closes.
   */
  #followCaller(): void {
    const caller = this.callerSignal;
    if (!caller) return;
    const needed = !this.#aborted && ((this.#listeners?.length ?? 0) > 0 || (this.#controller !== undefined && !this.#resClosed));
    if (needed && !this.#onCallerAbort) {
      const onAbort = (this.#onCallerAbort = () => this.abort(caller.reason));
      caller.addEventListener('abort', onAbort, { once: true });
    } else if (!needed && this.#onCallerAbort) {
      caller.removeEventListener('abort', this.#onCallerAbort);
      this.#onCallerAbort = undefined;
    }
  }

  #clientGone(res: ServerResponse): void {
    if (!res.writableFinished) this.abort(new Error('Client disconnected'));
  }
}

/** An AbortSignal seen as an AbortWatch. */
export function signalWatch(signal: AbortSignal): AbortWatch {
  return {
    get aborted() {
      return signal.aborted;
    },
    get reason() {
      return signal.reason as unknown;
    },
    whenAborted(listener) {
      if (signal.aborted) {
        listener(signal.reason);
        return nothing;
      }
      const onAbort = () => listener(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      return () => signal.removeEventListener('abort', onAbort);
    },
  };
}
