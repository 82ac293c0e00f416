import { Readable } from 'node:stream';
import { brokenOffReason, closedBeforeEnd, markBrokenOff } from './body-source.js';

/** Thrown when a body is larger than the limit its reader was given. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Body exceeds the ${limit}-byte limit; read it as a stream or raise the limit`);
    this.name = 'BodyTooLargeError';
  }
}

/** A body read whole, or, past the limit, the same body again: what was read, then the rest. */
export type LimitedRead = { bytes: Buffer; rest?: undefined } | { bytes?: undefined; rest: Readable };

/**
 * Reads a stream into one Buffer, up to `limit` bytes. A longer one is not lost: reading
 * stops, and `rest` gives its every byte again, those read and those not yet, for a caller
 * that passes a body too big to look at on unchanged.
 */
export function readLimited(stream: Readable, limit: number): Promise<LimitedRead> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => stream.off('data', onData).off('end', onEnd).off('error', onError);
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      chunks.push(buf);
      size += buf.length;
      if (size <= limit) return;
      stream.pause();
      stop();
      resolve({ rest: new ResumedBody(chunks, stream) });
    };
    const onEnd = () => {
      stop();
      resolve({ bytes: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) });
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    stream.on('data', onData).once('end', onEnd).once('error', onError);
  });
}

/** Bytes already taken out of a stream, then the stream's own, with its backpressure. */
class ResumedBody extends Readable {
  #read: Buffer[] | null;
  #flowing = false;

  constructor(
    read: Buffer[],
    private readonly source: Readable,
  ) {
    super();
    this.#read = read;
  }

  override _read(): void {
    const read = this.#read;
    if (read !== null) {
      this.#read = null;
      for (const chunk of read) this.push(chunk);
    }
    if (!this.#flowing) {
      this.#flowing = true;
      this.source
        .on('data', (chunk: Buffer) => {
          if (!this.push(chunk)) this.source.pause();
        })
        .once('end', () => {
          // A producer that failed after its last bytes (a CGI script killed mid-body) still does.
          const brokenOff = brokenOffReason(this.source);
          if (brokenOff) markBrokenOff(this, brokenOff);
          this.push(null);
        })
        .once('error', (error) => this.destroy(error))
        .once('close', () => {
          if (!this.source.readableEnded) this.destroy(closedBeforeEnd());
        });
      if (this.source.readableEnded) this.push(null);
    }
    this.source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Nobody reads it any more: the app, script or upstream behind it is told so.
    if (!this.source.readableEnded) this.source.destroy();
    callback(error);
  }
}
