import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

const HIDDEN_CONTENT_TYPE = Symbol('nest-gateway.hiddenContentType');
const REPLAY = Symbol('nest-gateway.replay');

interface Replay {
  chunks: Buffer[] | null;
  size: number;
  complete: boolean;
  /** Ends the recording and takes it off the request (its `emit` wrapper only passes events on). */
  stop(): void;
}
type TrackedRequest = IncomingMessage & { [HIDDEN_CONTENT_TYPE]?: string; [REPLAY]?: Replay };

/** Thrown when a request body was read by someone else and cannot be read again. */
export class RequestBodyConsumedError extends Error {
  constructor(detail: string) {
    super(`The request body was already consumed ${detail}`);
    this.name = 'RequestBodyConsumedError';
  }
}

/** Whether the request carries a body (the rule of type-is and body-parser). */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
}

/** Whether nobody has read from the request stream yet. */
export function isBodyUntouched(req: IncomingMessage): boolean {
  return !req.readableDidRead && !req.readableEnded;
}

/**
 * Keeps body parsers away from a request that a mounted app will stream: they skip a request
 * without Content-Type, so it is hidden here and restored before the app sees the request.
 */
export function hideContentType(req: IncomingMessage): void {
  const tracked = req as TrackedRequest;
  const type = req.headers['content-type'];
  if (type === undefined || tracked[HIDDEN_CONTENT_TYPE] !== undefined) return;
  tracked[HIDDEN_CONTENT_TYPE] = type;
  delete req.headers['content-type'];
}

export function restoreContentType(req: IncomingMessage): void {
  const tracked = req as TrackedRequest;
  const type = tracked[HIDDEN_CONTENT_TYPE];
  if (type === undefined) return;
  req.headers['content-type'] = type;
  // Not deleted: a delete would make V8 keep the request as a dictionary from then on.
  tracked[HIDDEN_CONTENT_TYPE] = undefined;
}

/**
 * Records the raw bytes that anyone reads from the request (a body parser, or the first app
 * called), up to `limit` bytes, so that a later `callApp` can replay them byte for byte.
 * Reading is observed, never initiated: a body nobody reads is never buffered.
 */
export function recordBodyReads(req: IncomingMessage, limit: number): void {
  const tracked = req as TrackedRequest;
  if (limit <= 0 || tracked[REPLAY] || !hasBody(req)) return;
  const emit = req.emit;
  const replay: Replay = {
    chunks: [],
    size: 0,
    complete: false,
    // Stops recording; the wrapper stays, passing events on: taking it off the request again
    // would be a delete, which makes V8 keep the request as a dictionary from then on.
    stop: () => {
      replay.chunks = null;
      tracked[REPLAY] = undefined;
    },
  };
  tracked[REPLAY] = replay;
  req.emit = function (this: IncomingMessage, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data' && replay.chunks) {
      const chunk = args[0] as Buffer;
      replay.size += chunk.length;
      if (replay.size > limit) replay.chunks = null;
      else replay.chunks.push(chunk);
    } else if (event === 'end') {
      replay.complete = true;
    }
    return emit.call(this, event, ...args);
  } as IncomingMessage['emit'];
}

/**
 * Ends a recording whose body nobody has read: the app will stream it, and nothing of it
 * need be kept. A body that was read stays recorded for replay.
 */
export function forgetUnreadBody(req: IncomingMessage): void {
  const replay = (req as TrackedRequest)[REPLAY];
  if (replay && isBodyUntouched(req)) replay.stop();
}

/**
 * The request body for one app call: the live stream if nobody has touched it, a replay of
 * recorded bytes if they are complete, null when there is no body, and a clear error (never a
 * stream that hangs) when the bytes are gone.
 */
export function claimRequestBody(req: IncomingMessage): Readable | null {
  restoreContentType(req);
  if (!hasBody(req)) return null;
  const replay = (req as TrackedRequest)[REPLAY];
  if (replay?.complete && replay.chunks) return Readable.from(replay.chunks, { objectMode: false });
  if (isBodyUntouched(req) && !req.destroyed) return req;
  if (replay?.chunks && !replay.complete && req.readableDidRead) {
    throw new RequestBodyConsumedError(
      'only partly: an earlier call is still reading it; read that response to the end first, or pass CallOptions.body',
    );
  }
  if (replay && !replay.chunks) {
    throw new RequestBodyConsumedError(
      `and was larger than the replay limit (${replay.size} bytes read); raise GatewayModule's bodyReplayLimit or pass CallOptions.body`,
    );
  }
  throw new RequestBodyConsumedError(
    'by another reader (a body parser or middleware) before the gateway saw it; pass CallOptions.body, or mount the app so that parsers skip it',
  );
}
