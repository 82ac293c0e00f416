import { Readable, type ReadableOptions } from 'node:stream';

// Registered symbols, so that a body made by another copy of this library (a dependency that
// brings its own) is understood by this copy's sender; versioned, as their meaning is fixed.
const BREAKS_OFF = Symbol.for('nest-gateway.breaksOff.v1');

/**
 * Marks a body whose producer failed after its last bytes (a CGI script killed mid-body):
 * the body still ends normally, so that bytes not yet read are not lost, and the sender
 * breaks the response off at its end instead of completing it. Destroying the body instead
 * would drop whatever its reader had not taken yet.
 */
export function markBrokenOff(body: Readable, error: Error): void {
  (body as Readable & { [BREAKS_OFF]?: Error })[BREAKS_OFF] = error;
}

/** Why a body that ended must not count as complete, if it must not. */
export function brokenOffReason(body: Readable): Error | undefined {
  return (body as Readable & { [BREAKS_OFF]?: Error })[BREAKS_OFF];
}

/** What a caller may hand over as a replacement body. */
export type BodyInit =
  | string
  | Buffer
  | Uint8Array
  | ArrayBuffer
  | Readable
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | string>
  | null;

/** Byte length of a body known up front, or undefined for streams. */
export function knownLength(body: BodyInit | undefined): number | undefined {
  if (body == null) return 0;
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof ArrayBuffer) return body.byteLength;
  if (body instanceof Uint8Array) return body.byteLength;
  return undefined;
}

/** Normalises any accepted body to a Node Readable (null stays null). */
export function toReadable(body: BodyInit | undefined): Readable | null {
  if (body == null) return null;
  if (body instanceof Readable) return body;
  if (typeof body === 'string') return new BytesBody(Buffer.from(body));
  if (body instanceof ArrayBuffer) return new BytesBody(Buffer.from(body));
  if (body instanceof Uint8Array) {
    return new BytesBody(asBuffer(body));
  }
  if (typeof (body as ReadableStream).getReader === 'function') {
    return Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>);
  }
  return Readable.from(body as AsyncIterable<Uint8Array | string>, { objectMode: false });
}

/** The same bytes as a Buffer, without a copy. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Why a body that closed without its end failed (the code Node's own streams give it). */
export function closedBeforeEnd(): Error {
  return Object.assign(new Error('Body closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

/** Implemented by body streams that can tell when all of the body already sits in memory. */
export const WHOLE_BODY = Symbol.for('nest-gateway.wholeBody.v1');

export interface WholeBodySource {
  /**
   * The body's bytes, taken out of the stream, if it has ended with all of them unread (and
   * exactly `length` of them, when given).
   */
  [WHOLE_BODY](length: number | undefined): Buffer | undefined;
}

/**
 * The complete body at once, when `body` is such a source, has ended with all its bytes (exactly
 * `length`, when given) still buffered and nobody else is reading it; the stream is then
 * drained and ends. Otherwise undefined, and the stream is left untouched.
 */
export function takeWholeBody(body: Readable, length: number | undefined): Buffer | undefined {
  return (body as Readable & Partial<WholeBodySource>)[WHOLE_BODY]?.(length);
}

/**
 * A body its producer pushes into as bytes come (a captured app, an upstream), which the
 * sender takes whole in one write once it has ended with every byte still unread.
 */
export abstract class PushedBody extends Readable implements WholeBodySource {
  #ended = false;

  constructor(options?: ReadableOptions) {
    super(options);
    // A failure reaches the reader as a break; a body not read yet (or never) must not turn
    // it into an uncaught exception.
    this.on('error', ignoreError);
  }

  /** The producer has pushed its last bytes. */
  markEnded(): void {
    this.#ended = true;
    this.push(null);
  }

  [WHOLE_BODY](length: number | undefined): Buffer | undefined {
    if (!this.#ended || this.destroyed || this.readableFlowing === true) return undefined;
    if (length !== undefined && this.readableLength !== length) return undefined;
    return this.readableLength === 0 ? (this.read(), Buffer.alloc(0)) : (this.read() as Buffer);
  }
}

/** An 'error' listener that only keeps an error nobody else hears from being uncaught. */
export function ignoreError(): void {}

/**
 * How a producer (an app's response, a script's output, an upstream request) holds the body it
 * pushes into: strongly while the body's reader wants more, weakly while the body is full and
 * its reader has not asked for more since. A full body that something keeps (its caller, a
 * pipe into a socket or a file, a timer's closure) stays; one its caller dropped unread (it
 * returned something else) is collected, and `onDropped` stops the producer, which would
 * otherwise wait for good for a reader that never comes: nothing times out a paused producer.
 * A reader waiting for bytes is held by nothing but the body (its listeners, its promise), so
 * the producer must hold the body strongly again as soon as the reader asks for more.
 * `onDropped` must not hold the body, or it is never collected.
 */
export class BodyHold<T extends Readable> {
  #strong: T | undefined;
  #weak: WeakRef<T> | undefined;
  #pinned = false;

  constructor(
    body: T,
    private readonly onDropped: () => void,
  ) {
    this.#strong = body;
  }

  /** The body, unless it was dropped and collected. */
  get body(): T | undefined {
    return this.#strong ?? this.#weak?.deref();
  }

  /** The body's reader has a buffer's worth unread: held weakly until it asks for more. */
  full(): void {
    const body = this.#strong;
    if (body === undefined || this.#pinned) return;
    this.#strong = undefined;
    this.#weak = new WeakRef(body);
    droppedBodies.register(body, this.onDropped, this);
  }

  /** The body's reader asks for more: held strongly again. */
  reading(): void {
    const weak = this.#weak;
    if (weak === undefined) return;
    this.#weak = undefined;
    this.#strong = weak.deref();
    droppedBodies.unregister(this);
  }

  /** Held strongly for good: a body the producer drains itself, with no reader to keep it. */
  pin(): void {
    this.reading();
    this.#pinned = true;
  }

  /** The producer is done with the body: whether it is dropped no longer matters. */
  done(): void {
    if (this.#weak !== undefined) droppedBodies.unregister(this);
  }
}

const droppedBodies = new FinalizationRegistry<() => void>((onDropped) => onDropped());

/**
 * A body whose bytes are all in memory (a string or Buffer an app or caller set, a CGI
 * response that was complete with its head): read as a stream, or taken whole by the sender
 * for a single write. Cheaper than `Readable.from`, which iterates asynchronously.
 */
export class BytesBody extends Readable implements WholeBodySource {
  #bytes: Buffer | null;

  constructor(bytes: Buffer) {
    super();
    this.#bytes = bytes;
  }

  [WHOLE_BODY](length: number | undefined): Buffer | undefined {
    const bytes = this.#bytes;
    if (bytes === null || this.destroyed || this.readableFlowing === true) return undefined;
    if (length !== undefined && bytes.length !== length) return undefined;
    this.#bytes = null;
    this.push(null);
    this.read(); // ends it: 'end', then 'close'
    return bytes;
  }

  override _read(): void {
    const bytes = this.#bytes;
    this.#bytes = null;
    if (bytes && bytes.length > 0) this.push(bytes);
    this.push(null);
  }
}
