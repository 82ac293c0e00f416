import { Readable } from 'node:stream';
import { toError } from './failures.js';
import { asBuffer, closedBeforeEnd } from './body-source.js';

type Reader = ReadableStreamDefaultReader<unknown>;
type ReadResult = ReadableStreamReadResult<unknown>;

/** What could be read of a web body without waiting for its producer. */
export interface BodyStart {
  readonly reader: Reader;
  /** Chunks already read, in order. */
  readonly chunks: unknown[];
  /** The whole body is in `chunks`. */
  readonly complete: boolean;
  /** A read that has not settled yet (or that failed): the next thing to take from the reader. */
  readonly pending: Promise<ReadResult> | undefined;
}

/** Most bodies that are already in memory (a string, JSON, bytes) are in one or two chunks. */
const READ_AHEAD_CHUNKS = 8;
const READ_AHEAD_BYTES = 64 * 1024;
/**
 * How many microtask turns a read may take and still count as ready. A body that is in memory
 * (undici's string, bytes and Blob bodies, a stream whose chunks were enqueued up front) settles
 * each read within two turns; a body that waits for I/O or a timer takes a macrotask at least.
 */
const READY_TURNS = 6;

/**
 * Reads what is ready of `stream` without ever waiting for its producer, at most a few
 * chunks and 64 KiB: a small response that is already complete can then be sent in one write,
 * while a slow or endless one is streamed from where this stopped.
 */
export async function readAhead(stream: ReadableStream<unknown>): Promise<BodyStart> {
  const reader = stream.getReader();
  const chunks: unknown[] = [];
  let bytes = 0;
  while (chunks.length < READ_AHEAD_CHUNKS && bytes <= READ_AHEAD_BYTES) {
    const read = reader.read();
    const result = await settledSoon(read);
    if (result === undefined || result === FAILED) return { reader, chunks, complete: false, pending: read };
    if (result.done) return { reader, chunks, complete: true, pending: undefined };
    chunks.push(result.value);
    bytes += byteLength(result.value);
  }
  return { reader, chunks, complete: false, pending: undefined };
}

const FAILED: unique symbol = Symbol('failed');

/**
 * The read's result if it settles within READY_TURNS microtask turns; FAILED if it rejects.
 * Counted with queued microtasks that stop once the read settles: a race against a chain of
 * promises made all of them up front, for every read of every response.
 */
function settledSoon(read: Promise<ReadResult>): Promise<ReadResult | typeof FAILED | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    read.then(
      (result) => {
        settled = true;
        resolve(result);
      },
      () => {
        settled = true;
        resolve(FAILED);
      },
    );
    let turns = READY_TURNS;
    const countdown = () => {
      if (settled) return;
      if (--turns === 0) resolve(undefined);
      else queueMicrotask(countdown);
    };
    queueMicrotask(countdown);
  });
}

function byteLength(chunk: unknown): number {
  if (typeof chunk === 'string') return chunk.length;
  return chunk instanceof Uint8Array ? chunk.byteLength : 0;
}

/** One Buffer of a complete body, or undefined if a chunk is not bytes (the stream path then reports it). */
export function concatChunks(chunks: readonly unknown[]): Buffer | undefined {
  const buffers: Buffer[] = [];
  for (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) return undefined;
    buffers.push(asBuffer(chunk));
  }
  return buffers.length === 1 ? buffers[0] : Buffer.concat(buffers);
}

/**
 * A Node stream of the rest of a web body: the chunks already read, then the reader's, one
 * read per Node read (so the producer is held back by backpressure). Destroying it cancels
 * the web stream, as Readable.fromWeb does, without that adapter's per-stream cost.
 */
export function readableFrom(start: BodyStart): Readable {
  const { reader } = start;
  let pending = start.pending;
  let finished = false;
  const readable = new Readable({
    read() {
      const read = pending ?? reader.read();
      pending = undefined;
      read.then(
        (result) => {
          if (result.done) {
            finished = true;
            this.push(null);
          } else pushChunks(this, [result.value]);
        },
        (error: unknown) => {
          finished = true;
          this.destroy(toError(error));
        },
      );
    },
    destroy(error, callback) {
      if (finished) {
        callback(error);
        return;
      }
      finished = true;
      reader.cancel(error ?? undefined).then(
        () => callback(error),
        () => callback(error),
      );
    },
  });
  // Buffered at once: a sender sees that bytes are ready to go with the head.
  pushChunks(readable, start.chunks);
  return readable;
}

function pushChunks(stream: Readable, chunks: unknown[]): void {
  try {
    for (const chunk of chunks) {
      if (chunk instanceof Uint8Array) stream.push(asBuffer(chunk));
      else stream.push(chunk);
    }
  } catch (error) {
    stream.destroy(error as Error);
  }
}

/**
 * A web stream of a Node body, read with backpressure: one Node read per pull. Cancelling it
 * destroys the Node stream (the app sees its response closed). Not `Readable.toWeb`: when a
 * reader cancels while bytes wait in the Node stream, Node's adapter enqueues them into the
 * closed controller and the throw, out of an event handler, ends the process
 * (nodejs/node#64529, open in Node 20 to 24).
 */
export function webStreamOf(body: Readable): ReadableStream<Uint8Array> {
  let wake: (() => void) | undefined;
  // A body that ended or closed before this was made will not say so again.
  let ended = body.readableEnded;
  let failure: Error | undefined = ended || !body.destroyed ? undefined : (body.errored ?? closedBeforeEnd());
  const onChange = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const onEnd = () => {
    ended = true;
    onChange();
  };
  const onError = (error: Error) => {
    failure ??= error;
    onChange();
  };
  const onClose = () => {
    if (!ended) failure ??= closedBeforeEnd();
    onChange();
  };
  const detach = () => {
    body.off('readable', onChange).off('end', onEnd).off('error', onError).off('close', onClose);
  };
  body.on('readable', onChange).once('end', onEnd).once('error', onError).once('close', onClose);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const chunk = body.read() as Buffer | string | null;
        if (chunk !== null) return controller.enqueue(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        if (ended || failure) {
          detach();
          if (ended) controller.close();
          else controller.error(failure);
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    cancel() {
      detach();
      body.destroy();
    },
  });
}
