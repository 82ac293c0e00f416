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
  const padding = (8 - (content.length % 8)) % 8;
  const record = Buffer.alloc(HEADER_SIZE + content.length + padding);
  record[0] = FCGI_VERSION;
  record[1] = type;
  record.writeUInt16BE(requestId, 2);
  record.writeUInt16BE(content.length, 4);
  record[6] = padding;
  content.copy(record, HEADER_SIZE);
  return record;
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

/** Name-value pairs (spec 3.4), then the empty record that ends the PARAMS stream. */
export function encodeParams(requestId: number, params: Record<string, string>): Buffer[] {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(params)) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'utf8');
    parts.push(encodeLength(n.length), encodeLength(v.length), n, v);
  }
  return [...encodeStream(RecordType.Params, requestId, Buffer.concat(parts)), encodeRecord(RecordType.Params, requestId)];
}

/**
 * A GET_VALUES management record asking for FCGI_MPXS_CONNS. What matters is not the answer
 * but that one comes: a responder answers as soon as a worker has taken the connection.
 */
export function encodeGetValues(): Buffer {
  const name = Buffer.from('FCGI_MPXS_CONNS', 'latin1');
  return encodeRecord(RecordType.GetValues, 0, Buffer.concat([encodeLength(name.length), encodeLength(0), name]));
}

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE((length | 0x80000000) >>> 0);
  return buf;
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
