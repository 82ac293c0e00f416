/** FastCGI 1.0 record layer: https://fastcgi-archives.github.io/FastCGI_Specification.html */

export const FCGI_VERSION = 1;
export const RecordType = {
  BeginRequest: 1,
  AbortRequest: 2,
  EndRequest: 3,
  Params: 4,
  Stdin: 5,
  Stdout: 6,
  Stderr: 7,
  Data: 8,
  GetValues: 9,
  GetValuesResult: 10,
  UnknownType: 11,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];
export const FCGI_RESPONDER = 1;
export const FCGI_KEEP_CONN = 1;
export const ProtocolStatus = {
  RequestComplete: 0,
  CantMultiplex: 1,
  Overloaded: 2,
  UnknownRole: 3,
} as const;
const HEADER_SIZE = 8;
export const MAX_CONTENT = 0xffff;

export interface FcgiRecord {
  type: number;
  requestId: number;
  content: Buffer;
}

/** One record, padded to a multiple of 8 bytes as the spec recommends. */
export function encodeRecord(type: RecordType, requestId: number, content: Buffer = Buffer.alloc(0)): Buffer {
  if (content.length > MAX_CONTENT) throw new RangeError('FastCGI record content exceeds 65535 bytes');
  const padding = paddingFor(content.length);
  const record = Buffer.alloc(HEADER_SIZE + content.length + padding);
  writeHeader(record, 0, type, requestId, content.length, padding);
  content.copy(record, HEADER_SIZE);
  return record;
}

function paddingFor(contentLength: number): number {
  return (8 - (contentLength % 8)) % 8;
}

function writeHeader(target: Buffer, at: number, type: RecordType, requestId: number, contentLength: number, padding: number): void {
  target[at] = FCGI_VERSION;
  target[at + 1] = type;
  target.writeUInt16BE(requestId, at + 2);
  target.writeUInt16BE(contentLength, at + 4);
  target[at + 6] = padding;
  target[at + 7] = 0;
}

/** A stream's bytes as records of at most 65535 bytes each. */
export function encodeStream(type: RecordType, requestId: number, data: Buffer): Buffer[] {
  const records: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += MAX_CONTENT) {
    records.push(encodeRecord(type, requestId, data.subarray(offset, offset + MAX_CONTENT)));
  }
  return records;
}

export function encodeBeginRequest(requestId: number, keepConnection: boolean): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(FCGI_RESPONDER, 0);
  body[2] = keepConnection ? FCGI_KEEP_CONN : 0;
  return encodeRecord(RecordType.BeginRequest, requestId, body);
}

/**
 * Name-value pairs (spec 3.4) as PARAMS records, then the empty record that ends the stream,
 * in one buffer. Sizes are counted first so that the pairs are written once, in place: a
 * request's twenty-odd params used to cost four small buffers each.
 */
export function encodeParams(requestId: number, params: Record<string, string>): Buffer {
  const names = Object.keys(params);
  const valueLengths = names.map((name) => Buffer.byteLength(params[name], 'utf8'));
  let size = 0;
  for (let i = 0; i < names.length; i++) {
    // Names are written as latin1: one byte per character.
    size += lengthSize(names[i].length) + lengthSize(valueLengths[i]) + names[i].length + valueLengths[i];
  }
  if (size === 0) return encodeRecord(RecordType.Params, requestId);
  if (size > MAX_CONTENT) return encodeLongParams(requestId, names, params, valueLengths);
  const padding = paddingFor(size);
  const records = Buffer.allocUnsafe(HEADER_SIZE + size + padding + HEADER_SIZE);
  writeHeader(records, 0, RecordType.Params, requestId, size, padding);
  const end = writePairs(records, HEADER_SIZE, names, params, valueLengths);
  records.fill(0, end, end + padding);
  writeHeader(records, end + padding, RecordType.Params, requestId, 0, 0);
  return records;
}

/**
 * PARAMS beyond one record: each record carries whole pairs, as PHP reads every record's
 * pairs on their own (a pair cut at a record boundary makes php-fpm drop the connection).
 * Only a pair longer than a record itself is cut, as the spec allows.
 */
function encodeLongParams(requestId: number, names: string[], params: Record<string, string>, valueLengths: number[]): Buffer {
  const records: Buffer[] = [];
  let first = 0;
  while (first < names.length) {
    let size = 0;
    let end = first;
    while (end < names.length) {
      const pair = lengthSize(names[end].length) + lengthSize(valueLengths[end]) + names[end].length + valueLengths[end];
      if (size + pair > MAX_CONTENT && end > first) break;
      size += pair;
      end++;
    }
    const pairs = Buffer.allocUnsafe(size);
    writePairs(pairs, 0, names.slice(first, end), params, valueLengths.slice(first, end));
    records.push(...encodeStream(RecordType.Params, requestId, pairs));
    first = end;
  }
  return Buffer.concat([...records, encodeRecord(RecordType.Params, requestId)]);
}

function writePairs(target: Buffer, at: number, names: string[], params: Record<string, string>, valueLengths: number[]): number {
  for (let i = 0; i < names.length; i++) {
    at = writeLength(target, at, names[i].length);
    at = writeLength(target, at, valueLengths[i]);
    at += target.write(names[i], at, 'latin1');
    at += target.write(params[names[i]], at, 'utf8');
  }
  return at;
}

function lengthSize(length: number): number {
  return length < 0x80 ? 1 : 4;
}

function writeLength(target: Buffer, at: number, length: number): number {
  if (length < 0x80) {
    target[at] = length;
    return at + 1;
  }
  target.writeUInt32BE((length | 0x80000000) >>> 0, at);
  return at + 4;
}

/**
 * A GET_VALUES management record asking for FCGI_MPXS_CONNS. What matters is not the answer
 * but that one comes: a responder answers as soon as a worker has taken the connection.
 */
export function encodeGetValues(): Buffer {
  const name = 'FCGI_MPXS_CONNS';
  const pair = Buffer.allocUnsafe(2 + name.length);
  writePairs(pair, 0, [name], { [name]: '' }, [0]);
  return encodeRecord(RecordType.GetValues, 0, pair);
}

/** Splits a byte stream into records; feed it whatever the socket delivers. */
export class RecordReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): FcgiRecord[] {
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const records: FcgiRecord[] = [];
    while (data.length >= HEADER_SIZE) {
      if (data[0] !== FCGI_VERSION) throw new Error(`unsupported FastCGI version ${data[0]}`);
      const contentLength = data.readUInt16BE(4);
      const total = HEADER_SIZE + contentLength + data[6];
      if (data.length < total) break;
      records.push({
        type: data[1],
        requestId: data.readUInt16BE(2),
        content: data.subarray(HEADER_SIZE, HEADER_SIZE + contentLength),
      });
      data = data.subarray(total);
    }
    this.pending = data.length > 0 ? Buffer.from(data) : Buffer.alloc(0);
    return records;
  }

  get buffered(): number {
    return this.pending.length;
  }
}

export function decodeEndRequest(content: Buffer): { appStatus: number; protocolStatus: number } {
  return { appStatus: content.readUInt32BE(0), protocolStatus: content[4] };
}
