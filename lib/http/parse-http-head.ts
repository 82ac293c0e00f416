import { appendPair, type HeaderPairs, withoutConnectionListed, withoutOws } from './header-pairs.js';
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

export interface ParsedHead {
  status: number;
  statusText: string;
  pairs: HeaderPairs;
}

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
  // Appended as they come; the names a Connection header lists are taken out at the end.
  const pairs: HeaderPairs = [];
  let connection: string | undefined;
  while (lineEnd !== -1) {
    const start = lineEnd + 2;
    lineEnd = head.indexOf('\r\n', start);
    const end = lineEnd === -1 ? head.length : lineEnd;
    const colon = head.indexOf(':', start);
    if (colon <= start || colon >= end) continue;
    const name = head.slice(start, colon).toLowerCase();
    const value = withoutOws(head, colon + 1, end);
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else if (!HOP_BY_HOP_HEADERS.has(name)) appendPair(pairs, name, value);
  }
  return { status, statusText, pairs: withoutConnectionListed(pairs, connection) };
}
