/**
 * Edge cases of the capture path (`GatewayService.callApp` of a Node listener), over real HTTP,
 * with the same app mounted directly as the reference where both must behave alike: bodies
 * longer than their Content-Length, bodies written in many small writes under backpressure,
 * apps that never end, clients that leave mid-body, HEAD, 204/304, interim 1xx responses,
 * header bytes, and Express apps whose request and response are built on their own prototypes.
 */
import { All, Controller, Inject, Req } from '@nestjs/common';
import express from 'express';
import { GatewayModule, GatewayService, MountGateway, PathInfo, type NodeListener } from 'nest-gateway';
import http, { type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

const KiB = 1024;
const TRICKLE_CHUNKS = 256;
const CALLBACK_WRITES = 48;
const MiB = 1024 * KiB;

/** Writes 8 KiB chunks, each after the last one's callback, until the response is closed. */
async function writeAwaitingCallbacks(res: ServerResponse, events: string[]): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (res.destroyed) return void events.push('stopped: destroyed');
    try {
      await new Promise<void>((resolve, reject) => res.write(Buffer.alloc(8 * KiB, 97), (error) => (error ? reject(error) : resolve())));
    } catch (error) {
      events.push(`write failed: ${(error as Error).message}`);
      throw error;
    }
  }
  res.end();
}

/** What the apps saw, by request id (`x-id`). */
const seen = new Map<string, { events: string[]; writes: boolean[] }>();
/** Lets an app that waits for the test go on, by request id. */
const releases = new Map<string, () => void>();
function record(req: IncomingMessage) {
  const id = String(req.headers['x-id'] ?? '');
  const entry = { events: [] as string[], writes: [] as boolean[] };
  if (id) seen.set(id, entry);
  return entry;
}

function trickleChunk(i: number): Buffer {
  return Buffer.alloc(KiB, i % 256);
}

/** Writes TRICKLE_CHUNKS chunks of 1 KiB, waiting for 'drain' whenever write() says so. */
async function trickle(res: ServerResponse, writes: boolean[]): Promise<void> {
  for (let i = 0; i < TRICKLE_CHUNKS; i++) {
    const ok = res.write(trickleChunk(i));
    writes.push(ok);
    if (!ok) await once(res, 'drain');
  }
  res.end();
}

const edgeListener: NodeListener = (req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  const entry = record(req);
  res.once('close', () => entry.events.push(res.writableFinished ? 'res-close-finished' : 'res-close-unfinished'));
  switch (path) {
    case '/socket-state': {
      const socket = res.socket!;
      const state = () => ({ writableEnded: socket.writableEnded, writableFinished: socket.writableFinished, closed: socket.closed, errored: socket.errored?.message ?? null });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(state()));
      return;
    }
    case '/socket-destroyed': {
      const socket = res.socket!;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      socket.once('close', () => entry.events.push(`socket closed: ${socket.closed}, errored: ${socket.errored?.message}, writableEnded: ${socket.writableEnded}`));
      setTimeout(() => socket.destroy(new Error('app gave up')), 20);
      return;
    }
    case '/overflow':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
      res.end('hello, and more than was announced');
      return;
    case '/overflow-late':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
      res.write('hel');
      setTimeout(() => res.end('lo, and more than was announced'), 20);
      return;
    case '/trickle':
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TRICKLE_CHUNKS * KiB) });
      void trickle(res, entry.writes);
      return;
    case '/trickle-unsized':
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      void trickle(res, entry.writes);
      return;
    case '/callbacks': {
      // Ignores backpressure: every write's callback must still run, once and in order.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.once('finish', () => entry.events.push('finish'));
      for (let i = 0; i < CALLBACK_WRITES; i++) res.write(trickleChunk(i), () => entry.events.push(`cb${i}`));
      res.end(() => entry.events.push('end-cb'));
      return;
    }
    case '/awaited-writes':
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return writeAwaitingCallbacks(res, entry.events);
    case '/big-end':
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.once('finish', () => entry.events.push('finish'));
      res.end(Buffer.alloc(MiB, 7), () => entry.events.push('end-cb'));
      return;
    case '/never-ends':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      return;
    case '/slow': {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(100 * KiB) });
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed || sent >= 100) return clearInterval(timer);
        sent++;
        res.write(Buffer.alloc(KiB, 'x'));
        if (sent === 100) res.end();
      }, 10);
      return;
    }
    case '/sized':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11' });
      res.end('hello world'); // Node itself drops it for HEAD
      return;
    case '/no-content':
      res.writeHead(204, { 'x-kind': 'empty' });
      res.end('dropped by Node');
      return;
    case '/not-modified':
      res.writeHead(304, { etag: '"v1"' });
      res.end();
      return;
    case '/early-hints':
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.setHeader('content-type', 'text/plain');
      res.end('hinted');
      return;
    case '/continue':
      res.writeContinue();
      res.end('continued');
      return;
    case '/flushed':
      // An event stream that tells the client it is open, then waits for its first event.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      releases.set(String(req.headers['x-id']), () => res.end('data: first\n\n'));
      return;
    case '/trailers':
      // A Server-Timing trailer, as apps send to report the time the body took.
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'server-timing' });
      res.write('timed ');
      res.addTrailers({ 'server-timing': 'body;dur=1' });
      res.end('body');
      return;
    case '/utf8-header-streamed':
      // UTF-8 bytes in a header, the way Node takes them (one character per byte), before a
      // body of unknown length: Node sends it chunked, its head apart from the body's encoding.
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-name': Buffer.from('café').toString('latin1') });
      res.end('\u00fcn\u00efcode');
      return;
    case '/latin1-header':
      res.setHeader('x-name', 'caf\u00e9');
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.end('\u00fcn\u00efcode');
      return;
    default:
      res.statusCode = 404;
      res.end('nope');
  }
};

@MountGateway('mounted', edgeListener)
class MountedEdges {}

/** An Express app that uses what Express puts on its request and response prototypes. */
function expressApp() {
  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    res.locals.seenBy = 'middleware';
    next();
  });
  app.get('/info', (req, res) => {
    res.json({
      query: req.query,
      path: req.path,
      baseUrl: req.baseUrl,
      originalUrl: req.originalUrl,
      locals: res.locals.seenBy,
      isIncoming: req instanceof http.IncomingMessage,
      isResponse: res instanceof http.ServerResponse,
      ownPrototype: Object.getPrototypeOf(req) === app.request && Object.getPrototypeOf(res) === app.response,
    });
  });
  return app;
}
const sharedExpress = expressApp();

/** An Express app whose request prototype refuses what Node's constructor assigns. */
const strictExpress = express();
Object.defineProperty(strictExpress.request, 'aborted', { get: () => 'from the prototype', configurable: true });
strictExpress.get('/', (req, res) => void res.send(`aborted: ${String((req as { aborted: unknown }).aborted)}`));

/** A listener that happens to carry `request`/`response` properties that are no prototypes. */
const decoyListener = Object.assign((req: IncomingMessage, res: ServerResponse) => void res.end(`decoy ${req.url}`), {
  request: { not: 'a prototype' },
  response: 42,
});

@Controller()
class CallingEdges {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All('called/*path')
  called(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(edgeListener, req, pathInfo);
  }

  @All('express/*path')
  express(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(sharedExpress, req, pathInfo);
  }

  @All('strict-express')
  strict(@Req() req: unknown) {
    return this.gateway.callApp(strictExpress, req, '');
  }

  @All('decoy/*path')
  decoy(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(decoyListener, req, pathInfo);
  }

  @All('replaced/*path')
  async replaced(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(edgeListener, req, pathInfo);
    response.body = 'replaced';
    return response;
  }

  @All('read/*path')
  async read(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(edgeListener, req, pathInfo);
    return { status: response.status, text: await response.text() };
  }
}

interface RawResponse {
  status: number;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
}

function get(url: string, init: { method?: string; id?: string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', agent: false, headers: init.id ? { 'x-id': init.id } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends requests one after the other on one keep-alive connection; returns all bytes received. */
async function onOneConnection(url: string, paths: string[]): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await once(socket, 'connect');
  let received = '';
  socket.setEncoding('latin1').on('data', (data: string) => (received += data));
  paths.forEach((path, i) => {
    const last = i === paths.length - 1;
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n${last ? 'Connection: close\r\n' : ''}\r\n`);
  });
  await within(once(socket, 'close'), 5000, 'the server to close the connection');
  return received;
}

describe.each(['mounted', 'called'])('%s Node app: edge cases of the response', (kind) => {
  let s: Started;
  let server: Server;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [MountedEdges, CallingEdges] });
    server = s.app.getHttpServer() as Server;
  });
  afterAll(() => s.close());
  const url = (path: string) => `${s.url}/${kind}${path}`;
  const openConnections = () =>
    new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));

  it('streams a body of many small writes under backpressure byte for byte, with and without Content-Length', async () => {
    for (const path of ['/trickle', '/trickle-unsized']) {
      const id = `${kind}${path}`;
      const res = await get(url(path), { id });
      expect(res.status).toBe(200);
      expect(res.body.length).toBe(TRICKLE_CHUNKS * KiB);
      for (let i = 0; i < TRICKLE_CHUNKS; i++) expect(res.body[i * KiB]).toBe(i % 256);
      expect(seen.get(id)?.writes).toHaveLength(TRICKLE_CHUNKS);
      await waitFor(() => seen.get(id)?.events.includes('res-close-finished') ?? false, 2000, `${id}: app response closes finished`);
    }
  });

  it("runs every write callback of an app that ignores backpressure once, in order, then 'finish'", async () => {
    const id = `${kind}-callbacks-${Date.now()}`;
    const res = await get(url('/callbacks'), { id });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(CALLBACK_WRITES * KiB);
    for (let i = 0; i < CALLBACK_WRITES; i++) expect(res.body[i * KiB]).toBe(i % 256);
    await waitFor(() => seen.get(id)?.events.includes('end-cb') ?? false, 2000, `${id}: end callback`);
    const events = seen.get(id)!.events;
    const callbacks = events.filter((event) => event.startsWith('cb'));
    expect(callbacks).toEqual(Array.from({ length: CALLBACK_WRITES }, (_, i) => `cb${i}`));
    expect(events.indexOf(`cb${CALLBACK_WRITES - 1}`)).toBeLessThan(events.indexOf('finish'));
    expect(events.filter((event) => event === 'finish')).toHaveLength(1);
    expect(events).toContain('res-close-finished');
  });

  it("reports its socket's state as a net.Socket does (writableEnded, writableFinished, closed, errored)", async () => {
    const res = await get(url('/socket-state'));
    expect(JSON.parse(res.body.toString())).toEqual({ writableEnded: false, writableFinished: false, closed: false, errored: null });
    const id = `${kind}-socket-destroyed`;
    await expect(get(url('/socket-destroyed'), { id })).rejects.toThrow();
    await waitFor(() => (seen.get(id)?.events ?? []).some((e) => e.startsWith('socket closed')), 2000, 'the socket to close');
    expect(seen.get(id)!.events).toContain('socket closed: true, errored: app gave up, writableEnded: false');
  });

  it('keeps Content-Length and sends no body for HEAD', async () => {
    const res = await get(url('/sized'), { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('11');
    expect(res.body.length).toBe(0);
  });

  it('passes 204 and 304 without a body, even when the app writes one', async () => {
    const noContent = await get(url('/no-content'));
    expect(noContent.status).toBe(204);
    expect(noContent.headers['x-kind']).toBe('empty');
    expect(noContent.body.length).toBe(0);
    const notModified = await get(url('/not-modified'));
    expect(notModified.status).toBe(304);
    expect(notModified.headers.etag).toBe('"v1"');
    expect(notModified.body.length).toBe(0);
  });

  it('sends the final response after an interim 103 Early Hints', async () => {
    const res = await get(url('/early-hints'));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('hinted');
  });

  it('passes header bytes exactly as Node would send them (a latin1 value next to a utf-8 body)', async () => {
    const res = await get(url('/latin1-header'));
    const mounted = await get(`${s.url}/mounted/latin1-header`);
    expect(res.rawHeaders[res.rawHeaders.findIndex((h) => h.toLowerCase() === 'x-name') + 1]).toBe(
      mounted.rawHeaders[mounted.rawHeaders.findIndex((h) => h.toLowerCase() === 'x-name') + 1],
    );
    expect(res.body.toString('utf8')).toBe('\u00fcn\u00efcode');
  });

  it('sends a head the app flushed before any of its body', async () => {
    const id = `${kind}-flushed-${Date.now()}`;
    let req!: http.ClientRequest;
    const head = new Promise<IncomingMessage>((resolve, reject) => {
      req = http.get(url('/flushed'), { agent: false, headers: { 'x-id': id } }, resolve).on('error', reject);
    });
    try {
      const res = await within(head, 3000, 'the head before any body');
      expect(res.headers['content-type']).toBe('text/event-stream');
      releases.get(id)!();
      let text = '';
      res.setEncoding('utf8').on('data', (data: string) => (text += data));
      await within(once(res, 'end'), 3000, 'the body');
      expect(text).toBe('data: first\n\n');
    } finally {
      releases.get(id)?.();
      req.destroy();
    }
  });

  it("serves an app that sends trailers (its chunked body's trailers reach a mounted app's client only)", async () => {
    const res = await new Promise<{ status: number; body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      http.get(url('/trailers'), { agent: false }, (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (data: string) => (body += data));
        response.on('end', () => resolve({ status: response.statusCode!, body, trailers: response.trailers }));
      }).on('error', reject);
    });
    expect(res).toMatchObject({ status: 200, body: 'timed body' });
    if (kind === 'mounted') expect(res.trailers['server-timing']).toBe('body;dur=1');
  });

  it('passes UTF-8 header bytes of a chunked response as Node sends them', async () => {
    const res = await get(url('/utf8-header-streamed'));
    const value = res.rawHeaders[res.rawHeaders.findIndex((h) => h.toLowerCase() === 'x-name') + 1];
    expect(Buffer.from(value, 'latin1').toString('utf8')).toBe('café');
    expect(res.body.toString('utf8')).toBe('\u00fcn\u00efcode');
  });

  it('a client that leaves mid-body: the app sees its response close unfinished, no connection is left', async () => {
    const id = `${kind}-slow-${Date.now()}`;
    await new Promise<void>((resolve, reject) => {
      const req = http.get(url('/slow'), { agent: false, headers: { 'x-id': id } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      setTimeout(() => reject(new Error('no first chunk')), 2000).unref();
    });
    await waitFor(() => seen.get(id)?.events.includes('res-close-unfinished') ?? false, 2000, `${id}: app response closes unfinished`);
    await waitFor(async () => (await openConnections()) === 0, 2000, 'no open connections');
  });

  it('an app that never ends: the client gets the headers and what was written, and leaving closes the app response', async () => {
    const id = `${kind}-never-${Date.now()}`;
    const partial = await new Promise<string>((resolve, reject) => {
      const req = http.get(url('/never-ends'), { agent: false, headers: { 'x-id': id } }, (res) => {
        expect(res.headers['content-length']).toBe('1000');
        res.setEncoding('utf8').once('data', (data: string) => {
          req.destroy();
          resolve(data);
        });
      });
      req.on('error', () => undefined);
      setTimeout(() => reject(new Error('no first chunk')), 2000).unref();
    });
    expect(partial).toBe('partial');
    await waitFor(() => seen.get(id)?.events.includes('res-close-unfinished') ?? false, 2000, `${id}: app response closes unfinished`);
    await waitFor(async () => (await openConnections()) === 0, 2000, 'no open connections');
  });
});

describe('called Node app: bodies longer than their Content-Length', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CallingEdges] });
  });
  afterAll(() => s.close());

  it.each(['/overflow', '/overflow-late'])('%s: the client gets exactly the announced bytes and the next request its own answer', async (path) => {
    const received = await onOneConnection(s.url, [`/called${path}`, '/called/sized']);
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(2);
    expect(responses[0]).toMatch(/^HTTP\/1\.1 200 /);
    expect(responses[0].endsWith('\r\n\r\nhello')).toBe(true);
    expect(responses[1]).toMatch(/^HTTP\/1\.1 200 /);
    expect(responses[1].endsWith('\r\n\r\nhello world')).toBe(true);
    expect(s.logger.lines.some((l) => l.level === 'warn' && l.message.includes('Content-Length 5'))).toBe(true);
  });

  it("an app that waits for each write's callback stops quietly when the client leaves", async () => {
    const id = `awaited-${Date.now()}`;
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${s.url}/called/awaited-writes`, { agent: false, headers: { 'x-id': id } }, (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          // A slow reader: the app's writes wait on backpressure when the client leaves.
          res.pause();
          setTimeout(() => res.resume(), 5);
          if (received > 300 * KiB) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', () => undefined);
      setTimeout(() => reject(new Error('not enough body')), 5000).unref();
    });
    await waitFor(() => seen.get(id)?.events.some((event) => /stopped|failed/.test(event)) ?? false, 3000, `${id}: the app stops`);
    expect(seen.get(id)!.events).toContain('stopped: destroyed');
    expect(s.logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it("an app's ended response of 1 MiB finishes when the caller replaces its body unread", async () => {
    const id = `replaced-${Date.now()}`;
    const res = await get(`${s.url}/replaced/big-end`, { id });
    expect(res.body.toString()).toBe('replaced');
    await waitFor(() => seen.get(id)?.events.includes('res-close-finished') ?? false, 2000, `${id}: app response closes finished`);
    expect(seen.get(id)!.events).toEqual(['finish', 'end-cb', 'res-close-finished']);
  });

  it('the caller reads a body the app wrote at once', async () => {
    const res = await get(`${s.url}/read/trickle-unsized`);
    expect(JSON.parse(res.body.toString()).text).toHaveLength(TRICKLE_CHUNKS * KiB);
    const sized = await get(`${s.url}/read/sized`);
    expect(JSON.parse(sized.body.toString())).toEqual({ status: 200, text: 'hello world' });
  });

  it('skips a 100 Continue the app wrote before its response', async () => {
    const res = await get(`${s.url}/called/continue`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('continued');
  });
});

describe('called Express app: request and response built on its own prototypes', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CallingEdges] });
  });
  afterAll(() => s.close());

  it('gives Express its query, path, locals and prototypes, call after call', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await get(`${s.url}/express/info?round=${i}`);
      expect(JSON.parse(res.body.toString())).toEqual({
        query: { round: String(i) },
        path: '/info',
        baseUrl: '/express',
        originalUrl: `/express/info?round=${i}`,
        locals: 'middleware',
        isIncoming: true,
        isResponse: true,
        ownPrototype: true,
      });
    }
  });

  it('builds the request the usual way when the app prototype refuses what Node assigns', async () => {
    // As on a real request: Node's own `aborted` shadows the prototype's getter.
    const res = await get(`${s.url}/strict-express`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('aborted: false');
  });

  it('ignores request/response properties that are no prototypes', async () => {
    const res = await get(`${s.url}/decoy/x?y=1`);
    expect(res.body.toString()).toBe('decoy /x?y=1');
  });
});
