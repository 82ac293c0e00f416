import { type IncomingHttpHeaders, IncomingMessage } from 'node:http';

/**
 * Node counts a request's raw header lines in a private field, set by its parser, and builds
 * `headersDistinct` from that many entries of `rawHeaders`: with fewer lines than it counts, the
 * getter throws; with more, it leaves the rest out. Found by its description, once.
 */
const kHeadersCount = Object.getOwnPropertySymbols(new IncomingMessage(null as never)).find(
  (symbol) => symbol.description === 'kHeadersCount',
);

/**
 * Gives a request these header lines, as Node's parser would have: `rawHeaders`, `headers` and
 * `headersDistinct` all show them. `headersDistinct` is built when first read, as Node does;
 * one built from the lines before is dropped (it may hold a client's forged identity).
 */
export function setHeaderLines(req: IncomingMessage, rawHeaders: string[], headers: IncomingHttpHeaders): void {
  req.rawHeaders = rawHeaders;
  req.headers = headers;
  if (kHeadersCount !== undefined) {
    (req as unknown as Record<symbol, number>)[kHeadersCount] = rawHeaders.length;
    // Node's setter: an empty value makes the getter build it again.
    req.headersDistinct = null as unknown as IncomingMessage['headersDistinct'];
  } else {
    req.headersDistinct = distinctHeaders(rawHeaders);
  }
}

/** Node's `headersDistinct`: every value of each name, in order, under its lower-case name. */
function distinctHeaders(raw: readonly string[]): IncomingMessage['headersDistinct'] {
  const distinct: Record<string, string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (Object.hasOwn(distinct, name)) distinct[name].push(raw[i + 1]);
    else distinct[name] = [raw[i + 1]];
  }
  return distinct;
}
