import { Pool } from 'undici';
import { LeastLoadedBalancer } from '../http/balancer.js';

/** One upstream server: an origin with its connection pool. */
export interface Upstream {
  /** `http://host:port` or `unix:/path`, for logs. */
  readonly name: string;
  /** Path the upstream app lives under (`/base` of `http://host/base`), without trailing `/`. */
  readonly basePath: string;
  /** Host header value when the Host is rewritten to the upstream's. */
  readonly host: string;
  readonly pool: Pool;
  /** Where to open a plain connection (for protocol upgrades, which bypass the pool). */
  readonly endpoint: { protocol: 'http:' | 'https:'; hostname: string; port: number; socketPath?: string };
  /** Until when it is skipped after a failed connect. */
  downUntil: number;
  /**
   * Until when its connections are used once each: set for 10 minutes whenever a connection
   * broke under a request with nothing answered, which is how an upstream that closes kept-alive
   * connections without saying so (uWSGI's --http-socket) shows. A request that may not be sent
   * twice then never meets such a connection.
   */
  closesSilentlyUntil: number;
}

export interface UpstreamPoolSettings {
  connections: number;
  keepAliveTimeout: number;
  connectTimeout: number;
  maxHeaderSize: number;
}

/**
 * Parses `http://host:port/base`, `https://…`, `unix:/path/to.sock` or
 * `http://unix:/path/to.sock:/base` (nginx's spelling) into an upstream with its own pool.
 */
export function createUpstream(target: string | URL, settings: UpstreamPoolSettings): Upstream {
  const text = String(target);
  const poolOptions = {
    connections: settings.connections,
    keepAliveTimeout: settings.keepAliveTimeout,
    connect: { timeout: settings.connectTimeout },
    maxHeaderSize: settings.maxHeaderSize,
  };
  const unix = /^(?:https?:\/\/)?unix:(\/[^:]*)(?::(\/.*))?$/.exec(text);
  if (unix) {
    const [, socketPath, base = ''] = unix;
    return {
      name: `unix:${socketPath}`,
      basePath: trimSlash(base),
      host: 'localhost',
      pool: new Pool('http://localhost', { ...poolOptions, socketPath }),
      endpoint: { protocol: 'http:', hostname: 'localhost', port: 80, socketPath },
      downUntil: 0,
      closesSilentlyUntil: 0,
    };
  }
  const url = new URL(text);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`proxyApp needs an http:, https: or unix: URL, got ${text}`);
  }
  return {
    name: url.origin,
    basePath: trimSlash(url.pathname),
    host: url.host,
    pool: new Pool(url.origin, poolOptions),
    endpoint: {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port) || (url.protocol === 'https:' ? 443 : 80),
    },
    downUntil: 0,
    closesSilentlyUntil: 0,
  };
}

function trimSlash(path: string): string {
  return path.replace(/\/+$/, '');
}

/** The upstreams of one app: least busy first, skipping those that recently refused. */
export class UpstreamBalancer extends LeastLoadedBalancer<Upstream> {
  constructor(readonly upstreams: readonly Upstream[]) {
    if (upstreams.length === 0) throw new TypeError('proxyApp needs at least one upstream');
    super(upstreams, (upstream) => upstream.pool.stats.running + upstream.pool.stats.pending);
  }

  async close(): Promise<void> {
    await Promise.all(this.upstreams.map((u) => u.pool.close().catch(() => undefined)));
  }
}
