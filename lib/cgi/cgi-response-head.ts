import { appendPair, type HeaderPairs, pairValue, TOKEN, UNSENDABLE_VALUE, withoutConnectionListed, withoutOws } from '../http/header-pairs.js';
import { HOP_BY_HOP_HEADERS } from '../http/hop-by-hop.js';

/** The head of a CGI response (RFC 3875 6.2), as a script or FastCGI responder printed it. */
export interface CgiResponseHead {
  status: number;
  /** The reason phrase from `Status:`, when the script gave one. */
  statusText?: string;
  pairs: HeaderPairs;
  /** Set for a local redirect (RFC 3875 6.2.2): `Location: /path` without a Status. */
  localRedirect?: string;
  /**
   * Set when a Status came with neither Content-Type nor Location: a valid response only if
   * no body follows (RFC 3875 6.3.1), which the reader of the output checks.
   */
  untyped?: true;
}

/** The script's output is not a valid CGI response: the client gets a 502, the reason is logged. */
export class CgiProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CgiProtocolError';
  }
}

// Not 1xx: an informational status cannot end a response, and the client would wait for one.
const STATUS = /^([2-5]\d\d)(?:[ \t]+(.*))?$/;
/** Statuses that carry no body, so a head without Content-Type is complete. */
const BODYLESS = new Set([204, 304]);

/**
 * Incremental parser of a CGI header block: lines end with LF or CRLF, the block ends with an
 * empty line, names are case-insensitive, the whole block is capped. Written once for CGI
 * scripts and FastCGI responders.
 */
export class CgiHeadParser {
  private readonly lines: string[] = [];
  private pending = Buffer.alloc(0);
  private headBytes = 0;
  private sawOutput = false;

  constructor(private readonly maxBytes: number) {}

  /** Feeds output; once the blank line has arrived, returns the head and the body bytes after it. */
  push(chunk: Buffer): { head: CgiResponseHead; rest: Buffer } | undefined {
    if (chunk.length > 0) this.sawOutput = true;
    const data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const lf = data.indexOf(0x0a, start);
      if (lf === -1) break;
      const end = lf > start && data[lf - 1] === 0x0d ? lf - 1 : lf;
      const line = data.toString('latin1', start, end);
      this.headBytes += lf + 1 - start;
      start = lf + 1;
      if (this.headBytes > this.maxBytes) this.tooBig();
      if (line === '') return { head: interpret(this.lines), rest: data.subarray(start) };
      this.lines.push(line);
    }
    const left = data.subarray(start);
    if (this.headBytes + left.length > this.maxBytes) this.tooBig();
    // A copy, so that a large chunk is not retained for the sake of a partial line.
    this.pending = Buffer.from(left);
    return undefined;
  }

  /** The output ended: it never finished its header block. */
  end(): never {
    if (!this.sawOutput) throw new CgiProtocolError('sent no output');
    throw new CgiProtocolError('output ended before the blank line that ends the headers');
  }

  private tooBig(): never {
    throw new CgiProtocolError(`headers exceed ${this.maxBytes} bytes`);
  }
}

function interpret(lines: readonly string[]): CgiResponseHead {
  const appended: HeaderPairs = [];
  let status: number | undefined;
  let statusText: string | undefined;
  const connection: string[] = [];
  for (const line of lines) {
    if (line[0] === ' ' || line[0] === '\t') throw new CgiProtocolError('folded header lines are not allowed');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw new CgiProtocolError(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    const value = withoutOws(line, colon + 1);
    if (UNSENDABLE_VALUE.test(value)) {
      throw new CgiProtocolError(`header ${name} contains a control character (CR, LF or NUL)`);
    }
    const lower = name.toLowerCase();
    if (lower === 'status') {
      const match = STATUS.exec(value);
      if (!match || status !== undefined) throw new CgiProtocolError(`invalid Status header ${JSON.stringify(value)}`);
      status = Number(match[1]);
      statusText = match[2] || undefined;
    } else if (lower === 'connection') {
      connection.push(value);
    } else if (!HOP_BY_HOP_HEADERS.has(lower)) {
      appendPair(appended, lower, value);
    }
  }
  const pairs = withoutConnectionListed(appended, connection.join(','));
  const location = pairValue(pairs, 'location');
  if (location !== null && status === undefined) {
    const local = location.startsWith('/') && !location.startsWith('//');
    return { status: 302, pairs, localRedirect: local ? location : undefined };
  }
  if (status === undefined && pairValue(pairs, 'content-type') === null) {
    throw new CgiProtocolError('sent none of Content-Type, Location or Status');
  }
  status ??= 200;
  if (pairValue(pairs, 'content-type') === null && location === null && !BODYLESS.has(status)) {
    return { status, statusText, pairs, untyped: true };
  }
  return { status, statusText, pairs };
}

/** A body came after a head that may only stand alone. */
export function untypedBodyError(): CgiProtocolError {
  return new CgiProtocolError('sent a body without Content-Type');
}
