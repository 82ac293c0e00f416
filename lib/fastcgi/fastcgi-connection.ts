import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { AbortWatch } from '../http/abort-watch.js';
import { toError } from '../http/failures.js';
import {
  decodeEndRequest,
  encodeBeginRequest,
  encodeGetValues,
  encodeParams,
  encodeRecord,
  encodeStream,
  RecordReader,
  RecordType,
  type FcgiRecord,
} from './records.js';

/** Where a FastCGI responder listens. */
export type FastcgiAddress = { host?: string; port: number } | { socketPath: string };

export interface EndRequest {
  appStatus: number;
  protocolStatus: number;
}

/** The responder closed the connection or broke the protocol before END_REQUEST. */
export class FastcgiConnectionError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'FastcgiConnectionError';
  }
}

/** END_REQUEST refused the request (overloaded, cannot multiplex, unknown role). */
export class FastcgiRefusedError extends Error {
  constructor(readonly protocolStatus: number) {
    super(`the responder refused the request (protocol status ${protocolStatus})`);
    this.name = 'FastcgiRefusedError';
  }
}

// One request at a time per connection: php-fpm, fcgiwrap and uWSGI do not multiplex.
const REQUEST_ID = 1;

export function describeAddress(address: FastcgiAddress): string {
  return 'socketPath' in address ? `unix:${address.socketPath}` : `${address.host ?? '127.0.0.1'}:${address.port}`;
}

/** Opens a connection, failing after `timeout` ms or on an abort. */
export function openConnection(address: FastcgiAddress, timeout: number, abort: AbortWatch): Promise<FastcgiConnection> {
  return new Promise((resolve, reject) => {
    const socket =
      'socketPath' in address ? connect(address.socketPath) : connect(address.port, address.host ?? '127.0.0.1');
    const fail = (error: Error) => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const onError = (error: Error) =>
      fail(new FastcgiConnectionError(`cannot connect to ${describeAddress(address)}: ${error.message}`, { cause: error }));
    const timer =
      timeout > 0
        ? setTimeout(() => fail(new FastcgiConnectionError(`no connection to ${describeAddress(address)} within ${timeout} ms`)), timeout)
        : undefined;
    let unwatch = (): void => undefined;
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('error', onError);
      unwatch();
    };
    socket.once('error', onError);
    unwatch = abort.whenAborted((reason) => fail(toError(reason)));
    socket.once('connect', () => {
      cleanup();
      socket.setNoDelay(true);
      resolve(new FastcgiConnection(socket));
    });
  });
}

/** One request on a connection: its output streams and how it ended. */
export interface FastcgiRequest {
  readonly stdout: Readable;
  /**
   * Whether a worker is known to have taken this request: it sent a record for it, or answered
   * the GET_VALUES probe that went with it.
   */
  readonly answered: boolean;
  /** Resolves on END_REQUEST; rejects when the connection breaks first. */
  readonly ended: Promise<EndRequest>;
}

/**
 * A connection to a FastCGI responder that runs one request at a time. It stays reusable
 * only after a clean END_REQUEST with the whole request sent.
 */
export class FastcgiConnection {
  private readonly reader = new RecordReader();
  private active: ActiveRequest | undefined;
  private broken = false;
  /** Set by the pool while the connection sits idle. */
  idleTimer: NodeJS.Timeout | undefined;
  /** Called when a request ended cleanly and the connection can serve another. */
  onFree: ((connection: FastcgiConnection) => void) | undefined;
  /**
   * Whether the responder ever sent a record here (the answer to the GET_VALUES probe that
   * goes before the first request, or output). Until then the connection may still sit in the
   * listen backlog: a responder's worker serves one connection at a time, and keeps it.
   */
  answered = false;
  /**
   * Whether the responder answers GET_VALUES (php-fpm and fcgiwrap do, uWSGI does not): only
   * then does a probe that goes unanswered show that no worker took the request.
   */
  answersProbes = false;
  /** When the current (or last) request was sent. */
  requestStartedAt = 0;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.broken = true;
      this.active?.fail(new FastcgiConnectionError('the responder closed the connection before ending the request'));
    });
  }

  /** Whether another request may use this connection. */
  get reusable(): boolean {
    return !this.broken && !this.active && !this.socket.destroyed;
  }

  /** Whether a request was sent here that nobody has started to answer yet. */
  get waitingForAcceptance(): boolean {
    return !this.answered && this.active !== undefined && !this.broken;
  }

  /**
   * Starts a request: BEGIN_REQUEST, PARAMS, then STDIN streamed from `input` with backpressure
   * while STDOUT is read. STDERR goes to `onStderr`. With `probe`, a GET_VALUES goes first even
   * on a connection that was answered before, so that `answered` tells whether a worker took it.
   */
  request(
    params: Record<string, string>,
    input: Readable | null,
    keepConnection: boolean,
    onStderr: (chunk: Buffer) => void,
    probe = false,
  ): FastcgiRequest {
    if (this.active) throw new Error('FastCGI connection is busy');
    const active = new ActiveRequest(this.socket, onStderr, () => {
      if (this.active === active) this.active = undefined;
      if (!active.cleanlyEnded || !keepConnection) this.destroy();
      else this.onFree?.(this);
    });
    this.active = active;
    this.requestStartedAt = performance.now();
    // One write for the whole head (and the end of an empty body): a responder wakes once.
    this.socket.cork();
    // On a connection no worker has answered yet, a probe tells when one takes it.
    if (!this.answered || probe) this.socket.write(encodeGetValues());
    this.socket.write(encodeBeginRequest(REQUEST_ID, keepConnection));
    this.socket.write(encodeParams(REQUEST_ID, params));
    active.sendInput(input);
    this.socket.uncork();
    return active;
  }

  destroy(): void {
    this.broken = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let records: FcgiRecord[];
    try {
      records = this.reader.push(chunk);
    } catch (error) {
      this.active?.fail(new FastcgiConnectionError(`protocol error: ${(error as Error).message}`));
      this.destroy();
      return;
    }
    if (records.length > 0) this.answered = true;
    for (const record of records) {
      if (record.type === RecordType.GetValuesResult) {
        this.answersProbes = true;
        // Written as the worker read the probe, before the request behind it.
        if (this.active) this.active.answered = true;
      } else if (record.requestId === REQUEST_ID && this.active) {
        this.active.onRecord(record);
      }
    }
  }
}

class ActiveRequest implements FastcgiRequest {
  readonly stdout: Readable;
  readonly ended: Promise<EndRequest>;
  cleanlyEnded = false;
  answered = false;
  private inputDone = false;
  private finished = false;
  private resolveEnd!: (end: EndRequest) => void;
  private rejectEnd!: (error: Error) => void;
  private input: Readable | null = null;
  private readonly onInput = (chunk: Buffer | string) => this.writeInput(chunk);

  constructor(
    private readonly socket: Socket,
    private readonly onStderr: (chunk: Buffer) => void,
    private readonly onFinish: () => void,
  ) {
    this.ended = new Promise<EndRequest>((resolve, reject) => {
      this.resolveEnd = resolve;
      this.rejectEnd = reject;
    });
    this.ended.catch(() => undefined);
    this.stdout = new Readable({
      read: () => {
        if (this.socket.isPaused()) this.socket.resume();
      },
      destroy: (error, callback) => {
        // Nobody reads the response any more: the request is abandoned with its connection.
        if (!this.finished) this.fail(error ?? new Error('response abandoned'));
        callback(error);
      },
    });
  }

  sendInput(input: Readable | null): void {
    const socket = this.socket;
    const endInput = () => {
      if (this.inputDone || this.finished) return;
      this.inputDone = true;
      socket.write(encodeRecord(RecordType.Stdin, REQUEST_ID));
    };
    if (!input) return endInput();
    this.input = input;
    input.on('data', this.onInput);
    input.once('end', endInput);
    input.once('error', (error) => this.fail(new Error(`request body failed: ${error.message}`)));
  }

  private writeInput(chunk: Buffer | string): void {
    const input = this.input;
    if (this.finished || !input) return;
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let ok = true;
    for (const record of encodeStream(RecordType.Stdin, REQUEST_ID, data)) ok = this.socket.write(record);
    if (!ok) {
      input.pause();
      this.socket.once('drain', () => input.resume());
    }
  }

  onRecord(record: FcgiRecord): void {
    this.answered = true;
    switch (record.type) {
      case RecordType.Stdout:
        if (record.content.length === 0) this.stdout.push(null);
        else if (!this.stdout.push(record.content)) this.socket.pause();
        break;
      case RecordType.Stderr:
        if (record.content.length > 0) this.onStderr(record.content);
        break;
      case RecordType.EndRequest: {
        const end = decodeEndRequest(record.content);
        if (end.protocolStatus !== 0) return this.fail(new FastcgiRefusedError(end.protocolStatus));
        this.cleanlyEnded = this.inputDone && end.protocolStatus === 0;
        this.finish();
        if (!this.stdout.readableEnded) this.stdout.push(null);
        this.resolveEnd(end);
        break;
      }
    }
  }

  fail(error: Error): void {
    if (this.finished) return;
    this.finish();
    this.stdout.destroy(error);
    this.rejectEnd(error);
  }

  private finish(): void {
    this.finished = true;
    if (this.input && !this.input.readableEnded && !this.input.destroyed) {
      // The responder is done: drop the rest of the body without breaking the client's request.
      this.input.off('data', this.onInput);
      this.input.resume();
    }
    if (this.socket.isPaused()) this.socket.resume();
    this.onFinish();
  }
}
