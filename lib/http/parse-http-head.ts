import { hopByHopNames } from './hop-by-hop.js';

export interface ParsedHead {
  status: number;
  statusText: string;
  headers: Headers;
}

/**
 * Parses the status line and header block that Node's ServerResponse serialised
 * (`HTTP/1.1 200 OK\r\nName: value\r\n...`), minus the terminating blank line.
 * Node has already validated every name and value, so this only splits them.
 */
export function parseHttpHead(head: string): ParsedHead {
  const lines = head.split('\r\n');
  const statusLine = lines[0];
  const firstSpace = statusLine.indexOf(' ');
  const secondSpace = statusLine.indexOf(' ', firstSpace + 1);
  const status = Number(statusLine.slice(firstSpace + 1, secondSpace === -1 ? undefined : secondSpace));
  const statusText = secondSpace === -1 ? '' : statusLine.slice(secondSpace + 1);
  const fields: Array<[string, string]> = [];
  let connection: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'connection') connection = value;
    fields.push([name, value]);
  }
  const dropped = hopByHopNames(connection);
  const headers = new Headers();
  for (const [name, value] of fields) if (!dropped.has(name)) headers.append(name, value);
  return { status, statusText, headers };
}
