import { Duplex, Readable } from 'node:stream';
import { parseHttpHead, type ParsedHead } from './parse-http-head.js';

const HEAD_END = Buffer.from('\r\n\r\n');
/** Node caps its own header parser at 16 KiB by default; 1 MiB is far beyond any sane app. */
const MAX_HEAD_BYTES = 1024 * 1024;

/**
 * The socket of a captured ServerResponse. It receives exactly what Node would send to a
 * client (the serialised head, then the raw body, as chunked framing is turned off), parses
 * the head, and turns the rest into a lazy body stream. A write's callback is held until the
 * body's consumer asks for more, so the app's `res.write()` sees real backpressure.
 */
export class CaptureSocket extends Duplex {
  readonly body: Readable;
  private headBuffer: Buffer | null = Buffer.alloc(0);
  private pendingWrite: (() => void) | null = null;
  private bodyEnded = false;

  constructor(
    private readonly onHead: (head: ParsedHead, body: Readable) => void,
    private readonly onError: (error: Error) => void,
  ) {
    super({ allowHalfOpen: true });
    this.body = new Readable({
      read: () => this.releaseWrite(),
      destroy: (error, callback) => {
        // The consumer gave up on the body: the app sees its response closed.
        this.destroy();
        callback(error);
      },
    });
    // A failure reaches the app as its response's `close` and the consumer through the body;
    // an unread body or an unwatched socket must not turn it into an uncaught exception.
    this.on('error', () => undefined);
    this.body.on('error', () => undefined);
  }

  /** Ends the body once the app's response has finished. */
  endBody(): void {
    this.bodyEnded = true;
    if (!this.body.destroyed) this.body.push(null);
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
  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.headBuffer === null) {
      this.deliver(chunk, callback);
      return;
    }
    const buffered = Buffer.concat([this.headBuffer, chunk]);
    const end = buffered.indexOf(HEAD_END);
    if (end === -1) {
      if (buffered.length > MAX_HEAD_BYTES) return callback(new Error('Response head too large'));
      this.headBuffer = buffered;
      return callback();
    }
    this.headBuffer = null;
    this.onHead(parseHttpHead(buffered.subarray(0, end).toString('latin1')), this.body);
    const rest = buffered.subarray(end + HEAD_END.length);
    if (rest.length > 0) this.deliver(rest, callback);
    else callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const pending = this.pendingWrite;
    this.pendingWrite = null;
    if (this.headBuffer !== null) this.onError(error ?? new Error('The app closed its response before sending headers'));
    else if (!this.bodyEnded && !this.body.destroyed) {
      this.body.destroy(error ?? new Error('The app closed its response before finishing the body'));
    }
    pending?.();
    callback(error);
  }

  private deliver(chunk: Buffer, callback: () => void): void {
    if (this.body.destroyed) return callback();
    if (this.body.push(chunk)) callback();
    else this.pendingWrite = callback;
  }

  private releaseWrite(): void {
    const pending = this.pendingWrite;
    this.pendingWrite = null;
    pending?.();
  }
}
