import { Transform, type Readable } from 'node:stream';
import { BodyHold, markBrokenOff } from '../http/body-source.js';
import { CgiHeadParser, CgiProtocolError, type CgiResponseHead, untypedBodyError } from './cgi-response-head.js';

/** How much of the body is read along with the head, at most, to see whether the output ends there. */
const LOOKAHEAD_BYTES = 64 * 1024;

export interface CgiHead {
  head: CgiResponseHead;
  /** Body bytes read along with the head. */
  rest: Buffer;
  /** The output ended right after them: `rest` is the whole body. */
  complete: boolean;
}

/**
 * Reads a CGI response head off `output` (a script's stdout, a FastCGI request's stdout
 * records). Resolves with the head and the body bytes that came with it, leaving `output`
 * paused, or ended (`complete`: a short answer, which then goes out in one write); rejects
 * when the output breaks, ends early or is not a valid head. After the head (`onHead` is
 * called then) it waits up to `lookaheadMs` for the end of the output (0: only for what the
 * current reads bring). A head without Content-Type (`untyped`) is known to be valid only
 * when the output ends with it, so `onHead` waits for that end, and a body byte rejects.
 */
export function readCgiHead(output: Readable, maxHeaderBytes: number, lookaheadMs = 0, onHead?: () => void): Promise<CgiHead> {
  return new Promise((resolve, reject) => {
    const parser = new CgiHeadParser(maxHeaderBytes);
    let parsed: { head: CgiResponseHead; rest: Buffer } | undefined;
    const more: Buffer[] = [];
    let moreBytes = 0;
    let stopLookahead = () => {};
    const settle = (fn: () => void) => {
      stopLookahead();
      output.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      output.pause();
      fn();
    };
    const done = (complete: boolean) =>
      settle(() => {
        const { head, rest } = parsed!;
        resolve({ head, rest: more.length === 0 ? rest : Buffer.concat([rest, ...more]), complete });
      });
    const onData = (chunk: Buffer) => {
      if (parsed?.head.untyped) {
        if (chunk.length > 0) settle(() => reject(untypedBodyError()));
        return;
      }
      if (parsed) {
        more.push(chunk);
        moreBytes += chunk.length;
        if (moreBytes > LOOKAHEAD_BYTES) done(false);
        return;
      }
      try {
        parsed = parser.push(chunk);
        if (!parsed) return;
        if (parsed.head.untyped) {
          // Whether it is valid is known only at the first body byte or the end of the output.
          if (parsed.rest.length > 0) settle(() => reject(untypedBodyError()));
          return;
        }
        // The end of the output, when it came with this read, is seen before the check phase.
        onHead?.();
        if (lookaheadMs > 0) {
          const timer = setTimeout(() => done(false), lookaheadMs);
          stopLookahead = () => clearTimeout(timer);
        } else {
          const immediate = setImmediate(() => done(false));
          stopLookahead = () => clearImmediate(immediate);
        }
      } catch (error) {
        settle(() => reject(error));
      }
    };
    const onEnd = () => {
      if (parsed?.head.untyped) onHead?.();
      if (parsed) return done(true);
      settle(() => {
        try {
          parser.end();
        } catch (error) {
          reject(error);
        }
      });
    };
    const onError = (error: Error) => settle(() => reject(error));
    const onClose = () =>
      settle(() => reject(new CgiProtocolError(parsed ? 'output closed before its end' : 'output closed before the headers ended')));
    output.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

export interface CgiBodyOptions {
  /** Milliseconds without output (while the client is reading) before `onIdle`; 0 for none. */
  idleTimeout: number;
  onIdle(): void;
  /** The body was dropped unread and collected: the producer must stop. Must not hold the body. */
  onDropped(): void;
  /** Settles after the output has ended; with an error the body breaks off instead of ending. */
  outcome?: Promise<Error | undefined>;
}

/**
 * The response body: the bytes that came with the head, then the rest of `output`, with
 * backpressure. Output errors reach the body; destroying the body destroys the output.
 *
 * Nothing on the output's side (its listeners, the idle timer) holds the body but through
 * `hold`, which lets go of it while it is full: a body its caller dropped unread is then
 * collected, and `onDropped` ends the script, which would otherwise wait on a full pipe for
 * good (its idle time does not run while the body is full).
 */
export function cgiBody(rest: Buffer, output: Readable, options: CgiBodyOptions): { body: Readable; hold: BodyHold<Readable> } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  // Armed again for every chunk: one timer, restarted, rather than a new one per chunk.
  const arm = () => {
    if (options.idleTimeout <= 0 || stopped) return;
    if (timer) timer.refresh();
    else {
      timer = setTimeout(() => {
        const body = hold.body;
        if (body === undefined) return;
        // A slow client is not an idle script: wait while the body is full.
        if (body.readableLength >= body.readableHighWaterMark || output.isPaused()) arm();
        else options.onIdle();
      }, options.idleTimeout);
    }
  };
  const disarm = () => {
    stopped = true;
    clearTimeout(timer);
  };
  const body = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      arm();
      callback(null, chunk);
    },
  });
  const hold = new BodyHold(body, options.onDropped);
  // Errors still reach whoever reads the body; an unread body must not crash the process.
  body.on('error', () => undefined);
  if (rest.length > 0) body.write(rest);
  output.on('error', (error) => hold.body?.destroy(error));
  body.on('close', () => {
    disarm();
    hold.done();
    if (!output.readableEnded) output.destroy();
  });
  body.on('drain', () => {
    hold.reading();
    output.resume();
  });
  arm();
  const outcome = options.outcome;
  // Not pipe(): its listeners on the output would hold the body.
  output.on('data', (chunk: Buffer) => {
    const current = hold.body;
    if (current !== undefined && !current.destroyed && !current.write(chunk)) {
      output.pause();
      hold.full();
    }
  });
  const settle = () => {
    disarm();
    if (!outcome) return void hold.body?.end();
    void outcome.then((error) => {
      const current = hold.body;
      if (current === undefined) return;
      if (error) markBrokenOff(current, error);
      current.end();
    });
  };
  // The output may have ended while its head was read.
  if (output.readableEnded) settle();
  else output.once('end', settle);
  output.resume();
  return { body, hold };
}
