import { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
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

/**
 * A fresh IncomingMessage for one call of an app: its own URL, headers and body stream, so the
 * client's request object is never mutated and can be handed to several apps in turn.
 */
export function createInnerRequest(init: InnerRequestInit): IncomingMessage {
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
  inner.on('error', () => undefined);

  const state = inner as IncomingMessage & { complete: boolean; aborted: boolean };
  const finish = () => {
    state.complete = true;
    inner.push(null);
  };
  if (!body) {
    finish();
  } else {
    body.on('data', (chunk: Buffer) => {
      if (!inner.push(chunk)) body.pause();
    });
    body.once('end', finish);
    body.once('error', (error) => inner.destroy(error));
    body.pause();
  }
  // Own properties: IncomingMessage's versions would resume or destroy the shared socket.
  inner._read = () => {
    body?.resume();
  };
  // As Node's own: destroyed before it was read to its end (a GET the app never read included),
  // the request was aborted.
  inner._destroy = (error, callback) => {
    if (!inner.readableEnded || !state.complete) {
      state.aborted = true;
      inner.emit('aborted');
    }
    if (!state.complete) body?.destroy();
    callback(error);
  };
  return inner;
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
