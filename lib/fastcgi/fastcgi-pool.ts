import { ConcurrencyLimit } from '../cgi/concurrency-limit.js';
import { LeastLoadedBalancer } from '../http/balancer.js';
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

/** One responder: at most `maxConnections` requests at once, idle connections kept for reuse. */
class FastcgiBackend {
  readonly name: string;
  private readonly limit: ConcurrencyLimit;
  private readonly idle: FastcgiConnection[] = [];
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

  async lease(signal: AbortSignal, maxWait: number): Promise<FastcgiLease> {
    const release = await this.limit.acquire(signal, maxWait);
    try {
      const connection = this.takeIdle() ?? (await openConnection(this.address, this.settings.connectTimeout, signal));
      connection.onFree = (free) => this.park(free);
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

  private takeIdle(): FastcgiConnection | undefined {
    for (let connection = this.idle.pop(); connection; connection = this.idle.pop()) {
      clearTimeout(connection.idleTimer);
      if (connection.reusable) return connection;
      connection.destroy();
    }
    return undefined;
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

  async lease(signal: AbortSignal, maxWait: number): Promise<FastcgiLease> {
    const tried = new Set<FastcgiBackend>();
    let lastError: unknown;
    while (tried.size < this.backends.length) {
      const backend = this.balancer.pick(tried)!;
      tried.add(backend);
      try {
        return await backend.lease(signal, maxWait);
      } catch (error) {
        if (!(error instanceof FastcgiConnectionError) || signal.aborted) throw error;
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
