import { Readable } from 'node:stream';
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';
import { webStreamOf } from './web-body.js';

/** What a fetch app's Request is made of. */
export interface RequestSource {
  /** Absolute URL. */
  readonly url: string;
  readonly method: string;
  /** Flat name/value pairs; hop-by-hop headers are left out. */
  readonly rawHeaders: readonly string[];
  /** The body stream, or null for none. */
  readonly body: Readable | null;
  /** Holds the request's signal; read only when the app asks for it (making one has a cost). */
  readonly signalSource: { readonly signal: AbortSignal };
}

/**
 * A Request for `source`, streamed body and all (`duplex: 'half'`). Where the runtime allows
 * it, the Request is lazy: `method`, `url`, `headers`, `signal` and a missing `body` cost next
 * to nothing, and a real Request (with its web stream and its own signal) is only built once
 * anything else is used. Most handlers read no more than the method, the URL and a header or two.
 */
export function createRequest(source: RequestSource): Request {
  return lazyRequestsWork() ? (new LazyRequest(source) as unknown as Request) : realRequest(source, requestHeaders(source));
}

function realRequest(source: RequestSource, headers: Headers): Request {
  return new Request(source.url, {
    method: source.method,
    headers,
    body: source.body ? webStreamOf(source.body) : null,
    signal: source.signalSource.signal,
    duplex: 'half',
  } as RequestInit);
}

function requestHeaders(source: RequestSource): Headers {
  const headers = new Headers();
  const raw = source.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!HOP_BY_HOP_HEADERS.has(name)) headers.append(name, raw[i + 1]);
  }
  return headers;
}

/**
 * Stands in for a Request (`instanceof Request` holds) until something needs a real one; from
 * then on, the real one answers everything, so the app sees one consistent request. Reading
 * the whole body (`text()`, `json()`, `arrayBuffer()`, `bytes()`) takes the Node stream
 * directly, without a web stream in between.
 */
class LazyRequest {
  readonly #source: RequestSource;
  #headers: Headers | undefined;
  #real: Request | undefined;
  /** The body was read directly: a real Request built later must show it used. */
  #bodyTaken = false;

  constructor(source: RequestSource) {
    this.#source = source;
  }

  /** The real Request, built on first need from what the app has seen so far. */
  static materialise(lazy: LazyRequest): Request {
    if (!lazy.#real) {
      if (lazy.#bodyTaken) {
        lazy.#real = realRequest({ ...lazy.#source, body: Readable.from([]) }, lazy.headers);
        // Disturbs the empty stream at once: the real Request is as used as this one.
        void lazy.#real.arrayBuffer();
      } else lazy.#real = realRequest(lazy.#source, lazy.headers);
    }
    return lazy.#real;
  }

  get method(): string {
    return this.#source.method;
  }

  get url(): string {
    return this.#source.url;
  }

  get headers(): Headers {
    if (this.#real) return this.#real.headers;
    return (this.#headers ??= requestHeaders(this.#source));
  }

  get signal(): AbortSignal {
    return this.#real ? this.#real.signal : this.#source.signalSource.signal;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (!this.#real && !this.#source.body) return null;
    return LazyRequest.materialise(this).body;
  }

  get bodyUsed(): boolean {
    return this.#real ? this.#real.bodyUsed : this.#bodyTaken;
  }

  text(): Promise<string> {
    const body = this.#takeBody();
    return body ? body.then(utf8) : LazyRequest.materialise(this).text();
  }

  json(): Promise<unknown> {
    const body = this.#takeBody();
    return body ? body.then((bytes) => JSON.parse(utf8(bytes)) as unknown) : LazyRequest.materialise(this).json();
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    const body = this.#takeBody();
    return body ? body.then((bytes) => bytes.buffer as ArrayBuffer) : LazyRequest.materialise(this).arrayBuffer();
  }

  bytes(): Promise<Uint8Array> {
    return this.#takeBody() ?? (LazyRequest.materialise(this) as Request & { bytes(): Promise<Uint8Array> }).bytes();
  }

  /** The whole body read from the Node stream; undefined when the real Request must answer. */
  #takeBody(): Promise<Uint8Array> | undefined {
    const body = this.#source.body;
    if (this.#real || this.#bodyTaken || !body) return undefined;
    this.#bodyTaken = true;
    return readAll(body);
  }
}

/** Every byte of `stream` in an ArrayBuffer of its own; rejects if the stream fails or is cut off. */
function readAll(stream: Readable): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      chunks.push(bytes);
      length += bytes.length;
    };
    const onEnd = () => {
      cleanup();
      const bytes = new Uint8Array(length);
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.length;
      }
      resolve(bytes);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => onError(new TypeError('The request body was cut off'));
    const cleanup = () => {
      stream.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    if (stream.destroyed) {
      onClose();
      return;
    }
    stream.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

const decoder = new TextDecoder();

/** UTF-8 as the fetch spec decodes a body: a leading BOM dropped, invalid bytes replaced. */
function utf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * Everything else a Request has, including the runtime's internal symbol keys (its Request
 * constructor and fetch() read those from any Request they are given: `new Request(request,
 * init)`, as Hono's bodyLimit does), is forwarded to the real Request.
 */
function forwardToRealRequest(): void {
  const prototype = LazyRequest.prototype as unknown as Record<PropertyKey, unknown>;
  const internalKeys = Object.getOwnPropertySymbols(new Request('http://localhost/'));
  for (const key of [...Reflect.ownKeys(Request.prototype), ...internalKeys]) {
    if (key === 'constructor' || Object.prototype.hasOwnProperty.call(prototype, key)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(Request.prototype, key);
    if (descriptor && typeof descriptor.value === 'function') {
      const method = descriptor.value as (...args: unknown[]) => unknown;
      Object.defineProperty(prototype, key, {
        configurable: true,
        writable: true,
        value: function (this: LazyRequest, ...args: unknown[]) {
          return Reflect.apply(method, LazyRequest.materialise(this), args);
        },
      });
    } else if (!descriptor || descriptor.get) {
      Object.defineProperty(prototype, key, {
        configurable: true,
        get(this: LazyRequest) {
          return (LazyRequest.materialise(this) as unknown as Record<PropertyKey, unknown>)[key];
        },
      });
    }
  }
  // `request.constructor === Request`, as for a real one.
  Object.defineProperty(prototype, 'constructor', { configurable: true, writable: true, value: Request });
  Object.setPrototypeOf(prototype, Request.prototype);
}

let lazySupport: boolean | undefined;

/**
 * Whether this runtime's Request constructor accepts a lazy request as its input. Checked once;
 * where it does not (a runtime that checks a private brand), every request is built for real.
 */
function lazyRequestsWork(): boolean {
  if (lazySupport === undefined) {
    try {
      forwardToRealRequest();
      const probe = new LazyRequest({
        url: 'http://localhost/probe',
        method: 'POST',
        rawHeaders: ['x-probe', '1'],
        body: Readable.from([Buffer.from('probe')]),
        signalSource: new AbortController(),
      }) as unknown as Request;
      const copy = new Request(probe, { method: 'PUT' });
      lazySupport =
        probe instanceof Request && copy.url === probe.url && copy.headers.get('x-probe') === '1' && copy.body !== null;
      void copy.body?.cancel();
    } catch {
      lazySupport = false;
    }
  }
  return lazySupport;
}
