/** Fix-ups for apps that ignore the prefix they are mounted under. */
export interface RewriteOptions {
  /**
   * Prefix `Location: /login` and `Location: http://<app's host>/login` with the mount point.
   * Locations already under the prefix, relative ones and other hosts are left alone. An
   * upstream's paths under its base path (`proxyApp('http://host/base')`) get the prefix in
   * place of the base, as with `cookiePath`.
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

// Responses of apps whose own URLs start with a base path (a proxied upstream's `/base`), kept
// apart from the response so that the common case, no base, costs nothing.
const appBases = new WeakMap<object, string>();

/**
 * Says that the app that gave `response` lives under `base` on its own server: with `rewrite`,
 * its paths under `base` map to the mount prefix (`/base/login` to `/prefix/login`).
 */
export function setAppBase(response: object, base: string): void {
  if (base) appBases.set(response, base);
}

/** Applies the rewrite options to a response's headers in place. */
export function rewriteResponseHeaders(headers: Headers, context: RewriteContext, options: RewriteOptions, response?: object): void {
  if (!context.prefix) return;
  const base = (response && appBases.get(response)) ?? '';
  const location = headers.get('location');
  if (options.location && location) {
    const rewritten = rewriteLocation(location, context, options.hosts ?? [], base);
    if (rewritten !== location) headers.set('location', rewritten);
  }
  if (options.cookiePath) {
    const cookies = headers.getSetCookie();
    if (cookies.length > 0) {
      headers.delete('set-cookie');
      for (const cookie of cookies) headers.append('set-cookie', rewriteCookiePath(cookie, context.prefix, base));
    }
  }
}

/** `path` under `prefix`: as it is when already there, with the app's `base` swapped for it, else prefixed. */
function underPrefix(path: string, prefix: string, base = ''): string {
  if (within(path, prefix)) return path;
  return base && within(path, base) ? prefix + path.slice(base.length) : prefix + path;
}

/** Whether `path` is `prefix` itself, or it followed by a path, a query or a fragment. */
function within(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  const rest = path.charCodeAt(prefix.length);
  return path.length === prefix.length || rest === SLASH || rest === QUESTION_MARK || rest === HASH;
}

const SLASH = 0x2f;
const QUESTION_MARK = 0x3f;
const HASH = 0x23;

/**
 * `location` under the mount, when it is a path on the app's own host (a root-relative path,
 * or an absolute or scheme-relative URL on the client-facing host or one of `hosts`).
 * An absolute URL gets the client-facing host and, unless the app asked for https, the
 * client's scheme: an app that redirects to https (forcing TLS) keeps it, where a downgrade
 * would loop.
 */
export function rewriteLocation(location: string, context: RewriteContext, hosts: readonly string[], base = ''): string {
  const schemeRelative = location.startsWith('//');
  if (location.startsWith('/') && !schemeRelative) return underPrefix(location, context.prefix, base);
  let url: URL;
  try {
    // Paths relative to the request's own (`login`, `../x`) are under the prefix already.
    url = schemeRelative ? new URL(`${context.protocol}:${location}`) : new URL(location);
  } catch {
    return location;
  }
  const host = url.host.toLowerCase();
  const own = host === context.host.toLowerCase() || hosts.some((h) => h.toLowerCase() === host);
  if (!own || (url.protocol !== 'http:' && url.protocol !== 'https:')) return location;
  const path = underPrefix(url.pathname, context.prefix, base);
  const rest = `//${context.host}${path}${url.search}${url.hash}`;
  if (schemeRelative) return rest;
  return `${url.protocol === 'https:' ? 'https' : context.protocol}:${rest}`;
}

/**
 * The cookie with every Path attribute outside the prefix moved under it (browsers take the
 * last one), every other attribute and the value as they were. The prefix comes from the
 * client's request path, where `;` may stand: it is escaped, or a link to
 * `/mount;Domain=…/` would give the cookie attributes of the client's choosing.
 */
export function rewriteCookiePath(cookie: string, prefix: string, base = ''): string {
  const parts = cookie.split(';');
  let changed = false;
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i];
    const equals = part.indexOf('=');
    if (equals === -1 || part.slice(0, equals).trim().toLowerCase() !== 'path') continue;
    const path = part.slice(equals + 1).trim();
    if (!path.startsWith('/')) continue;
    const safePrefix = cookieSafe(prefix);
    parts[i] = `${part.slice(0, equals)}=${path === '/' ? safePrefix : underPrefix(path, safePrefix, base)}`;
    changed = true;
  }
  return changed ? parts.join(';') : cookie;
}

/** A cookie attribute's value holds no `;` and no control characters (RFC 6265, 4.1.1). */
function cookieSafe(path: string): string {
  // eslint-disable-next-line no-control-regex
  return /[;\x00-\x1f\x7f]/.test(path) ? path.replace(/[;\x00-\x1f\x7f]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`) : path;
}
