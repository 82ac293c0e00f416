/** Client-sent proxy headers that only count when the Nest app trusts its proxy. */
export const FORWARDED_HEADERS: readonly string[] = [
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
];

/** Lower case, `_` as `-`: CGI, WSGI and some proxies fold `Remote_User` into `Remote-User`. */
export function headerKey(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

/**
 * Removes every header whose name is in `names` from flat raw headers, whatever its letter
 * case, `_`/`-` spelling or number of copies.
 */
export function withoutHeaders(raw: readonly string[], names: ReadonlySet<string>): string[] {
  const result: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!names.has(headerKey(raw[i]))) result.push(raw[i], raw[i + 1]);
  }
  return result;
}
