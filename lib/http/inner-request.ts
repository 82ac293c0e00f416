import { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { ignoreError } from './body-source.js';
import { setHeaderLines } from './header-lines.js';
import { constructWithPrototype } from './with-prototype.js';

export interface InnerRequestInit {
  /** The client's request: its socket and HTTP version are shared, nothing else. */
  readonly outer: IncomingMessage;
  readonly method: string;
  /** Path and query as the app should see them (`/x?y`). */
  readonly url: string;
  readonly rawHeaders: readonly string[];
  readonly body: Readable | null;
  /** Extra own properties (baseUrl, originalUrl, gatewayEnv...). */
  readonly extras: Record<string, unknown>;
  /** The prototype the app gives its requests (Express's `app.request`), when known. */
  readonly prototype?: object;
}

/** An inner request, and what lets go of the client's body once the call is done with it. */
export interface InnerRequestHandle {
  readonly request: IncomingMessage;
  /**
   * Stops reading the client's own request for this call (listeners off, no pause of its own
   * left in force), so that a later call, or Node's server, can take the rest. Idempotent.
   */
  releaseBody(): void;
}

/**
 * A fresh IncomingMessage for one call of an app: its own URL, headers and body stream, so the
 * client's request object is never mutated and can be handed to several apps in turn.
 */
export function createInnerRequest(init: InnerRequestInit): IncomingMessage {
  return createReleasableInnerRequest(init).request;
}

export function createReleasableInnerRequest(init: InnerRequestInit): InnerRequestHandle {
  const { outer, body } = init;
  const inner = constructWithPrototype(IncomingMessage, init.prototype, outer.socket);
  inner.method = init.method;
  inner.url = init.url;
  inner.httpVersionMajor = outer.httpVersionMajor;
  inner.httpVersionMinor = outer.httpVersionMinor;
  inner.httpVersion = outer.httpVersion;
  setHeaderLines(inner, [...init.rawHeaders], headersFromRaw(init.rawHeaders));
  Object.assign(inner, init.extras);
  // The app may not listen for errors; a broken client upload must not crash the process.
  inner.on('error', ignoreError);

  const state = inner as IncomingMessage & { complete: boolean; aborted: boolean };
  const finish = () => {
    state.complete = true;
    inner.push(null);
  };
  // The client's own request is borrowed, not owned: destroying it would reset the client's
  // connection, and the next call (or Node's server) still needs what this call leaves.
  const borrowed = body !== null && body === (outer as Readable);
  let attached = false;
  let released = false;
  const onData = (chunk: Buffer) => {
    if (!inner.push(chunk)) body!.pause();
  };
  const onEnd = () => {
    detach();
    finish();
  };
  const onError = (error: Error) => inner.destroy(error);
  const detach = () => {
    body!.off('data', onData).off('end', onEnd).off('error', onError);
  };
  const attach = () => {
    attached = true;
    body!.on('data', onData).once('end', onEnd).once('error', onError);
  };
  if (!body) finish();
  else if (!borrowed) {
    attach();
    body.pause();
  }
  // Own properties: IncomingMessage's versions would resume or destroy the shared socket.
  // The client's request is listened to only once the app reads: one that never does leaves it
  // untouched, for the next call or for Node's server to drain.
  inner._read = () => {
    if (!body || released) return;
    if (!attached) attach();
    body.resume();
  };
  const releaseBody = () => {
    if (!borrowed || released) return;
    released = true;
    if (!attached || state.complete) return;
    detach();
    // Bytes nobody has taken yet stay for the next reader; once some were read, the body can
    // no longer be had whole, and the rest is drained (and recorded for replay when within
    // bodyReplayLimit) as Node's server drains a body left unread.
    if (body.readableDidRead) body.resume();
    else body.pause();
  };
  // As Node's own: destroyed before it was read to its end (a GET the app never read included),
  // the request was aborted.
  inner._destroy = (error, callback) => {
    if (!inner.readableEnded || !state.complete) {
      state.aborted = true;
      inner.emit('aborted');
    }
    if (borrowed) releaseBody();
    else if (!state.complete) body?.destroy();
    callback(error);
  };
  return { request: inner, releaseBody };
}

/**
 * Node's own folding rules: repeats joined with ', ', cookies with '; ', set-cookie as an array.
 * A plain object, as Node's own `req.headers` is (and as fast): only an own string or array
 * counts as a repeat, so names such as `constructor` are headers like any other, and
 * `__proto__` is dropped, as Node does.
 */
export function headersFromRaw(raw: readonly string[]): IncomingMessage['headers'] {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    const previous = Object.hasOwn(headers, name) ? headers[name] : undefined;
    if (previous === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[name] = previous + (name === 'cookie' ? '; ' : ', ') + value;
  }
  return headers as IncomingMessage['headers'];
}
