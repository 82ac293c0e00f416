import { HOP_BY_HOP_HEADERS, hopByHopNames } from './hop-by-hop.js';

/**
 * Response headers as a source gave them once its parser had checked them (Node's own
 * serialiser for a captured response, undici for an upstream, the CGI head parser): a flat
 * list `[name, value, name, value, …]` of lowercase names, each name once but `set-cookie`,
 * whose values stay apart. A GatewayResponse keeps its headers so until something reads
 * `headers`: building a WHATWG Headers and iterating it (which sorts) costs more than setting
 * the same headers on the client's response (bench/findings.md, tenth round).
 */
export type HeaderPairs = string[];

/** What Node refuses in a header value or reason phrase (its `checkInvalidHeaderChar`): CR, LF, NUL, other controls. */
export const UNSENDABLE_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** A token (RFC 9110 5.6.2): what a header name must be. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Past this many entries (32 names), a list gets an index of where each name is: a scan per
 * header would make a long head cost the square of its length (an app's own head is not
 * capped, a CGI head of the 64 KiB default holds 11,000 names: 0.3 s of scans).
 */
const SCAN_LIMIT = 64;
const indexes = new WeakMap<HeaderPairs, { at: Map<string, number>; upTo: number }>();

/** Adds a header; a name already there gets the value joined with ", ", as `Headers.append` does. */
export function appendPair(pairs: HeaderPairs, name: string, value: string): void {
  if (name !== 'set-cookie') {
    const at = pairs.length <= SCAN_LIMIT ? scanFor(pairs, name) : indexedAt(pairs, name);
    if (at !== -1) {
      pairs[at + 1] = `${pairs[at + 1]}, ${value}`;
      return;
    }
  }
  pairs.push(name, value);
}

/** Replaces every value of `name` by `value`, where the first one was, as `Headers.set` does. */
export function setPair(pairs: HeaderPairs, name: string, value: string): void {
  const at = pairs.length <= SCAN_LIMIT ? scanFor(pairs, name) : indexedAt(pairs, name);
  if (at === -1) {
    pairs.push(name, value);
    return;
  }
  pairs[at + 1] = value;
  // Only Set-Cookie can stand more than once.
  if (name === 'set-cookie') removePairs(pairs, name, at + 2);
}

/** Takes every value of `name` out, from `from` on. */
export function removePairs(pairs: HeaderPairs, name: string, from = 0): void {
  let kept = from;
  for (let i = from; i < pairs.length; i += 2) {
    if (pairs[i] === name) continue;
    pairs[kept] = pairs[i];
    pairs[kept + 1] = pairs[i + 1];
    kept += 2;
  }
  if (kept === pairs.length) return;
  pairs.length = kept;
  // Where the names are has changed.
  indexes.delete(pairs);
}

/** Heads are short as a rule: a scan costs less than any index. */
function scanFor(pairs: HeaderPairs, name: string): number {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === name) return i;
  return -1;
}

/** Where `name` is in a long list; the index first takes in what was pushed since it last looked. */
function indexedAt(pairs: HeaderPairs, name: string): number {
  let index = indexes.get(pairs);
  if (index === undefined) indexes.set(pairs, (index = { at: new Map(), upTo: 0 }));
  for (let i = index.upTo; i < pairs.length; i += 2) if (!index.at.has(pairs[i])) index.at.set(pairs[i], i);
  index.upTo = pairs.length;
  return index.at.get(name) ?? -1;
}

/** The value of a header (Set-Cookie values joined), or null, as `Headers.get` answers. */
export function pairValue(pairs: HeaderPairs, name: string): string | null {
  let found: string | null = null;
  for (let i = 0; i < pairs.length; i += 2) {
    if (pairs[i] === name) found = found === null ? pairs[i + 1] : `${found}, ${pairs[i + 1]}`;
  }
  return found;
}

/** What Node's own `Connection: close` lists, the usual value. */
const CLOSE: ReadonlySet<string> = new Set(['close']);

/**
 * The list without the headers a Connection header lists, which are hop-by-hop too (RFC 9110
 * 7.6.1); the same list when it names none of them (Node's own `close`, an upstream's
 * `keep-alive`, as a rule). Any text may stand there: what is not a header name names nothing.
 * Every caller has taken the hop-by-hop headers out of the list already.
 */
export function withoutConnectionListed(pairs: HeaderPairs, connection: string | undefined): HeaderPairs {
  if (!connection) return pairs;
  const listed = connection === 'close' ? CLOSE : hopByHopNames(connection);
  if (listed === HOP_BY_HOP_HEADERS) return pairs;
  for (let i = 0; i < pairs.length; i += 2) if (listed.has(pairs[i])) return withoutPairs(pairs, listed);
  return pairs;
}

function withoutPairs(pairs: HeaderPairs, names: ReadonlySet<string>): HeaderPairs {
  const kept: HeaderPairs = [];
  for (let i = 0; i < pairs.length; i += 2) if (!names.has(pairs[i])) kept.push(pairs[i], pairs[i + 1]);
  return kept;
}

/** The entries of `headers` as a list, each Set-Cookie on its own (as `Headers` iterates them). */
export function pairsOfHeaders(headers: Headers): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (const [name, value] of headers) pairs.push(name, value);
  return pairs;
}

/**
 * `text` from `start` to `end` without the spaces and tabs around it (RFC 9110 OWS). Not
 * `String.prototype.trim`: the head is latin1 text, and trim would also take a byte A0 (NBSP)
 * off, the last byte of a UTF-8 'à' an app put in a header.
 */
export function withoutOws(text: string, start = 0, end = text.length): string {
  let code: number;
  while (start < end && ((code = text.charCodeAt(start)) === 32 || code === 9)) start++;
  while (end > start && ((code = text.charCodeAt(end - 1)) === 32 || code === 9)) end--;
  return text.slice(start, end);
}
