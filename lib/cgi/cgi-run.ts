import type { Readable } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';
import type { GatewayResponse } from '../http/gateway-response.js';
import { respondFromOutput, type CgiResponseLimits } from './cgi-response.js';
import type { CgiResponseHead } from './cgi-response-head.js';
import { signalGroup, type CgiChild, type CgiExit } from './spawner.js';
import { logErrorOutput } from './stderr-log.js';

/** Limits of one CGI process; see `CgiAppOptions` for their meaning and defaults. */
export interface CgiRunLimits extends CgiResponseLimits {
  killGrace: number;
  maxStderrBytes: number;
}

/**
 * One CGI process serving one exchange: feeds its stdin, reads its response, logs its stderr
 * and exit, and ends its whole process group when the request is over, however it ends
 * (done, timed out, client gone, response abandoned).
 */
export class CgiRun {
  private readonly tag: string;
  private exited = false;
  /** The helper saw nothing of the group left when the script exited: there is nothing to stop. */
  private groupEmpty = false;
  private finished = false;
  private stopped = false;
  private exitTimer: NodeJS.Timeout | undefined;
  private totalTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly child: CgiChild,
    private readonly exchange: GatewayExchange,
    private readonly limits: CgiRunLimits,
    private readonly onExited: () => void,
  ) {
    this.tag = `${exchange.name} [pid ${child.pid}]`;
  }

  respond(input: Readable | null): Promise<{ head: CgiResponseHead; response: GatewayResponse }> {
    const { child, exchange, limits } = this;
    logErrorOutput(child.stderr, exchange.logger, this.tag, limits.maxStderrBytes);
    void child.exit.then((exit) => this.onExit(exit));
    child.stdout.once('close', () => this.settle());
    if (limits.totalTimeout > 0) {
      this.totalTimer = setTimeout(() => this.overrun(), limits.totalTimeout);
      this.totalTimer.unref();
    }
    this.feed(input);
    return respondFromOutput(child.stdout, exchange, limits, this.tag, (reason) => this.stop(reason), this.outcome());
  }

  /**
   * A script killed by a signal it did not get from us (a crash, the OOM killer) leaves its
   * body unfinished: the client must see it broken off, not complete. Its end is held until
   * the exit is known; a script that closed its output and runs on has answered all the same.
   */
  private outcome(): Promise<Error | undefined> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      void this.child.exit.then(({ signal }) => {
        clearTimeout(timer);
        resolve(signal && !this.stopped ? new Error(`killed by ${signal}`) : undefined);
      });
      // Not left pending once the exit is known: it would hold the whole run for killGrace.
      this.child.stdout.once('end', () => {
        if (!this.exited) timer = setTimeout(() => resolve(undefined), this.limits.killGrace).unref();
      });
    });
  }

  /** Ends the whole process group: SIGTERM, then SIGKILL after the grace period. */
  private stop(reason: string): void {
    if (this.stopped || this.finished) return;
    this.stopped = true;
    this.exchange.logger.debug?.(`${this.tag} stopping: ${reason}`);
    this.child.stdout.destroy();
    this.child.stdin.destroy();
    this.endGroup();
  }

  /**
   * totalTimeout bounds the whole run: a script that answered, closed its output and works on
   * (which would otherwise hold its concurrency slot for as long as it likes) is stopped too.
   * While the output is open, the response's own limit applies.
   */
  private overrun(): void {
    if (this.exited || this.stopped || !this.child.stdout.closed) return;
    this.exchange.logger.warn(`${this.tag} ran longer than ${this.limits.totalTimeout} ms after its answer; stopping it`);
    this.stop('totalTimeout');
  }

  private feed(input: Readable | null): void {
    const stdin = this.child.stdin;
    stdin.on('error', () => undefined); // EPIPE: the script answered without reading it all
    if (!input) {
      stdin.end();
      return;
    }
    // Not pipeline(): a script that stops reading must not destroy the client's request.
    input.pipe(stdin);
    input.once('error', () => this.stop('request body failed'));
    stdin.once('close', () => {
      input.unpipe(stdin);
      if (!input.readableEnded && !input.destroyed) input.resume();
    });
  }

  private onExit({ code, signal, groupEmpty }: CgiExit): void {
    this.exited = true;
    this.groupEmpty = groupEmpty === true;
    clearTimeout(this.totalTimer);
    this.onExited();
    if (!this.stopped) {
      if (code !== 0) {
        // After the error output that came before the exit: when the script ended before its
        // run began, that output is still waiting in the stream, which flows only from the
        // next tick on.
        const warning = `${this.tag} exited with ${signal ? `signal ${signal}` : `code ${code}`}`;
        setImmediate(() => this.exchange.logger.warn(warning));
      }
      // Output still open after the script exited: a child it forked holds it. Give the pipe a
      // moment to drain, then end the group so that the response can finish.
      if (!this.child.stdout.closed) {
        this.exitTimer = setTimeout(() => this.endGroup(), this.limits.killGrace);
        this.exitTimer.unref();
      }
    }
    this.settle();
  }

  /** Both the process and its output are done: whatever is left in the group goes. */
  private settle(): void {
    if (this.finished || !this.exited || !this.child.stdout.closed) return;
    this.finished = true;
    clearTimeout(this.exitTimer);
    this.endGroup();
  }

  private endGroup(): void {
    if (this.groupEmpty) return;
    const pid = this.child.pid;
    if (!signalGroup(pid, 'SIGTERM')) return;
    setTimeout(() => signalGroup(pid, 'SIGKILL'), this.limits.killGrace).unref();
  }
}
