import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

export interface ParsedHead {
  status: number;
  statusText: string;
  headers: Headers;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

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
  const headers = new Headers();
  let connection: string | undefined;
  while (lineEnd !== -1) {
    const start = lineEnd + 2;
    lineEnd = head.indexOf('\r\n', start);
    const end = lineEnd === -1 ? head.length : lineEnd;
    const colon = head.indexOf(':', start);
    if (colon <= start || colon >= end) continue;
    const name = head.slice(start, colon).toLowerCase();
    const value = head.slice(colon + 1, end).trim();
    if (!HOP_BY_HOP_HEADERS.has(name)) headers.append(name, value);
    else if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
  }
  if (connection) dropListed(headers, connection);
  return { status, statusText, headers };
}

/** Removes the headers a Connection header lists (Node adds `Connection: close` itself). */
function dropListed(headers: Headers, connection: string): void {
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    // A name that is no token cannot be among the headers (and Headers would throw on it).
    if (name && TOKEN.test(name)) headers.delete(name);
  }
}
