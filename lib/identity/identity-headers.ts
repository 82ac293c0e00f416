/**
 * Client-sent proxy headers that only count when the Nest app trusts its proxy: `Forwarded`,
 * every `X-Forwarded-*` (see `X_FORWARDED`), and the client-address headers that proxies and
 * CDNs set and that apps are commonly configured to believe (PHP's and Django's IP helpers,
 * nginx's real_ip module).
 */
export const FORWARDED_HEADERS: readonly string[] = [
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
];

/** Lower case, `_` as `-`: CGI, WSGI and some proxies fold `Remote_User` into `Remote-User`. */
export function headerKey(name: string): string {
  const lower = name.toLowerCase();
  // Runs for every header of every request: the regular expression only when it has work.
  return lower.includes('_') ? lower.replace(/_/g, '-') : lower;
}

/**
 * The start of every header name a proxy in front may set about the client: not only For,
 * Host and Proto but Ssl and Scheme (Rack), Email, Groups and Preferred-Username
 * (oauth2-proxy), Client-Cert (Envoy), Uri, and whatever comes next. Apps believe them all.
 */
export const X_FORWARDED = 'x-forwarded-';

/**
 * Removes every header whose name is in `names` from flat raw headers, whatever its letter
 * case, `_`/`-` spelling or number of copies; with `xForwarded`, every `X-Forwarded-*` too.
 */
export function withoutHeaders(raw: readonly string[], names: ReadonlySet<string>, xForwarded = false): readonly string[] {
  let result: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const key = headerKey(raw[i]);
    const drop = names.has(key) || (xForwarded && key.startsWith(X_FORWARDED));
    // Most requests carry none of them: the same array then, no copy.
    if (drop && !result) result = raw.slice(0, i);
    else if (!drop && result) result.push(raw[i], raw[i + 1]);
  }
  return result ?? raw;
}
