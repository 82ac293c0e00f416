import { Readable, Writable } from 'node:stream';
import { WHOLE_BODY, type WholeBodySource } from './body-source.js';
import { parseHttpHead, type ParsedHead } from './parse-http-head.js';

const HEAD_END = '\r\n\r\n';
/** Node caps its own header parser at 16 KiB by default; 1 MiB is far beyond any sane app. */
const MAX_HEAD_BYTES = 1024 * 1024;
const ignore = () => undefined;

/**
 * The socket of a captured ServerResponse. It receives exactly what Node would send to a
 * client (the serialised head, then the raw body, as chunked framing is turned off), parses
 * the head, and turns the rest into a lazy body stream. A write's callback is held until the
 * body's consumer asks for more, so the app's `res.write()` sees real backpressure.
 */
export class CaptureSocket extends Writable {
  readonly body: CapturedBody;
  /** The start of a head that arrived in pieces; Node writes its head in one piece, so rarely used. */
  private partialHead: Buffer | null = null;
  private headParsed = false;
  private pendingWrite: (() => void) | null = null;
  private bodyEnded = false;

  constructor(
    private readonly onHead: (head: ParsedHead, body: Readable) => void,
    private readonly onError: (error: Error) => void,
  ) {
    // Strings stay strings: the head is parsed from the very string Node serialised. Only
    // written to: a Writable, as a Duplex would carry a readable side for nothing.
    super({ decodeStrings: false });
    this.body = new CapturedBody(this);
    // A failure reaches the app as its response's `close` and the consumer through the body;
    // an unread body or an unwatched socket must not turn it into an uncaught exception.
    this.on('error', ignore);
    this.body.on('error', ignore);
  }

  /**
   * Ends the body as soon as the app has ended its response and every byte has come through:
   * the consumer may then take the whole body at once, before Node's 'finish' (a tick later).
   */
  endBodyIfFlushed(): void {
    if (this.writableLength === 0) this.endBody();
  }

  /** Ends the body once the app's response has finished. */
  endBody(): void {
    if (this.bodyEnded) return;
    this.bodyEnded = true;
    if (!this.body.destroyed) this.body.markEnded();
  }

  // Node's ServerResponse calls these on its socket.
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }

  override _write(chunk: Buffer | string, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.headParsed) {
      this.deliver(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk, callback);
    } else if (typeof chunk === 'string' && this.partialHead === null) {
      this.readHeadText(chunk, encoding, callback);
    } else {
      this.readHeadBytes(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk, callback);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const pending = this.pendingWrite;
    this.pendingWrite = null;
    if (!this.headParsed) this.onError(error ?? new Error('The app closed its response before sending headers'));
    else if (!this.bodyEnded && !this.body.destroyed) {
      this.body.destroy(error ?? new Error('The app closed its response before finishing the body'));
    }
    pending?.();
    callback(error);
  }

  /** Lets the app's held write complete: the body's consumer wants more. */
  releaseWrite(): void {
    const pending = this.pendingWrite;
    this.pendingWrite = null;
    pending?.();
  }

  /** Node writes its head as a string, alone or followed by the first piece of body. */
  private readHeadText(chunk: string, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const end = chunk.indexOf(HEAD_END);
    if (end === -1) {
      this.readHeadBytes(Buffer.from(chunk, encoding), callback);
      return;
    }
    this.takeHead(latin1Text(chunk.slice(0, end), encoding));
    const rest = chunk.slice(end + HEAD_END.length);
    if (rest.length === 0) callback();
    else if (this.headParsed) this.deliver(Buffer.from(rest, encoding), callback);
    else this.readHeadText(rest, encoding, callback);
  }

  private readHeadBytes(bytes: Buffer, callback: (error?: Error | null) => void): void {
    const buffered = this.partialHead === null ? bytes : Buffer.concat([this.partialHead, bytes]);
    const end = buffered.indexOf(HEAD_END);
    if (end === -1) {
      if (buffered.length > MAX_HEAD_BYTES) return callback(new Error('Response head too large'));
      this.partialHead = buffered;
      return callback();
    }
    this.partialHead = null;
    this.takeHead(buffered.toString('latin1', 0, end));
    const rest = buffered.subarray(end + HEAD_END.length);
    if (rest.length === 0) callback();
    else if (this.headParsed) this.deliver(rest, callback);
    else this.readHeadBytes(rest, callback);
  }

  /** Interim responses (100 Continue, 103 Early Hints) cannot be passed on: the final head is awaited. */
  private takeHead(text: string): void {
    const head = parseHttpHead(text);
    if (head.status < 200 && head.status !== 101) return;
    this.headParsed = true;
    this.onHead(head, this.body);
  }

  private deliver(chunk: Buffer, callback: () => void): void {
    if (this.body.destroyed) return callback();
    if (this.body.push(chunk)) callback();
    else this.pendingWrite = callback;
  }
}

/** The body of a captured response: reading asks the app for more, destroying closes its response. */
class CapturedBody extends Readable implements WholeBodySource {
  private ended = false;

  constructor(private readonly socket: CaptureSocket) {
    super();
  }

  markEnded(): void {
    this.ended = true;
    this.push(null);
  }

  [WHOLE_BODY](length: number | undefined): Buffer | undefined {
    if (!this.ended || this.destroyed || this.readableFlowing === true) return undefined;
    if (length !== undefined && this.readableLength !== length) return undefined;
    return this.readableLength === 0 ? (this.read(), Buffer.alloc(0)) : (this.read() as Buffer);
  }

  override _read(): void {
    this.socket.releaseWrite();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // The consumer gave up on the body: the app sees its response closed.
    this.socket.destroy();
    callback(error);
  }
}

/**
 * The head as the bytes Node would have sent, read as latin1 (what a client's parser sees).
 * Node encodes a head written together with a string body in the body's encoding.
 */
function latin1Text(text: string, encoding: BufferEncoding): string {
  if (encoding === 'latin1' || encoding === 'binary' || encoding === 'ascii') return text;
  if (Buffer.byteLength(text, 'utf8') === text.length) return text;
  return Buffer.from(text, encoding).toString('latin1');
}
