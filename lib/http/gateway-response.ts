import { StreamableFile } from '@nestjs/common';
import type { Readable } from 'node:stream';
import { decodeContent } from './content-coding.js';
import { BodyTooLargeError, readLimited } from './read-body.js';
import { type BodyInit, knownLength, toReadable } from './body-source.js';
import { defaultStatusText } from './status-text.js';
import { type HeaderPairs, pairValue } from './header-pairs.js';
import { ListedHeaders } from './listed-headers.js';

const BRAND = Symbol.for('nest-gateway.GatewayResponse');

/** @default 10 MiB */
export const DEFAULT_READ_LIMIT = 10 * 1024 * 1024;

export interface GatewayResponseInit {
  status: number;
  statusText?: string;
  headers?: HeadersInit;
  body?: BodyInit;
}

export interface ReadOptions {
  /**
   * Largest body, in bytes, that is read into memory; a bigger one rejects with
   * `BodyTooLargeError`, and stays the response's body, whole: it can still be sent on.
   * @default 10485760 (10 MiB)
   */
  limit?: number;
}

/**
 * The response of a gateway app, available as soon as the app has sent its headers.
 *
 * The body is a lazy Node stream: nothing is read until it is consumed, and the app is held
 * back by backpressure meanwhile. Return the object from a controller handler to send it as is.
 */
export class GatewayResponse {
  private _status: number;
  private _statusText: string;
  /** Made when first read (a ListedHeaders over `_pairs`, for a response of a source's head). */
  private _headers: Headers | undefined;
  private _pairs: HeaderPairs | undefined;
  private _body: Readable | null;
  /** The ETag it came with: a new body makes that one weak, not one the caller set since. */
  private _appEtag: string | null;

  constructor(init: GatewayResponseInit) {
    this._status = init.status;
    this._statusText = init.statusText ?? defaultStatusText(init.status);
    if (init.headers === undefined) this._pairs = [];
    else this._headers = init.headers instanceof Headers ? init.headers : new Headers(init.headers);
    this._body = toReadable(init.body);
    this._appEtag = this.header('etag');
  }

  static isGatewayResponse(value: unknown): value is GatewayResponse {
    return value instanceof GatewayResponse || (typeof value === 'object' && value !== null && BRAND in value);
  }

  get [BRAND](): true {
    return true;
  }

  get status(): number {
    return this._status;
  }
  /** Setting the status also resets the reason phrase to the standard one for that code. */
  set status(status: number) {
    if (!Number.isInteger(status) || status < 100 || status > 999) {
      throw new RangeError(`Invalid HTTP status ${status}`);
    }
    this._status = status;
    this._statusText = defaultStatusText(status);
  }

  get statusText(): string {
    return this._statusText;
  }
  set statusText(text: string) {
    if (/[\r\n]/.test(text)) throw new TypeError('Reason phrase must not contain CR or LF');
    this._statusText = text;
  }

  get headers(): Headers {
    if (this._headers === undefined) {
      this._headers = new ListedHeaders(this._pairs!);
      this._pairs = undefined;
    }
    return this._headers;
  }
  set headers(headers: HeadersInit) {
    this._headers = headers instanceof Headers ? headers : new Headers(headers);
    this._pairs = undefined;
  }

  get body(): Readable | null {
    return this._body;
  }
  /**
   * Replaces the body. The old body is discarded (the app sees its response closed) and
   * Content-Length is set to the new length when it is known, removed otherwise. The new body
   * is sent as given: the app's Content-Encoding is removed (set it again for bytes you
   * encoded yourself). A strong ETag of the app's becomes weak (`W/"…"`), as nginx's filters
   * do: it named the app's bytes, not these, yet still serves conditional requests. One you
   * set yourself is kept as it is.
   */
  set body(body: BodyInit) {
    const previous = this._body;
    this._body = toReadable(body);
    if (previous && previous !== this._body) previous.destroy();
    const headers = this.headers;
    headers.delete('content-encoding');
    const etag = headers.get('etag');
    if (etag !== null && etag === this._appEtag && !etag.startsWith('W/')) headers.set('etag', `W/${etag}`);
    const length = knownLength(body);
    if (length === undefined) headers.delete('content-length');
    else headers.set('content-length', String(length));
  }

  /**
   * The body, for Nest, which sees a GatewayResponse as a `StreamableFile` (see below) and
   * destroys this stream when the response is not sent (the client left while interceptors ran).
   */
  getStream(): Readable | null {
    return this._body;
  }

  /** Replaces status (and optionally reason phrase); returns this for chaining. */
  setStatus(status: number, statusText?: string): this {
    this.status = status;
    if (statusText !== undefined) this.statusText = statusText;
    return this;
  }

  /** Replaces the body; returns this for chaining. */
  setBody(body: BodyInit): this {
    this.body = body;
    return this;
  }

  /**
   * Reads the whole body (at most `limit` bytes, encoded and decoded), as the app meant it: a
   * Content-Encoding (gzip, deflate, br) is decoded. What is sent afterwards is still the
   * app's body as it came, encoding and all, unless a new body is set.
   */
  async bytes(options: ReadOptions = {}): Promise<Buffer> {
    if (!this._body) return Buffer.alloc(0);
    const limit = options.limit ?? DEFAULT_READ_LIMIT;
    const { bytes, rest } = await readLimited(this._body, limit);
    if (rest) {
      // Still the whole body, unchanged: a caller may pass on what it could not look at.
      this._body = rest;
      throw new BodyTooLargeError(limit);
    }
    this._body = toReadable(bytes);
    return decodeContent(bytes, this.header('content-encoding'), limit);
  }

  /** One header's value, read without building `headers`. */
  private header(name: string): string | null {
    return this._headers === undefined ? pairValue(this._pairs!, name) : this._headers.get(name);
  }

  async text(options: ReadOptions = {}): Promise<string> {
    return (await this.bytes(options)).toString('utf8');
  }

  async json<T = unknown>(options: ReadOptions = {}): Promise<T> {
    return JSON.parse(await this.text(options)) as T;
  }
}

/**
 * A response of the headers a source's parser checked (see HeaderPairs), kept as they are
 * until something reads `headers`.
 */
export function responseOfHead(head: { status: number; statusText?: string; pairs: HeaderPairs }, body?: BodyInit): GatewayResponse {
  const response = new GatewayResponse({ status: head.status, statusText: head.statusText, body });
  // Private to the class, not to this module: set here rather than through a public constructor option.
  response['_pairs'] = head.pairs;
  response['_appEtag'] = pairValue(head.pairs, 'etag');
  return response;
}

/**
 * The headers of a response that nobody has iterated `headers` of yet, as its source gave them
 * and with the changes made since.
 */
export function unreadHeaderPairs(response: unknown): HeaderPairs | undefined {
  if (!(response instanceof GatewayResponse)) return undefined;
  return response['_pairs'] ?? (response['_headers'] && ListedHeaders.unreadPairs(response['_headers']));
}

// Nest hands a StreamableFile on untouched where it would serialise any other object:
// ClassSerializerInterceptor's class-to-plain copy (which calls every function it finds, down
// into the body stream and the app's socket) would replace a returned response with a JSON
// dump of its internals. Only the prototype is linked: no StreamableFile state per response.
Object.setPrototypeOf(GatewayResponse.prototype, StreamableFile.prototype);
