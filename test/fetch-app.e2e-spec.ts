/**
 * The fetch app adapter's edge cases, over real HTTP: the lazy Request (streamed POST bodies,
 * `json()`, `clone()`, `new Request(request, init)`, `request.signal` before and after the real
 * Request exists) and the response paths (a body complete at once, a streamed body under
 * backpressure, HEAD, a Content-Length that does not match, immutable headers).
 *
 * Every scenario runs through a mount (`@MountGateway`, which answers on the client's response
 * directly) and through `callApp` (which returns a GatewayResponse), unless it is about one.
 */
import { All, Controller, Get, Inject, Module, Req } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { fetchApp, GatewayModule, GatewayService, MountGateway, PathInfo } from 'nest-gateway';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import { gzipSync } from 'node:zlib';
import { send, type Reply } from './fixtures/http-client.js';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

const MiB = 1024 * 1024;
const STREAM_CHUNK = 256 * 1024;
const STREAM_TOTAL = 64 * MiB;

/** What one request's app saw, keyed by the x-probe header. */
class Probe {
  readonly events: string[] = [];
  pulledBytes = 0;
  /** Lets an app that waits for the test go on. */
  release = () => undefined as void;
  seen(event: string): Promise<void> {
    return waitFor(() => this.events.includes(event), 3000, `${event} (saw ${this.events.join(', ')})`);
  }
}
const probes = new Map<string, Probe>();
let probeCount = 0;
function newProbe(): [string, Probe] {
  const id = `probe-${++probeCount}`;
  const probe = new Probe();
  probes.set(id, probe);
  return [id, probe];
}
const probeOf = (request: Request) => probes.get(request.headers.get('x-probe') ?? '') ?? new Probe();

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A body that never ends (a line every 20 ms) and reports its cancellation. */
function endless(probe: Probe): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('first\n'));
    },
    async pull(controller) {
      await sleep(20);
      controller.enqueue(new TextEncoder().encode('more\n'));
    },
    cancel() {
      probe.events.push('cancel');
    },
  });
}

const handlers: Record<string, (request: Request) => Response | Promise<Response>> = {
  /** Reads the body chunk by chunk, reporting each, and answers with its length and hash. */
  async '/stream-in'(request) {
    const probe = probeOf(request);
    const chunks: Uint8Array[] = [];
    for await (const chunk of request.body as unknown as AsyncIterable<Uint8Array>) {
      chunks.push(chunk);
      probe.events.push('chunk');
    }
    const body = Buffer.concat(chunks);
    return Response.json({ length: body.length, sha256: sha256(body) });
  },
  /** Reads a chunk of the body and refuses the rest, as an upload limit does. */
  async '/cancel-upload'(request) {
    // Bytes pile up in the request's stream meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const reader = request.body!.getReader();
    let read = 0;
    while (read < 1024) {
      const { done, value } = await reader.read();
      if (done) break;
      read += value.length;
    }
    await reader.cancel();
    return new Response('too big', { status: 413 });
  },
  async '/json'(request) {
    return Response.json({ method: request.method, got: await request.json(), used: request.bodyUsed });
  },
  /** A body read once is used: a second read, a clone and a new Request from it all fail. */
  async '/read-twice'(request) {
    const first = await request.text();
    const failures = await Promise.all([
      request.text().then(() => 'none', (error: Error) => error.name),
      Promise.resolve().then(() => request.clone()).then(() => 'none', (error: Error) => error.name),
      Promise.resolve().then(() => new Request(request)).then(() => 'none', (error: Error) => error.name),
    ]);
    return Response.json({ first, used: request.bodyUsed, failures });
  },
  async '/array-buffer'(request) {
    const buffer = await request.arrayBuffer();
    return Response.json({ isArrayBuffer: buffer instanceof ArrayBuffer, length: buffer.byteLength, sha256: sha256(new Uint8Array(buffer)) });
  },
  /** Reads the whole body at once, reporting how that ends. */
  async '/read-all'(request) {
    const probe = probeOf(request);
    request.signal.addEventListener('abort', () => probe.events.push('signal-abort'), { once: true });
    const reading = request.text();
    probe.events.push('reading');
    await reading.then(
      () => probe.events.push('body-read'),
      () => probe.events.push('body-error'),
    );
    return new Response('read');
  },
  async '/clone'(request) {
    const copy = request.clone();
    const [original, cloned] = await Promise.all([request.text(), copy.text()]);
    return Response.json({ original, cloned, used: request.bodyUsed, copyIsRequest: copy instanceof Request });
  },
  /** What Hono's bodyLimit middleware does: a new Request from the app's own. */
  async '/rewrap'(request) {
    const rewrapped = new Request(request, { headers: { 'x-added': 'yes', 'content-type': 'text/plain' } });
    return Response.json({
      isRequest: request instanceof Request,
      url: rewrapped.url === request.url,
      method: rewrapped.method,
      added: rewrapped.headers.get('x-added'),
      body: await rewrapped.text(),
      inspected: inspect(request).includes(request.url),
    });
  },
  /** The real Request exists (the body was read) before the app listens to its signal. */
  async '/signal-after-body'(request) {
    const probe = probeOf(request);
    await request.text();
    request.signal.addEventListener('abort', () => probe.events.push('signal-abort'), { once: true });
    return new Response(endless(probe));
  },
  /** Looks at the signal for the first time only after the client has had time to go away. */
  async '/signal-late'(request) {
    const probe = probeOf(request);
    probe.events.push('waiting');
    await sleep(300);
    probe.events.push(request.signal.aborted ? 'late-aborted' : 'late-not-aborted');
    return new Response('late');
  },
  /** Only the lazy Request's signal is used. */
  '/signal-lazy'(request) {
    const probe = probeOf(request);
    request.signal.addEventListener('abort', () => probe.events.push('signal-abort'), { once: true });
    return new Response(endless(probe));
  },
  /** 64 MiB in 256 KiB chunks, produced only when pulled. */
  '/big'(request) {
    const probe = probeOf(request);
    const chunk = new Uint8Array(STREAM_CHUNK).fill(7);
    return new Response(
      new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (probe.pulledBytes >= STREAM_TOTAL) return controller.close();
            probe.pulledBytes += chunk.length;
            controller.enqueue(chunk.slice());
          },
          cancel() {
            probe.events.push('cancel');
          },
        },
        { highWaterMark: 0 },
      ),
      { headers: { 'content-type': 'application/octet-stream' } },
    );
  },
  /** An event stream whose first event waits for the test (as one may wait for minutes). */
  '/events-later'(request) {
    const probe = probeOf(request);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        probe.release = () => {
          probe.release = () => undefined;
          controller.enqueue(new TextEncoder().encode('data: first\n\n'));
          controller.close();
        };
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  },
  /** A body for a HEAD request: never sent, and cancelled. */
  '/head'(request) {
    const probe = probeOf(request);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new TextEncoder().encode('hello world'));
        controller.close();
      },
      cancel() {
        probe.events.push('cancel');
      },
    });
    return new Response(body, { headers: { 'content-length': '11', 'x-head': request.method } });
  },
  '/complete'() {
    const headers = new Headers({ 'content-type': 'text/plain', 'x-extra': 'kept' });
    headers.append('set-cookie', 'a=1; Path=/');
    headers.append('set-cookie', 'b=2; Path=/');
    return new Response('all at once', { headers });
  },
  /** A header `Headers` takes and Node refuses to send (a control character). */
  '/unsendable-whole'() {
    return new Response('never sent', { headers: { 'x-note': 'bell \x07 in it' } });
  },
  '/unsendable-streamed'(request) {
    return new Response(endless(probeOf(request)), { headers: { 'x-note': 'bell \x07 in it' } });
  },
  /** Two Content-Length headers of one length, folded into a list. */
  '/listed-length'(request) {
    return new Response(request.method === 'HEAD' ? null : 'hello', { headers: { 'content-length': '5, 5' } });
  },
  /** Framing twice over: Transfer-Encoding and a Content-Length. */
  '/chunked-and-length'() {
    return new Response('hello', { headers: { 'transfer-encoding': 'chunked', 'content-length': '5' } });
  },
  '/too-long'() {
    return new Response('hello', { headers: { 'content-length': '3' } });
  },
  '/too-short'() {
    return new Response('hi', { headers: { 'content-length': '10' } });
  },
  '/redirect'(request) {
    return Response.redirect(new URL('/login', request.url).href, 302);
  },
  '/empty'() {
    return new Response(null, { status: 204, headers: { 'x-empty': 'yes' } });
  },
  // A fetch() result: undici has decoded the gzip body, yet keeps Content-Encoding (and the
  // encoded Content-Length).
  '/relay-gzip'() {
    return fetch(gzipUpstream.url);
  },
  // No body, yet a Content-Length: a keep-alive client would wait for the bytes, then read
  // the next response on the connection as them.
  '/length-no-body'() {
    return new Response(null, { headers: { 'content-type': 'text/plain', 'content-length': '5' } });
  },
  '/where'(request) {
    const url = new URL(request.url);
    return Response.json({ pathname: url.pathname, search: url.search });
  },
};

const app = fetchApp((request) => {
  const handler = handlers[new URL(request.url).pathname];
  return handler ? handler(request) : new Response('not here', { status: 404 });
});

const hono = new Hono();
hono.post('/limited', bodyLimit({ maxSize: 16, onError: (c) => c.text('too big', 413) }), async (c) => c.text(await c.req.text()));

@MountGateway('m', app)
class FetchMount {}

@MountGateway('m-rewrite', app, { rewrite: { location: true } })
class FetchRewriteMount {}

@MountGateway('hono', hono)
class HonoMount {}

/** An upstream that gzips its answer; started before the suite. */
const gzipUpstream = { url: '', server: undefined as http.Server | undefined };
const GZIPPED_TEXT = 'hello from a gzipping upstream';

@Controller('c')
class CallController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}
  @Get('text-of/*path')
  async textOf(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return { text: await (await this.gateway.callApp(app, req, pathInfo)).text() };
  }

  @All('*path')
  call(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(app, req, pathInfo);
  }
}

/** Uploads that an app refuses after its first chunk: whole in the request's stream by then, or not. */
const UPLOAD_SIZES = [48 * 1024, 200 * 1024, 4 * 1024 * 1024];

/** GETs `path` and disconnects after the first chunk of the response. */
function disconnectAfterFirstChunk(url: string, options: { method?: string; headers: Record<string, string>; body?: string }) {
  return new Promise<void>((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => undefined);
    req.end(options.body);
  });
}

describe('fetch apps', () => {
  let s: Started;
  beforeAll(async () => {
    gzipUpstream.server = http.createServer((_req, res) => {
      const body = gzipSync(GZIPPED_TEXT);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => gzipUpstream.server!.listen(0, '127.0.0.1', resolve));
    gzipUpstream.url = `http://127.0.0.1:${(gzipUpstream.server.address() as AddressInfo).port}/`;
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [FetchMount, FetchRewriteMount, HonoMount, CallController],
    });
  });
  afterAll(async () => {
    await s.close();
    gzipUpstream.server?.close();
  });

  describe.each([
    ['mounted', '/m'],
    ['called', '/c'],
  ])('%s', (_kind, prefix) => {
    it('streams a POST body to the app while the client is still sending it', async () => {
      const [id, probe] = newProbe();
      const part = 'x'.repeat(64 * 1024);
      const reply = new Promise<Pick<Reply, 'status' | 'body'>>((resolve, reject) => {
        const req = http.request(`${s.url}${prefix}/stream-in`, {
          method: 'POST',
          agent: false,
          headers: { 'x-probe': id, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
        });
        req.on('response', (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
        req.write(part);
        // The rest follows only once the app has read the first part.
        probe.seen('chunk').then(() => req.end(part), reject);
      });
      const res = await within(reply, 5000, 'streamed upload');
      expect(res.status).toBe(200);
      const body = Buffer.from(part + part);
      expect(JSON.parse(res.body.toString())).toEqual({ length: body.length, sha256: sha256(body) });
    });

    it('an app that cancels the request body while bytes wait unread: nothing is thrown, the next request is served', async () => {
      const uncaught: unknown[] = [];
      const onUncaught = (error: unknown) => uncaught.push(error);
      process.on('uncaughtException', onUncaught);
      try {
        for (let i = 0; i < UPLOAD_SIZES.length; i++) {
          const status = await new Promise<number | string>((resolve) => {
            const req = http.request(`${s.url}${prefix}/cancel-upload`, {
              method: 'POST',
              agent: false,
              headers: { 'content-type': 'application/octet-stream', 'content-length': String(UPLOAD_SIZES[i]) },
            });
            req.on('response', (res) => {
              res.resume();
              resolve(res.statusCode!);
            });
            // The app stops reading: the connection may be closed under the rest of the upload.
            req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
            req.end(Buffer.alloc(UPLOAD_SIZES[i], 1));
          });
          expect([413, 'ECONNRESET', 'EPIPE']).toContain(status);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        expect(uncaught).toEqual([]);
        expect((await send(`${s.url}${prefix}/json`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })).status).toBe(200);
      } finally {
        process.off('uncaughtException', onUncaught);
      }
    });

    it('passes on a fetch() result as decoded: no Content-Encoding for a body undici already decoded', async () => {
      const res = await send(`${s.url}${prefix}/relay-gzip`);
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body.toString()).toBe(GZIPPED_TEXT);
      expect(res.headers['content-length'] ?? String(res.body.length)).toBe(String(res.body.length));
    });

    it('a response with no body but a Content-Length is broken off, not left for the client to wait on', async () => {
      await expect(within(send(`${s.url}${prefix}/length-no-body`), 3000, 'the response to end or break')).rejects.toThrow(/aborted|hang up|ECONNRESET/);
    });

    it('parses a JSON body with request.json()', async () => {
      const res = await send(`${s.url}${prefix}/json`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: ['{"a":', '[1,2]}'],
      });
      expect(JSON.parse(res.body.toString())).toEqual({ method: 'POST', got: { a: [1, 2] }, used: true });
    });

    it('parses JSON that starts with a byte order mark', async () => {
      const res = await send(`${s.url}${prefix}/json`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ['\ufeff{"bom":true}'] });
      expect(JSON.parse(res.body.toString())).toEqual({ method: 'POST', got: { bom: true }, used: true });
    });

    it('reads a body once: reading again, cloning or rewrapping it fails as for any used Request', async () => {
      const res = await send(`${s.url}${prefix}/read-twice`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: ['once'] });
      expect(JSON.parse(res.body.toString())).toEqual({ first: 'once', used: true, failures: ['TypeError', 'TypeError', 'TypeError'] });
    });

    it('gives arrayBuffer() the exact bytes of a binary body', async () => {
      const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) % 256));
      const res = await send(`${s.url}${prefix}/array-buffer`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: [body.subarray(0, 100_000), body.subarray(100_000)],
      });
      expect(JSON.parse(res.body.toString())).toEqual({ isArrayBuffer: true, length: body.length, sha256: sha256(body) });
    });

    it('fails a whole-body read, and aborts request.signal, when the client goes away mid-upload', async () => {
      const [id, probe] = newProbe();
      const req = http.request(`${s.url}${prefix}/read-all`, {
        method: 'POST',
        agent: false,
        headers: { 'x-probe': id, 'content-type': 'application/octet-stream', 'content-length': String(MiB) },
      });
      req.on('error', () => undefined);
      req.write(Buffer.alloc(16 * 1024, 1));
      await probe.seen('reading');
      await sleep(50);
      req.destroy();
      await probe.seen('body-error');
      await probe.seen('signal-abort');
    });

    it('clones the request with its body', async () => {
      const res = await send(`${s.url}${prefix}/clone`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: ['twice'] });
      expect(JSON.parse(res.body.toString())).toEqual({ original: 'twice', cloned: 'twice', used: true, copyIsRequest: true });
    });

    it('builds a new Request from the app request, as Hono middleware does', async () => {
      const res = await send(`${s.url}${prefix}/rewrap`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: ['the body'] });
      expect(JSON.parse(res.body.toString())).toEqual({
        isRequest: true,
        url: true,
        method: 'POST',
        added: 'yes',
        body: 'the body',
        inspected: true,
      });
    });

    it('holds a streamed response body back while the client does not read', async () => {
      const [id, probe] = newProbe();
      const done = new Promise<{ bytes: number; pulledWhilePaused: number }>((resolve, reject) => {
        http.get(`${s.url}${prefix}/big`, { agent: false, headers: { 'x-probe': id } }, (res) => {
          let bytes = 0;
          res.once('data', async (chunk: Buffer) => {
            bytes += chunk.length;
            res.pause();
            await sleep(300);
            const pulledWhilePaused = probe.pulledBytes;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => resolve({ bytes, pulledWhilePaused }));
            res.resume();
          });
        }).on('error', reject);
      });
      const { bytes, pulledWhilePaused } = await within(done, 20_000, 'big download');
      // Socket and stream buffers hold a few MiB at most; the app did not run ahead.
      expect(pulledWhilePaused).toBeLessThan(16 * MiB);
      expect(bytes).toBe(STREAM_TOTAL);
    });

    it('sends the head of a stream at once, before its first bytes (an EventSource opens on it)', async () => {
      const [id, probe] = newProbe();
      let req!: http.ClientRequest;
      const head = new Promise<http.IncomingMessage>((resolve, reject) => {
        req = http.get(`${s.url}${prefix}/events-later`, { agent: false, headers: { 'x-probe': id } }, resolve).on('error', reject);
      });
      try {
        const res = await within(head, 3000, 'the head before any body');
        expect(res.headers['content-type']).toBe('text/event-stream');
        probe.release();
        let text = '';
        res.setEncoding('utf8').on('data', (data: string) => (text += data));
        await within(once(res, 'end'), 3000, 'the first event');
        expect(text).toBe('data: first\n\n');
      } finally {
        probe.release();
        req.destroy();
      }
    });

    it('sends no body for HEAD, keeps Content-Length and cancels the app body', async () => {
      const [id, probe] = newProbe();
      const res = await send(`${s.url}${prefix}/head`, { method: 'HEAD', headers: { 'x-probe': id } });
      expect(res.status).toBe(200);
      expect(res.headers['content-length']).toBe('11');
      expect(res.headers['x-head']).toBe('HEAD');
      expect(res.body.length).toBe(0);
      await probe.seen('cancel');
    });

    it('sends a body complete at once with every header and each Set-Cookie', async () => {
      const res = await send(`${s.url}${prefix}/complete`);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('all at once');
      expect(res.headers['x-extra']).toBe('kept');
      expect(res.headers['content-type']).toBe('text/plain');
      expect(res.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    });

    it('answers 500 for a header Node refuses to send, and cancels a streamed body', async () => {
      const whole = await within(send(`${s.url}${prefix}/unsendable-whole`), 3000, 'an answer');
      expect(whole.status).toBe(500);
      expect(whole.headers['x-note']).toBeUndefined();
      const [id, probe] = newProbe();
      const streamed = await within(send(`${s.url}${prefix}/unsendable-streamed`, { headers: { 'x-probe': id } }), 3000, 'an answer');
      expect(streamed.status).toBe(500);
      await probe.seen('cancel');
    });

    it('sends a Content-Length of one repeated length as that length, for GET and HEAD alike', async () => {
      for (const method of ['GET', 'HEAD']) {
        const res = await within(send(`${s.url}${prefix}/listed-length`, { method }), 3000, `an answer to ${method}`);
        expect([method, res.status, res.headers['content-length'], res.body.toString()]).toEqual([
          method,
          200,
          '5',
          method === 'HEAD' ? '' : 'hello',
        ]);
      }
    });

    it('sends no Content-Length beside a Transfer-Encoding', async () => {
      const res = await within(send(`${s.url}${prefix}/chunked-and-length`), 3000, 'an answer');
      expect([res.status, res.headers['content-length'], res.headers['transfer-encoding'], res.body.toString()]).toEqual([
        200,
        undefined,
        'chunked',
        'hello',
      ]);
    });

    it('sends exactly the declared Content-Length of a longer body', async () => {
      const res = await send(`${s.url}${prefix}/too-long`);
      expect(res.headers['content-length']).toBe('3');
      expect(res.body.toString()).toBe('hel');
    });

    it('breaks the response of a body shorter than its Content-Length', async () => {
      await expect(send(`${s.url}${prefix}/too-short`)).rejects.toThrow();
    });

    it('passes 204 without a body', async () => {
      const res = await send(`${s.url}${prefix}/empty`);
      expect(res.status).toBe(204);
      expect(res.headers['x-empty']).toBe('yes');
      expect(res.body.length).toBe(0);
    });

    it.each(['evil.example/admin', 'evil.example?x=', 'evil.example#', 'a b'])(
      'gives the app its own path and query whatever the client puts in Host (%s)',
      async (host) => {
        const res = await send(`${s.url}${prefix}/where?q=1`, { headers: { host } });
        expect(res.status).toBe(200);
        expect(res.json()).toEqual({ pathname: '/where', search: '?q=1' });
      },
    );
  });

  describe('request.signal aborts when the client goes away', () => {
    it.each([
      ['the lazy request', '/m/signal-lazy', 'GET'],
      ['the lazy request, through callApp', '/c/signal-lazy', 'GET'],
      ['the real request, after the body was read', '/m/signal-after-body', 'POST'],
    ])('%s', async (_label, path, method) => {
      const [id, probe] = newProbe();
      await within(
        disconnectAfterFirstChunk(`${s.url}${path}`, {
          method,
          headers: { 'x-probe': id, 'content-type': 'text/plain' },
          body: method === 'POST' ? 'some body' : undefined,
        }),
        3000,
        'first chunk',
      );
      await probe.seen('signal-abort');
      await probe.seen('cancel');
    });
  });

  describe('request.signal first read after the client went away', () => {
    it.each([
      ['a mount', '/m/signal-late'],
      ['callApp', '/c/signal-late'],
    ])('%s: it is already aborted', async (_label, path) => {
      const [id, probe] = newProbe();
      const req = http.get(`${s.url}${path}`, { headers: { 'x-probe': id } });
      req.on('error', () => undefined);
      await probe.seen('waiting');
      req.destroy();
      await probe.seen('late-aborted');
    });

    it('and not aborted when the client stayed', async () => {
      const [id, probe] = newProbe();
      const res = await send(`${s.url}/m/signal-late`, { headers: { 'x-probe': id } });
      expect(res.body.toString()).toBe('late');
      await probe.seen('late-not-aborted');
    });
  });

  it("callApp: text() of a fetch() result is the decoded text", async () => {
    expect((await send(`${s.url}/c/text-of/relay-gzip`)).json()).toEqual({ text: GZIPPED_TEXT });
  });

  it('copies immutable response headers (Response.redirect) before a rewrite changes them', async () => {
    const res = await send(`${s.url}/m-rewrite/redirect`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${s.url}/m-rewrite/login`);
  });

  it("runs Hono's bodyLimit middleware, which rebuilds the request", async () => {
    const small = await send(`${s.url}/hono/limited`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: ['small'] });
    expect(small.status).toBe(200);
    expect(small.body.toString()).toBe('small');
    const big = await send(`${s.url}/hono/limited`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' },
      body: ['much more than ', 'sixteen bytes'],
    });
    expect(big.status).toBe(413);
  });
});

describe('fetch apps on an IPv6 address', () => {
  let app: Awaited<ReturnType<typeof NestFactory.create>>;
  let port: number;
  beforeAll(async () => {
    @Module({ imports: [GatewayModule.forRoot()], controllers: [FetchMount] })
    class Ipv6Module {}
    app = await NestFactory.create(Ipv6Module, { logger: false });
    await app.listen(0, '::1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });
  afterAll(() => app.close());

  it.each([
    ['no Host (HTTP/1.0)', 'GET /m/where?q=1 HTTP/1.0\r\n\r\n'],
    ['an invalid Host', 'GET /m/where?q=1 HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n'],
  ])('builds the request URL from the socket address for %s', async (_label, request) => {
    const socket = net.connect(port, '::1');
    socket.end(request);
    const chunks: Buffer[] = [];
    for await (const chunk of socket) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString();
    expect(text.split('\r\n')[0]).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toEqual({ pathname: '/where', search: '?q=1' });
  });
});
