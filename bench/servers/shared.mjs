// Shared pieces of the bench servers (no Nest here: the references must not load it). Every server runs in a process of its own, listens on an
// ephemeral port on 127.0.0.1 and prints one JSON line `{"port":N}` on stdout when it is ready.
import express from 'express';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export const HELLO = 'hello\n';
export const MIB = 1024 * 1024;

/** The workload of the mount rows: an Express app that answers every path with a short text. */
export function helloExpress() {
  const sub = express();
  sub.disable('x-powered-by');
  sub.use((_req, res) => {
    res.set('content-type', 'text/plain');
    res.send(HELLO);
  });
  return sub;
}

/** Announces the port to the orchestrator, and exits cleanly on SIGTERM. */
export function ready(port, close) {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  process.once('SIGTERM', async () => {
    try {
      await close?.();
    } finally {
      process.exit(0);
    }
  });
}

/** A source of `size` bytes that never holds more than one 64 KiB chunk. */
export function source(size) {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      const n = Math.min(chunk.length, size - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

/** A sink that counts and hashes what it is given. */
export function counter() {
  const hash = createHash('sha256');
  let bytes = 0;
  const sink = new Writable({
    write(data, _encoding, callback) {
      bytes += data.length;
      hash.update(data);
      callback();
    },
  });
  return { sink, result: () => ({ bytes, sha256: hash.digest('hex') }) };
}

/**
 * A Node listener for the streaming rows: `GET …?mib=N` streams N MiB, `POST` consumes the body
 * and answers with its size and sha256. Anything else: the hello text.
 */
export async function streamListener(req, res) {
  const mib = new URL(req.url, 'http://x').searchParams.get('mib');
  if (req.method === 'POST') {
    const c = counter();
    await pipeline(req, c.sink);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(c.result()));
  } else if (mib) {
    res.setHeader('content-type', 'application/octet-stream');
    await pipeline(source(Number(mib) * MIB), res).catch(() => undefined);
  } else {
    res.setHeader('content-type', 'text/plain');
    res.end(HELLO);
  }
}
