import { appendPair, type HeaderPairs, withoutOws, withoutPairs } from './header-pairs.js';
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

export interface ParsedHead {
  status: number;
  statusText: string;
  pairs: HeaderPairs;
}

/** What Node's own `Connection: close` lists, the usual value. */
const CLOSE: ReadonlySet<string> = new Set(['close']);
const NOTHING: ReadonlySet<string> = new Set();

/**
 * Parses the status line and header block that Node's ServerResponse serialised
 * (`HTTP/1.1 200 OK\r\nName: value\r\n...`), minus the terminating blank line.
 * Node has already validated every name and value, so this only splits them.
 * Hop-by-hop headers are dropped, and so are those the Connection header names.
 */
export function parseHttpHead(head: string): ParsedHead {
  let lineEnd = head.indexOf('\r\n');
  const statusLine = lineEnd === -1 ? head : head.slice(0, lineEnd);
  const firstSpace = statusLine.indexOf(' ');
  const secondSpace = statusLine.indexOf(' ', firstSpace + 1);
  const status = Number(statusLine.slice(firstSpace + 1, secondSpace === -1 ? undefined : secondSpace));
  const statusText = secondSpace === -1 ? '' : statusLine.slice(secondSpace + 1);
  // Appended as they come; the names a Connection header lists are taken out at the end. It
  // lists nothing but `close` as a rule (Node's own), and no header is named so as a rule.
  const pairs: HeaderPairs = [];
  let connection: string | undefined;
  let namedClose = false;
  while (lineEnd !== -1) {
    const start = lineEnd + 2;
    lineEnd = head.indexOf('\r\n', start);
    const end = lineEnd === -1 ? head.length : lineEnd;
    const colon = head.indexOf(':', start);
    if (colon <= start || colon >= end) continue;
    const name = head.slice(start, colon).toLowerCase();
    const value = withoutOws(head, colon + 1, end);
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else if (!HOP_BY_HOP_HEADERS.has(name)) {
      if (name === 'close') namedClose = true;
      appendPair(pairs, name, value);
    }
  }
  const listed = connectionTokens(connection);
  const dropsAny = listed === CLOSE ? namedClose : listed.size > 0;
  return { status, statusText, pairs: dropsAny ? withoutPairs(pairs, listed) : pairs };
}

/** The header names a Connection header lists (Node lets an app send any text there). */
function connectionTokens(connection: string | undefined): ReadonlySet<string> {
  if (!connection) return NOTHING;
  if (connection === 'close') return CLOSE;
  return new Set(connection.split(',').map((token) => token.trim().toLowerCase()));
}
