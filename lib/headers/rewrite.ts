/** Fix-ups for apps that ignore the prefix they are mounted under. */
export interface RewriteOptions {
  /**
   * Prefix `Location: /login` and `Location: http://<app's host>/login` with the mount point.
   * Locations already under the prefix, relative ones and other hosts are left alone.
   * @default false
   */
  location?: boolean;
  /**
   * Turn `Set-Cookie: …; Path=/` (or any path outside the prefix) into `Path=/prefix…`,
   * keeping every other attribute and every cookie.
   * @default false
   */
  cookiePath?: boolean;
  /**
   * More hosts (`host` or `host:port`) whose absolute Location URLs belong to the app, such
   * as the upstream server's own name. The client-facing host always counts.
   * @default []
   */
  hosts?: string[];
}

export interface RewriteContext {
  /** The mount prefix, `''` or `/…`. */
  prefix: string;
  protocol: string;
  /** The host the client addressed. */
  host: string;
}

/** Applies the rewrite options to a response's headers in place. */
export function rewriteResponseHeaders(headers: Headers, context: RewriteContext, options: RewriteOptions): void {
  if (!context.prefix) return;
  const location = headers.get('location');
  if (options.location && location) {
    const rewritten = rewriteLocation(location, context, options.hosts ?? []);
    if (rewritten !== location) headers.set('location', rewritten);
  }
  if (options.cookiePath) {
    const cookies = headers.getSetCookie();
    if (cookies.length > 0) {
      headers.delete('set-cookie');
      for (const cookie of cookies) headers.append('set-cookie', rewriteCookiePath(cookie, context.prefix));
    }
  }
}

function underPrefix(path: string, prefix: string): string {
  const inside = path === prefix || path.startsWith(prefix + '/') || path.startsWith(prefix + '?');
  return inside ? path : prefix + path;
}

export function rewriteLocation(location: string, context: RewriteContext, hosts: readonly string[]): string {
  if (location.startsWith('/') && !location.startsWith('//')) return underPrefix(location, context.prefix);
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return location;
  }
  const host = url.host.toLowerCase();
  const own = host === context.host.toLowerCase() || hosts.some((h) => h.toLowerCase() === host);
  if (!own || (url.protocol !== 'http:' && url.protocol !== 'https:')) return location;
  const path = underPrefix(url.pathname, context.prefix);
  return `${context.protocol}://${context.host}${path}${url.search}${url.hash}`;
}

export function rewriteCookiePath(cookie: string, prefix: string): string {
  const parts = cookie.split(';');
  const index = parts.findIndex((part, i) => i > 0 && /^\s*path\s*=/i.test(part));
  if (index === -1) return cookie;
  const [name, value = ''] = parts[index].split('=');
  const path = value.trim();
  if (!path.startsWith('/')) return cookie;
  parts[index] = `${name}=${path === '/' ? prefix : underPrefix(path, prefix)}`;
  return parts.join(';');
}
