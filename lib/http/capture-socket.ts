import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { asBuffer, BodyHold, PushedBody } from './body-source.js';
import { parseHttpHead, type ParsedHead } from './parse-http-head.js';

const HEAD_END = '\r\n\r\n';
/** Node caps its own header parser at 16 KiB by default; 1 MiB is far beyond any sane app. */
const MAX_HEAD_BYTES = 1024 * 1024;
type WriteCallback = (error?: Error | null) => void;

/**
 * The socket of a captured ServerResponse. It receives exactly what Node would send to a
 * client (the serialised head, then the raw body, as chunked framing is turned off), parses
 * the head, and passes the rest on to a lazy body stream as it comes. While the body's
 * consumer has enough unread, write callbacks are held and `write()` says so, which gives the
 * app's `res.write()` real backpressure.
 *
 * Not a `Writable`: the response is its only writer, and it uses a few members only (those
 * below). A Writable's queue, corking and callback machinery cost every captured response
 * about a fifth of its allocations, for bytes that go straight on to the body anyway
 * (bench/findings.md, fourteenth round).
 */
export class CaptureSocket extends EventEmitter {
  /** Weakly once the body is full: an app whose caller dropped the body unread is then let go. */
  private readonly hold: BodyHold<CapturedBody>;
  readonly writableHighWaterMark: number;
  destroyed = false;
  /** The response this socket serves; Node's ServerResponse sets and checks it. */
  _httpMessage: unknown = null;
  /** Node's ServerResponse sets `corked` here on `end()`. */
  readonly _writableState = { corked: 0 };
  /** The start of a head that arrived in pieces; Node writes its head in one piece, so rarely used. */
  private partialHead: Buffer | null = null;
  private headParsed = false;
  /** Node would frame the body in chunks: its head then leaves in latin1, before a chunk's size. */
  private headInLatin1 = false;
  private bodyEnded = false;
  /** Callbacks of writes made while the body's consumer had enough unread, in order. */
  private held: WriteCallback[] | null = null;
  private heldBytes = 0;
  private needDrain = false;
  private ended = false;
  private failure: Error | null = null;
  /** Set when 'close' is emitted, as a net.Socket's `closed`. */
  closeEmitted = false;

  /** Let go of once the head is taken: they settle a promise that holds the response, and with it the body. */
  private onHead: ((head: ParsedHead, body: Readable) => void) | undefined;
  private onError: ((error: Error) => void) | undefined;

  constructor(onHead: (head: ParsedHead, body: Readable) => void, onError: (error: Error) => void) {
    super();
    this.onHead = onHead;
    this.onError = onError;
    // A failure reaches the app as its response's `close`, and the consumer through the body.
    const body = new CapturedBody(this);
    this.writableHighWaterMark = body.readableHighWaterMark;
    this.hold = new BodyHold(body, () => this.destroy(new Error('The response body was dropped unread')));
  }

  get writable(): boolean {
    return !this.destroyed;
  }
  // The state a net.Socket reports, for apps and libraries that look at `res.socket`.
  get writableEnded(): boolean {
    return this.ended;
  }
  get writableFinished(): boolean {
    return this.ended;
  }
  get closed(): boolean {
    return this.closeEmitted;
  }
  get errored(): Error | null {
    return this.failure;
  }
  get writableLength(): number {
    return this.heldBytes;
  }
  get writableCorked(): number {
    return this._writableState.corked;
  }
  get writableNeedDrain(): boolean {
    return this.needDrain;
  }

  // Counted, though nothing is held back: a response whose socket says it is not corked corks
  // it again, and schedules an uncork, on every write instead of once a turn.
  cork(): void {
    this._writableState.corked++;
  }
  uncork(): void {
    if (this._writableState.corked > 0) this._writableState.corked--;
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

  write(chunk: Buffer | Uint8Array | string, encoding?: BufferEncoding | WriteCallback | null, callback?: WriteCallback | null): boolean {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    if (this.destroyed) {
      if (callback) process.nextTick(callback, destroyedError());
      return false;
    }
    const rest = this.headParsed ? chunk : this.readHead(chunk, encoding ?? 'utf8');
    if (rest === null) {
      if (callback) process.nextTick(callback, destroyedError());
      return false;
    }
    const body = this.hold.body;
    if (rest.length > 0 && !this.bodyEnded && body !== undefined && !body.destroyed) {
      const bytes = typeof rest === 'string' ? Buffer.from(rest, encoding ?? 'utf8') : asBuffer(rest);
      if (!body.push(bytes) && this.held === null) {
        this.held = [];
        this.hold.full();
      }
      if (this.held !== null) this.heldBytes += bytes.length;
    }
    if (this.held === null) {
      if (callback) process.nextTick(callback);
      return true;
    }
    if (callback) this.held.push(callback);
    this.needDrain = true;
    return false;
  }

  /** An app that ends the connection itself (`res.socket.end()`) closes it, as a client's would be. */
  end(chunk?: Buffer | Uint8Array | string | WriteCallback, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): this {
    if (typeof chunk === 'function') [chunk, callback] = [undefined, chunk];
    else if (typeof encoding === 'function') [encoding, callback] = [undefined, encoding];
    if (chunk !== undefined) this.write(chunk, encoding);
    this.ended = true;
    this.destroy();
    if (callback) process.nextTick(callback);
    return this;
  }

  destroy(error?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.failure = error ?? null;
    const held = this.held;
    this.held = null;
    this.heldBytes = 0;
    this.partialHead = null;
    const body = this.hold.body;
    this.hold.done();
    if (!this.headParsed) this.onError?.(error ?? new Error('The app closed its response before sending headers'));
    else if (!this.bodyEnded && body !== undefined && !body.destroyed) {
      body.destroy(error ?? new Error('The app closed its response before finishing the body'));
    }
    this.onHead = this.onError = undefined;
    // Held writes were handed over whole (their bytes are in the body); only backpressure held
    // their callbacks. Failing them would turn a client that leaves into an error of the app's.
    if (held !== null) process.nextTick(completeHeld, this, held);
    process.nextTick(emitDestroyed, this, error);
    return this;
  }

  /** Called when Node would send the body chunked on a client's socket (see `readHead`). */
  headBeforeChunks(): void {
    this.headInLatin1 = true;
  }

  /** Ends the body: the app has ended its response, and every byte of it is in the body. */
  endBody(): void {
    if (this.bodyEnded) return;
    this.bodyEnded = true;
    const body = this.hold.body;
    if (body === undefined || body.destroyed) return;
    body.markEnded();
    // An ended body asks for nothing more: writes still held complete once it is all read.
    if (this.held !== null) body.once('end', () => this.release());
  }

  /** The body's consumer wants more: writes held back complete, and the app hears 'drain'. */
  release(): void {
    this.hold.reading();
    const held = this.held;
    if (held === null) return;
    this.held = null;
    this.heldBytes = 0;
    process.nextTick(completeHeld, this, held);
  }

  /** Called from `completeHeld`, once the released callbacks have run. */
  drained(): void {
    if (!this.needDrain || this.held !== null || this.destroyed) return;
    this.needDrain = false;
    this.emit('drain');
  }

  /**
   * Reads the head off the start of the output; returns what follows it, or null if the head
   * is broken (the socket is destroyed then). Node writes its head as a string, alone or
   * followed by the first piece of body: in the body's encoding, unless a chunk's size (in
   * latin1) would come first on the client's socket.
   */
  private readHead(chunk: Buffer | Uint8Array | string, encoding: BufferEncoding): Buffer | string | null {
    if (typeof chunk === 'string' && this.partialHead === null) {
      const end = chunk.indexOf(HEAD_END);
      if (end !== -1) {
        const rest = chunk.slice(end + HEAD_END.length);
        this.takeHead(latin1Text(chunk.slice(0, end), this.headInLatin1 && rest.length > 0 ? 'latin1' : encoding));
        return this.headParsed || rest.length === 0 ? rest : this.readHead(rest, encoding);
      }
    }
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : asBuffer(chunk);
    const buffered = this.partialHead === null ? bytes : Buffer.concat([this.partialHead, bytes]);
    const end = buffered.indexOf(HEAD_END);
    if (end === -1) {
      if (buffered.length > MAX_HEAD_BYTES) {
        this.destroy(new Error('Response head too large'));
        return null;
      }
      this.partialHead = buffered;
      return '';
    }
    this.partialHead = null;
    this.takeHead(buffered.toString('latin1', 0, end));
    const rest = buffered.subarray(end + HEAD_END.length);
    return this.headParsed || rest.length === 0 ? rest : this.readHead(rest, encoding);
  }

  /** Interim responses (100 Continue, 103 Early Hints) cannot be passed on: the final head is awaited. */
  private takeHead(text: string): void {
    const head = parseHttpHead(text);
    if (head.status < 200 && head.status !== 101) return;
    this.headParsed = true;
    const onHead = this.onHead!;
    this.onHead = this.onError = undefined;
    onHead(head, this.hold.body!);
  }
}

function completeHeld(socket: CaptureSocket, held: WriteCallback[]): void {
  for (const callback of held) callback();
  socket.drained();
}

function emitDestroyed(socket: CaptureSocket, error: Error | undefined): void {
  if (error !== undefined && socket.listenerCount('error') > 0) socket.emit('error', error);
  socket.closeEmitted = true;
  socket.emit('close', error !== undefined);
}

function destroyedError(): Error {
  return Object.assign(new Error('Cannot call write after the response was destroyed'), { code: 'ERR_STREAM_DESTROYED' });
}

/** The body of a captured response: reading asks the app for more, destroying closes its response. */
class CapturedBody extends PushedBody {
  constructor(private readonly socket: CaptureSocket) {
    super();
  }

  override _read(): void {
    this.socket.release();
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
