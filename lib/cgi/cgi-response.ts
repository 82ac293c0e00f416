import { BadGatewayException, GatewayTimeoutException } from '@nestjs/common';
import type { Readable } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';
import { abortWatchOf } from '../http/client-exchange.js';
import type { BodyHold } from '../http/body-source.js';
import { toError } from '../http/failures.js';
import { type GatewayResponse, responseOfHead } from '../http/gateway-response.js';
import { cgiBody, readCgiHead } from './cgi-output.js';
import { CgiProtocolError, type CgiResponseHead } from './cgi-response-head.js';

/** Time limits (ms, 0 for none) and size limit of a CGI-style response. */
export interface CgiResponseLimits {
  headersTimeout: number;
  idleTimeout: number;
  totalTimeout: number;
  maxHeaderBytes: number;
  /**
   * How long to wait after the head for the end of the output, so that a short answer goes
   * out in one write with a Content-Length (0: only what the current reads bring).
   */
  endLookahead?: number;
}

/**
 * Turns CGI-style output (a script's stdout, a FastCGI request's STDOUT) into a
 * GatewayResponse as soon as its head is read; `outcome`, when given, decides whether the
 * body ends or breaks off once the output has ended. Whenever the producer must stop (the exchange
 * aborts, a time limit passes, the head is invalid, the body is abandoned) `stop` is called
 * once with the reason.
 */
export async function respondFromOutput(
  output: Readable,
  exchange: GatewayExchange,
  limits: CgiResponseLimits,
  tag: string,
  stop: (reason: string) => void,
  outcome?: Promise<Error | undefined>,
): Promise<{ head: CgiResponseHead; response: GatewayResponse }> {
  const timers: NodeJS.Timeout[] = [];
  let unwatch: () => void = () => undefined;
  /** Nothing more to time or to abort: the timers and the abort listener go. */
  const settled = () => {
    for (const timer of timers) clearTimeout(timer);
    unwatch();
  };
  /** The body, held as the output holds it: `halt` must not keep a body its caller dropped. */
  let hold: BodyHold<Readable> | undefined;
  let stopped = false;
  const halt = (reason: string, error?: Error) => {
    if (stopped) return;
    stopped = true;
    settled();
    if (error) failHead(error);
    hold?.body?.destroy(new Error(`${exchange.name}: ${reason}`));
    stop(reason);
  };
  const timeOut = (reason: string) => {
    exchange.logger.warn(`${tag} ${reason}; stopping it`);
    halt(reason, new GatewayTimeoutException(`${exchange.name} ${reason}`));
  };
  let failHead: (error: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (failHead = reject));
  failed.catch(() => undefined);

  // The producer may fail at any moment (a responder closing its connection): that must
  // never become an unhandled 'error', whoever is listening at the time.
  output.on('error', () => undefined);
  output.once('close', settled);
  unwatch = abortWatchOf(exchange).whenAborted((reason) => halt(`request aborted (${describe(reason)})`, toError(reason)));
  if (limits.totalTimeout > 0) timers.push(setTimeout(() => timeOut(`ran longer than ${limits.totalTimeout} ms`), limits.totalTimeout));
  const headTimer =
    limits.headersTimeout > 0
      ? setTimeout(() => timeOut(`sent no headers within ${limits.headersTimeout} ms`), limits.headersTimeout)
      : undefined;

  let head: CgiResponseHead;
  let rest: Buffer;
  let complete: boolean;
  try {
    ({ head, rest, complete } = await Promise.race([readCgiHead(output, limits.maxHeaderBytes, limits.endLookahead, () => clearTimeout(headTimer)), failed]));
  } catch (error) {
    if (error instanceof CgiProtocolError) {
      exchange.logger.error(`${tag} invalid CGI response: ${error.message}`);
      halt('invalid response');
      throw new BadGatewayException(undefined, { cause: error });
    }
    halt(describe(error));
    throw error;
  } finally {
    clearTimeout(headTimer);
  }

  // A short answer, all here with its head: sent in one write, with no stream in between
  // (unless the producer failed at its end, which the streamed body reports, or its end is not
  // known yet: a script that closed its output and works on must not hold its answer back).
  if (complete && (await endedWell(outcome, failed, limits.endLookahead ?? 0))) {
    stopped = true;
    settled();
    // Even empty: a Content-Length it does not meet must break the response off, as when streamed.
    const body = exchange.method === 'HEAD' ? null : rest;
    return { head, response: responseOfHead(head, body) };
  }

  const { body: stream, hold: streamHold } = cgiBody(rest, output, {
    idleTimeout: limits.idleTimeout,
    onIdle: () => timeOut(`sent no output for ${limits.idleTimeout} ms`),
    onDropped: () => halt('response body dropped unread'),
    outcome,
  });
  hold = streamHold;
  // `this`, not `stream`: a closure naming `stream` would put it in the scope that `halt` keeps
  // (held by the timers and the abort watch), and a body dropped unread would never be collected.
  stream.once('close', function (this: Readable) {
    if (!this.readableEnded) halt('response body abandoned');
  });
  if (exchange.method === 'HEAD') {
    // Drained and dropped, under the same idle limit as a body the client reads; no reader
    // keeps it, so the output must.
    streamHold.pin();
    stream.resume();
    return { head, response: responseOfHead(head) };
  }
  return { head, response: responseOfHead(head, stream) };
}

/** Whether the producer's outcome, if it has one, is known to be a success within `ms`. */
async function endedWell(outcome: Promise<Error | undefined> | undefined, failed: Promise<never>, ms: number): Promise<boolean> {
  if (!outcome) return true;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  try {
    return (await Promise.race([outcome, failed, late])) === undefined;
  } finally {
    clearTimeout(timer);
  }
}

function describe(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
