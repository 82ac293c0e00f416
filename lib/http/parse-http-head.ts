import { HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

export interface ParsedHead {
  status: number;
  statusText: string;
  headers: Headers;
}

/** What Node's own `Connection: close` lists, the usual value. */
const CLOSE: readonly string[] = ['close'];
const NOTHING: readonly string[] = [];

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
  const fields: string[] = [];
  let connection: string | undefined;
  while (lineEnd !== -1) {
    const start = lineEnd + 2;
    lineEnd = head.indexOf('\r\n', start);
    const end = lineEnd === -1 ? head.length : lineEnd;
    const colon = head.indexOf(':', start);
    if (colon <= start || colon >= end) continue;
    const name = head.slice(start, colon).toLowerCase();
    const value = head.slice(colon + 1, end).trim();
    if (name === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
    else fields.push(name, value);
  }
  const listed = connectionTokens(connection);
  const headers = new Headers();
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    if (!HOP_BY_HOP_HEADERS.has(name) && !listed.includes(name)) headers.append(name, fields[i + 1]);
  }
  return { status, statusText, headers };
}

/** The header names a Connection header lists. */
function connectionTokens(connection: string | undefined): readonly string[] {
  if (!connection) return NOTHING;
  if (connection === 'close') return CLOSE;
  const names: string[] = [];
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) names.push(name);
  }
  return names;
}
