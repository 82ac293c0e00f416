/**
 * Client-sent proxy headers that only count when the Nest app trusts its proxy. Besides the
 * standard ones, the client-address headers that proxies and CDNs set and that apps are
 * commonly configured to believe (PHP's and Django's IP helpers, nginx's real_ip module).
 */
export const FORWARDED_HEADERS: readonly string[] = [
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
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
 * Removes every header whose name is in `names` from flat raw headers, whatever its letter
 * case, `_`/`-` spelling or number of copies.
 */
export function withoutHeaders(raw: readonly string[], names: ReadonlySet<string>): readonly string[] {
  let result: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const drop = names.has(headerKey(raw[i]));
    // Most requests carry none of them: the same array then, no copy.
    if (drop && !result) result = raw.slice(0, i);
    else if (!drop && result) result.push(raw[i], raw[i + 1]);
  }
  return result ?? raw;
}
