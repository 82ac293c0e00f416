/**
 * Response headers as a source gave them once its parser had checked them (Node's own
 * serialiser for a captured response, undici for an upstream, the CGI head parser): a flat
 * list `[name, value, name, value, …]` of lowercase names, each name once but `set-cookie`,
 * whose values stay apart. A GatewayResponse keeps its headers so until something reads
 * `headers`: building a WHATWG Headers and iterating it (which sorts) costs more than setting
 * the same headers on the client's response (bench/findings.md, tenth round).
 */
export type HeaderPairs = string[];

/** Adds a header; a name already there gets the value joined with ", ", as `Headers.append` does. */
export function appendPair(pairs: HeaderPairs, name: string, value: string): void {
  // Heads are short, and capped but for an app's own (16 KiB from an upstream, the CGI head
  // limit): a scan costs less than any index.
  if (name !== 'set-cookie') {
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i] === name) {
        pairs[i + 1] = `${pairs[i + 1]}, ${value}`;
        return;
      }
    }
  }
  pairs.push(name, value);
}

/** The value of a header (Set-Cookie values joined), or null, as `Headers.get` answers. */
export function pairValue(pairs: HeaderPairs, name: string): string | null {
  let found: string | null = null;
  for (let i = 0; i < pairs.length; i += 2) {
    if (pairs[i] === name) found = found === null ? pairs[i + 1] : `${found}, ${pairs[i + 1]}`;
  }
  return found;
}

/** The list without the headers named (lowercase). */
export function withoutPairs(pairs: HeaderPairs, names: ReadonlySet<string>): HeaderPairs {
  const kept: HeaderPairs = [];
  for (let i = 0; i < pairs.length; i += 2) if (!names.has(pairs[i])) kept.push(pairs[i], pairs[i + 1]);
  return kept;
}

export function headersOfPairs(pairs: HeaderPairs): Headers {
  const headers = new Headers();
  for (let i = 0; i < pairs.length; i += 2) headers.append(pairs[i], pairs[i + 1]);
  return headers;
}
