import { Logger } from '@nestjs/common';
import { ConcurrencyLimit } from '../cgi/concurrency-limit.js';
import { LeastLoadedBalancer } from '../http/balancer.js';
import type { AbortWatch } from '../http/abort-watch.js';
import {
  describeAddress,
  FastcgiConnectionError,
  openConnection,
  type FastcgiAddress,
  type FastcgiConnection,
} from './fastcgi-connection.js';

export interface FastcgiPoolSettings {
  maxConnections: number;
  maxQueue: number;
  keepAliveTimeout: number;
  connectTimeout: number;
}

/** A connection lent to one request; `release` gives its slot back (idempotent). */
export interface FastcgiLease {
  connection: FastcgiConnection;
  release(): void;
}

/** After a learned ceiling, how long before one more connection is tried. */
const REGROW_AFTER_MS = 5000;
/** A request no worker took for this long, while another connection finished one, is starved. */
const STARVED_AFTER_MS = 20;
const logger = new Logger('Gateway');

/**
 * One responder: at most `maxConnections` requests at once, idle connections kept for reuse.
 *
 * A responder's worker (php-fpm child, fcgiwrap process) serves one kept-alive connection at a
 * time and stays with it until it closes. More connections than workers would sit in the
 * listen backlog with a request each, served only when another connection closes: under load,
 * never. So a new connection's first request goes with a GET_VALUES probe, which a worker
 * answers as soon as it takes the connection. When a connection finishes a request while
 * another still waits for a worker (longer than the finished request, or a while), the finished
 * connection is closed, which frees its worker for the waiting one, and the number of
 * connections the responder does serve becomes the ceiling. Every few seconds under load, one
 * more connection is tried in case the responder grew.
 */
class FastcgiBackend {
  readonly name: string;
  private readonly limit: ConcurrencyLimit;
  private readonly idle: FastcgiConnection[] = [];
  private readonly open = new Set<FastcgiConnection>();
  private ceilingSetAt = 0;
  private ceilingLogged = false;
  /** Leases opening a connection right now: each takes a connection parked meanwhile. */
  private connecting = 0;
  /** Until when this backend is skipped after a failed connect. */
  downUntil = 0;

  constructor(
    readonly address: FastcgiAddress,
    private readonly settings: FastcgiPoolSettings,
  ) {
    this.name = describeAddress(address);
    this.limit = new ConcurrencyLimit(settings.maxConnections, settings.maxQueue, `FastCGI responder ${this.name}`);
  }

  /** Requests running or waiting, relative to capacity: what the balancer compares. */
  get load(): number {
    return (this.limit.running + this.limit.pending) / this.limit.max;
  }

  /** How many requests run at once: `maxConnections`, or less once the responder showed fewer workers. */
  get capacity(): number {
    return this.limit.max;
  }

  async lease(abort: AbortWatch, maxWait: number): Promise<FastcgiLease> {
    this.maybeRegrow();
    const release = await this.limit.acquire(abort, maxWait);
    try {
      const connection = this.takeIdle() ?? (await this.connectOrTakeFreed(abort));
      connection.onFree = (free) => this.onFree(free);
      return { connection, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  close(): void {
    for (const connection of this.idle.splice(0)) {
      clearTimeout(connection.idleTimer);
      connection.destroy();
    }
  }

  private async connectOrTakeFreed(abort: AbortWatch): Promise<FastcgiConnection> {
    this.connecting++;
    let connection: FastcgiConnection;
    try {
      connection = await openConnection(this.address, this.settings.connectTimeout, abort);
    } finally {
      this.connecting--;
    }
    // A connection freed meanwhile is known to have a worker; the new one may have none yet.
    const freed = this.takeIdle();
    if (freed) {
      connection.destroy();
      return freed;
    }
    this.open.add(connection);
    connection.socket.once('close', () => this.open.delete(connection));
    return connection;
  }

  private takeIdle(): FastcgiConnection | undefined {
    for (let connection = this.idle.pop(); connection; connection = this.idle.pop()) {
      clearTimeout(connection.idleTimer);
      if (connection.reusable) return connection;
      connection.destroy();
    }
    return undefined;
  }

  private onFree(connection: FastcgiConnection): void {
    if (!this.waitingBesides(connection).length) return this.park(connection);
    // Decided after this turn's reads are processed: answers that already arrived count.
    setImmediate(() => this.freeWhileOthersWait(connection));
  }

  private freeWhileOthersWait(connection: FastcgiConnection): void {
    if (!connection.reusable) return;
    const waiting = this.waitingBesides(connection);
    const now = performance.now();
    const starved = waiting.some(
      (other) => other.requestStartedAt < connection.requestStartedAt || now - other.requestStartedAt >= STARVED_AFTER_MS,
    );
    if (starved) {
      // Every worker is busy with a connection of ours: their number is the responder's capacity.
      const served = [...this.open].filter((other) => other.answered && !other.waitingForAcceptance).length;
      connection.destroy();
      this.lowerCeiling(served);
    } else if (waiting.length > 0 && this.connecting === 0) {
      // Parked, it would keep its worker idle while a request may need that worker (a lease
      // that is opening a connection would take it instead).
      connection.destroy();
    } else {
      this.park(connection);
    }
  }

  private waitingBesides(connection: FastcgiConnection): FastcgiConnection[] {
    return [...this.open].filter((other) => other !== connection && other.waitingForAcceptance);
  }

  /**
   * One step down at a time (never below what was seen served): a count taken while workers
   * change hands can come out low, and a ceiling too low would idle the responder.
   */
  private lowerCeiling(served: number): void {
    this.ceilingSetAt = performance.now();
    const max = this.limit.max;
    if (served >= max) return;
    this.limit.resize(Math.max(served, max - 1));
    if (!this.ceilingLogged) {
      this.ceilingLogged = true;
      logger.log(
        `FastCGI responder ${this.name} has fewer workers than maxConnections (${this.settings.maxConnections}); the pool keeps to the connections it serves`,
      );
    }
  }

  private maybeRegrow(): void {
    const max = this.limit.max;
    if (max >= this.settings.maxConnections || this.limit.running < max) return;
    if (performance.now() - this.ceilingSetAt < REGROW_AFTER_MS) return;
    this.ceilingSetAt = performance.now();
    this.limit.resize(max + 1);
  }

  private park(connection: FastcgiConnection): void {
    if (this.settings.keepAliveTimeout <= 0 || this.idle.length >= this.settings.maxConnections) {
      connection.destroy();
      return;
    }
    connection.idleTimer = setTimeout(() => {
      const index = this.idle.indexOf(connection);
      if (index !== -1) this.idle.splice(index, 1);
      connection.destroy();
    }, this.settings.keepAliveTimeout);
    connection.idleTimer.unref();
    this.idle.push(connection);
  }
}

/**
 * Responders of one app, balanced by least load. A responder that refuses connections is
 * skipped for a few seconds while others take its requests.
 */
export class FastcgiPool {
  private readonly backends: FastcgiBackend[];
  private readonly balancer: LeastLoadedBalancer<FastcgiBackend>;

  constructor(addresses: FastcgiAddress[], settings: FastcgiPoolSettings) {
    if (addresses.length === 0) throw new TypeError('fastcgiApp needs at least one address');
    this.backends = addresses.map((address) => new FastcgiBackend(address, settings));
    this.balancer = new LeastLoadedBalancer(this.backends, (backend) => backend.load);
  }

  async lease(abort: AbortWatch, maxWait: number): Promise<FastcgiLease> {
    const tried = new Set<FastcgiBackend>();
    let lastError: unknown;
    while (tried.size < this.backends.length) {
      const backend = this.balancer.pick(tried)!;
      tried.add(backend);
      try {
        return await backend.lease(abort, maxWait);
      } catch (error) {
        if (!(error instanceof FastcgiConnectionError) || abort.aborted) throw error;
        backend.downUntil = Date.now() + 5000;
        lastError = error;
      }
    }
    throw lastError;
  }

  close(): void {
    for (const backend of this.backends) backend.close();
  }
}
