/**
 * Errors, timeouts and client disconnects, end to end over real HTTP against a real Nest app.
 *
 * Paths exercised:
 *  - direct mount   `@MountGateway` of a Node listener without timeout: the app serves the
 *                   client's own req/res (the `serve` fast path);
 *  - capture path   `GatewayService.callApp` (and mounts with a `timeout`): the app writes to a
 *                   captured ServerResponse that is turned into a GatewayResponse;
 *  - fetch app      `fetchApp(handler)` mounted with `@MountGateway`.
 *
 * Apps report what they saw through a `Probe`, picked by the `x-probe` request header, whose
 * events are promises the test awaits with a timeout.
 */
import { Controller, Get, Inject, All, Post, Req } from '@nestjs/common';
import {
  fetchApp,
  GatewayModule,
  GatewayService,
  MountGateway,
  nodeApp,
  type NodeListener,
} from 'nest-gateway';
import http, { type IncomingHttpHeaders, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { json } from 'express';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

// ---------------------------------------------------------------------------------------------
// Probes: how apps report what happened to them
// ---------------------------------------------------------------------------------------------

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

class Probe {
  private static next = 0;
  readonly id = `probe-${++Probe.next}`;
  readonly events: string[] = [];
  readonly facts: Record<string, unknown> = {};
  private readonly waiters = new Map<string, Deferred>();

  mark(event: string): void {
    this.events.push(event);
    this.waiter(event).resolve();
  }
  /** Resolves once `event` has been marked (also if it was marked before). */
  seen(event: string): Promise<void> {
    return this.waiter(event).promise;
  }
  private waiter(event: string): Deferred {
    let d = this.waiters.get(event);
    if (!d) this.waiters.set(event, (d = deferred()));
    return d;
  }
}

const probes = new Map<string, Probe>();
function newProbe(): Probe {
  const probe = new Probe();
  probes.set(probe.id, probe);
  return probe;
}
/** The probe named by the request; a throwaway one when there is none. */
function probeOf(id: string | string[] | null | undefined): Probe {
  return probes.get(String(id)) ?? new Probe();
}



// ---------------------------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------------------------

const SECRET_SYNC = 'SECRET-sync-db-password=hunter2';
const SECRET_ASYNC = 'SECRET-async-db-password=hunter2';

const throwsSync = nodeApp(() => {
  throw new Error(SECRET_SYNC);
});
const rejectsAsync = nodeApp(async () => {
  await sleep(5);
  throw new Error(SECRET_ASYNC);
});

/** Sends headers (Content-Length 1000) and 7 bytes, then fails in the way `how` says. */
function breaksAfterHeaders(how: 'throw-sync' | 'throw-async' | 'destroy'): NodeListener {
  return async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
    res.write('partial');
    if (how === 'throw-sync') throw new Error('broke after headers (sync)');
    await sleep(50);
    if (how === 'throw-async') throw new Error('broke after headers (async)');
    res.destroy();
  };
}

/** A fetch app whose body stream errors after the first chunk. */
const fetchBodyBreaks = fetchApp(() => {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('partial'));
    },
    async pull(controller) {
      await sleep(50);
      controller.error(new Error('stream broke'));
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/plain', 'content-length': '1000' } });
});

/** Reads the request body, reporting what happens to the request and response. */
const uploadListener: NodeListener = (req, res) => {
  const probe = probeOf(req.headers['x-probe']);
  // Like most apps (and the fixtures' echoListener), no 'error' listener on req.
  req.on('data', () => probe.mark('data'));
  req.on('aborted', () => probe.mark('req-aborted'));
  req.on('close', () => probe.mark('req-close'));
  res.on('close', () => probe.mark('res-close'));
  req.on('end', () => res.end('done'));
};

/** Streams a line every 20 ms until its response closes (at most ~4 s). */
const slowStreamListener: NodeListener = (req, res) => {
  const probe = probeOf(req.headers['x-probe']);
  req.on('aborted', () => probe.mark('req-aborted'));
  req.on('close', () => probe.mark('req-close'));
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.write('first\n');
  let writes = 0;
  const timer = setInterval(() => {
    if (++writes > 200) {
      clearInterval(timer);
      res.end('last\n');
    } else res.write('more\n');
  }, 20);
  res.on('close', () => {
    clearInterval(timer);
    probe.facts.finishedAtClose = res.writableFinished;
    probe.mark('res-close');
  });
};

const fetchUpload = fetchApp(async (request: Request) => {
  const probe = probeOf(request.headers.get('x-probe'));
  request.signal.addEventListener('abort', () => probe.mark('signal-abort'), { once: true });
  const reader = request.body!.getReader();
  try {
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      probe.mark('data');
    }
  } catch (error) {
    probe.mark('body-error');
    throw error;
  }
  return new Response('done');
});

const fetchSlowStream = fetchApp((request: Request) => {
  const probe = probeOf(request.headers.get('x-probe'));
  request.signal.addEventListener('abort', () => probe.mark('signal-abort'), { once: true });
  const encoder = new TextEncoder();
  let cancelled = false;
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode('first\n'));
    },
    async pull(controller) {
      await sleep(20);
      if (cancelled) return;
      if (++pulls > 200) controller.close();
      else controller.enqueue(encoder.encode('more\n'));
    },
    cancel() {
      cancelled = true;
      probe.mark('cancel');
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/plain' } });
});

/** Never answers; reports what it sees of its request and response. */
const neverAnswers: NodeListener = (req, res) => {
  const probe = probeOf(req.headers['x-probe']);
  probe.mark('called');
  req.on('aborted', () => probe.mark('req-aborted'));
  req.on('close', () => probe.mark('req-close'));
  res.on('close', () => probe.mark('res-close'));
};
const fetchNeverAnswers = fetchApp((request: Request) => {
  const probe = probeOf(request.headers.get('x-probe'));
  probe.mark('called');
  request.signal.addEventListener('abort', () => probe.mark('signal-abort'), { once: true });
  return new Promise<Response>(() => undefined);
});

/** Flushes its headers at once and sends its body a second later. */
const lateBody: NodeListener = (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.flushHeaders();
  const timer = setTimeout(() => res.end('the body, one second late'), 1000);
  res.on('close', () => clearTimeout(timer));
};
const lateBodyTimings = { called: 0, gotResponse: 0 };

/** Writes 4 chunks of 1 MiB, waiting for 'drain' whenever write() says so (giving up after 3 s). */
const MiB = 1024 * 1024;
const BIG_CHUNKS = 4;
const backpressure = {
  writes: [] as Array<{ ok: boolean; at: number }>,
  drains: [] as number[],
  /** Set when a 'drain' the app waited for never came. */
  stalled: false,
  handlerReturnedAt: 0,
};
function drainOrGiveUp(res: http.ServerResponse, ms: number): Promise<'drain' | 'close' | 'timeout'> {
  return new Promise((resolve) => {
    const done = (how: 'drain' | 'close' | 'timeout') => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(how);
    };
    const onDrain = () => done('drain');
    const onClose = () => done('close');
    const timer = setTimeout(() => done('timeout'), ms);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}
const bigWriter: NodeListener = async (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG_CHUNKS * MiB) });
  for (let i = 0; i < BIG_CHUNKS; i++) {
    const ok = res.write(Buffer.alloc(MiB, i + 1));
    backpressure.writes.push({ ok, at: Date.now() });
    if (!ok) {
      const how = await drainOrGiveUp(res, 3000);
      if (how !== 'drain') {
        backpressure.stalled = how === 'timeout';
        res.destroy();
        return;
      }
      backpressure.drains.push(Date.now());
    }
  }
  res.end();
};

// ---------------------------------------------------------------------------------------------
// Nest wiring
// ---------------------------------------------------------------------------------------------

/**
 * Errors that carry an HTTP status, as Express apps and their middleware pass them to next()
 * (http-errors' shape: `status`/`statusCode`, `expose` for client errors).
 */
const statusError = (status: number, message: string, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error(message), { status, expose: status < 500, ...extra });
const SECRET_503 = 'db password is hunter2';
const nextsStatusErrors: NodeListener = (req, _res, next) => {
  const path = (req.url ?? '').split('?')[0];
  if (path === '/missing') return next!(statusError(404, 'No such page'));
  if (path === '/forbidden') return next!(Object.assign(new Error('Not yours'), { statusCode: 403, expose: true }));
  if (path === '/hidden') return next!(statusError(400, 'internal detail', { expose: false }));
  if (path === '/unavailable') return next!(statusError(503, SECRET_503));
  if (path === '/not-a-status') return next!(statusError(200, 'odd'));
  if (path === '/status-and-code') return next!(statusError(200, 'Gone away', { statusCode: 410 }));
  if (path === '/method') return next!(statusError(405, 'Method Not Allowed', { headers: { Allow: 'GET, HEAD' } }));
  if (path === '/login') return next!(statusError(401, 'Unauthorized', { headers: { 'WWW-Authenticate': 'Basic realm="app"' } }));
  if (path === '/plain-object') return next!({ status: 404, message: 'No such object', expose: true });
  throw statusError(409, 'Thrown conflict');
};
@MountGateway('status-errors', nextsStatusErrors)
class StatusErrorsMount {}
@MountGateway('status-middleware', nodeApp((_req, res) => res.end('app')), { middleware: [json({ limit: '10b' })] })
class StatusMiddlewareMount {}

@MountGateway('boom-sync', throwsSync)
class BoomSyncMount {}
@MountGateway('boom-async', rejectsAsync)
class BoomAsyncMount {}
@MountGateway('break-throw-sync', breaksAfterHeaders('throw-sync'))
class BreakThrowSyncMount {}
@MountGateway('break-throw-async', breaksAfterHeaders('throw-async'))
class BreakThrowAsyncMount {}
@MountGateway('break-destroy', breaksAfterHeaders('destroy'))
class BreakDestroyMount {}
@MountGateway('fetch-break', fetchBodyBreaks)
class FetchBreakMount {}
@MountGateway('slow', neverAnswers, { timeout: 200 })
class SlowMount {}
@MountGateway('slow-fetch', fetchNeverAnswers, { timeout: 200 })
class SlowFetchMount {}
@MountGateway('up-direct', uploadListener)
class UploadDirectMount {}
@MountGateway('stream-direct', slowStreamListener)
class StreamDirectMount {}
@MountGateway('fetch-up', fetchUpload)
class FetchUploadMount {}
@MountGateway('fetch-stream', fetchSlowStream)
class FetchStreamMount {}

@Controller('call')
class CallController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All('status/missing')
  statusMissing(@Req() req: unknown) {
    return this.gateway.callApp(nextsStatusErrors, req, '/missing');
  }

  @All('boom-sync')
  boomSync(@Req() req: unknown) {
    return this.gateway.callApp(throwsSync, req, '');
  }
  @All('boom-async')
  boomAsync(@Req() req: unknown) {
    return this.gateway.callApp(rejectsAsync, req, '');
  }
  @Get('break-throw-sync')
  breakThrowSync(@Req() req: unknown) {
    return this.gateway.callApp(breaksAfterHeaders('throw-sync'), req, '');
  }
  @Get('break-throw-async')
  breakThrowAsync(@Req() req: unknown) {
    return this.gateway.callApp(breaksAfterHeaders('throw-async'), req, '');
  }
  @Get('break-destroy')
  breakDestroy(@Req() req: unknown) {
    return this.gateway.callApp(breaksAfterHeaders('destroy'), req, '');
  }
  @Post('upload')
  upload(@Req() req: unknown) {
    return this.gateway.callApp(uploadListener, req, '');
  }
  @Get('stream')
  stream(@Req() req: unknown) {
    return this.gateway.callApp(slowStreamListener, req, '');
  }
  @Get('late-body')
  async lateBody(@Req() req: unknown) {
    const started = Date.now();
    lateBodyTimings.called = started;
    const response = await this.gateway.callApp(lateBody, req, '');
    lateBodyTimings.gotResponse = Date.now();
    return response;
  }
  @Get('backpressure')
  async backpressure(@Req() req: unknown) {
    const response = await this.gateway.callApp(bigWriter, req, '');
    await sleep(200);
    backpressure.handlerReturnedAt = Date.now();
    return response;
  }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

interface Outcome {
  status?: number;
  headers?: IncomingHttpHeaders;
  body: Buffer;
  /** The response arrived whole ('end' with `res.complete`). */
  complete: boolean;
  /** The response emitted 'aborted' or 'error', or the request failed. */
  broken: boolean;
  error?: Error;
}

/** A GET that reports how the response ended instead of throwing. */
function getOutcome(url: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const outcome: Outcome = { body: Buffer.alloc(0), complete: false, broken: false };
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      outcome.body = Buffer.concat(chunks);
      resolve(outcome);
    };
    const req = http.get(url, { agent: false }, (res) => {
      outcome.status = res.statusCode;
      outcome.headers = res.headers;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('aborted', () => (outcome.broken = true));
      res.on('error', (error) => {
        outcome.broken = true;
        outcome.error = error;
        settle();
      });
      res.on('end', () => {
        outcome.complete = res.complete;
        settle();
      });
      res.on('close', settle);
    });
    req.on('error', (error) => {
      outcome.broken = true;
      outcome.error = error;
      settle();
    });
  });
}

function expectBroken(outcome: Outcome): void {
  expect(outcome.complete).toBe(false);
  expect(outcome.broken).toBe(true);
  if (outcome.status !== undefined) {
    // If the head got through it is the app's 200, and the body stops short of Content-Length.
    expect(outcome.status).toBe(200);
    const length = Number(outcome.headers?.['content-length'] ?? NaN);
    if (!Number.isNaN(length)) expect(outcome.body.length).toBeLessThan(length);
  }
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

describe('errors, timeouts and client disconnects', () => {
  let s: Started;
  let server: Server;

  beforeAll(async () => {
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [
        CallController,
        BoomSyncMount,
        BoomAsyncMount,
        BreakThrowSyncMount,
        BreakThrowAsyncMount,
        BreakDestroyMount,
        FetchBreakMount,
        SlowMount,
        SlowFetchMount,
        UploadDirectMount,
        StreamDirectMount,
        FetchUploadMount,
        FetchStreamMount,
        StatusErrorsMount,
        StatusMiddlewareMount,
      ],
    });
    server = s.app.getHttpServer() as Server;
  });
  afterAll(() => s.close());

  const openConnections = () =>
    new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
  const expectNoOpenConnections = () =>
    waitFor(async () => (await openConnections()) === 0, 2000, 'the server to have 0 open connections');

  /** Requests `path` and checks for a bare 500 and exactly one error log line naming `name`. */
  async function expectPlain500(path: string, name: string, secret: string): Promise<void> {
    const mark = s.logger.lines.length;
    const res = await request(s.url).get(path);
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({ statusCode: 500, message: 'Internal Server Error' });
    expect(res.text).not.toContain(secret);
    expect(res.text).not.toMatch(/\bat .+:\d+:\d+/); // no stack frames
    const errors = s.logger.lines.slice(mark).filter((line) => line.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toContain(name);
  }

  // -------------------------------------------------------------------------------------------
  describe('(a) app errors before headers, direct mount', () => {
    it('a listener that throws synchronously gives a plain 500 and one error line', async () => {
      await expectPlain500('/boom-sync/x', '/boom-sync', SECRET_SYNC);
    });
    it('a listener whose async handler rejects gives a plain 500 and one error line', async () => {
      await expectPlain500('/boom-async/x', '/boom-async', SECRET_ASYNC);
    });
  });

  describe('(a2) errors that carry an HTTP status (Express next(err) conventions)', () => {
    const get = async (path: string) => {
      const mark = s.logger.lines.length;
      const res = await request(s.url).get(path);
      return { res, errors: s.logger.lines.slice(mark).filter((line) => line.level === 'error') };
    };
    it('a 4xx status from next(err) is the response, with the message when it may be exposed', async () => {
      const missing = await get('/status-errors/missing');
      expect(missing.res.status).toBe(404);
      expect(missing.res.body).toEqual({ statusCode: 404, message: 'No such page' });
      expect(missing.errors).toEqual([]);
      const forbidden = await get('/status-errors/forbidden');
      expect(forbidden.res.status).toBe(403);
      expect(forbidden.res.body).toEqual({ statusCode: 403, message: 'Not yours' });
      const thrown = await get('/status-errors/thrown');
      expect(thrown.res.status).toBe(409);
      expect(thrown.res.body).toEqual({ statusCode: 409, message: 'Thrown conflict' });
    });
    it('a 4xx error marked not to be exposed keeps its message to itself', async () => {
      const hidden = await get('/status-errors/hidden');
      expect(hidden.res.status).toBe(400);
      expect(hidden.res.body).toEqual({ statusCode: 400, message: 'Bad Request' });
    });
    it('a 5xx status is the response, with a plain message, logged once as an error', async () => {
      const { res, errors } = await get('/status-errors/unavailable');
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
      expect(res.text).not.toContain(SECRET_503);
      expect(errors).toHaveLength(1);
      expect(errors[0].message).toContain('/status-errors');
    });
    it('callApp: the same status', async () => {
      const { res } = await get('/call/status/missing');
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ statusCode: 404, message: 'No such page' });
    });
    it('a thrown value that is not an Error but carries a status (next({ status: 404 })) gives that status', async () => {
      const { res, errors } = await get('/status-errors/plain-object');
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ statusCode: 404, message: 'No such object' });
      expect(errors).toEqual([]);
    });
    it("sends the headers such an error carries (http-errors' headers: Allow, WWW-Authenticate)", async () => {
      const method = await get('/status-errors/method');
      expect(method.res.status).toBe(405);
      expect(method.res.headers.allow).toBe('GET, HEAD');
      const login = await get('/status-errors/login');
      expect(login.res.status).toBe(401);
      expect(login.res.headers['www-authenticate']).toBe('Basic realm="app"');
    });
    it('a status that is no error status leaves statusCode to say it, as under Express', async () => {
      const { res } = await get('/status-errors/status-and-code');
      expect(res.status).toBe(410);
    });
    it('a status that is not an error status is a plain 500', async () => {
      expect((await get('/status-errors/not-a-status')).res.status).toBe(500);
    });
    it("the mount's body parser refusing a large body gives its 413", async () => {
      const res = await request(s.url).post('/status-middleware/x').set('content-type', 'application/json').send(JSON.stringify({ much: 'x'.repeat(100) }));
      expect(res.status).toBe(413);
      expect(res.body).toEqual({ statusCode: 413, message: 'request entity too large' });
    });
  });

  describe('(b) app errors before headers, callApp', () => {
    it('a listener that throws synchronously gives a plain 500 and one error line', async () => {
      await expectPlain500('/call/boom-sync', '/call/boom-sync', SECRET_SYNC);
    });
    it('a listener whose async handler rejects gives a plain 500 and one error line', async () => {
      await expectPlain500('/call/boom-async', '/call/boom-async', SECRET_ASYNC);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('(c) app fails after sending headers: the client sees a broken response', () => {
    it.each([
      ['direct mount, throws synchronously', '/break-throw-sync'],
      ['direct mount, rejects after a partial body', '/break-throw-async'],
      ['direct mount, destroys its response', '/break-destroy'],
      ['callApp, throws synchronously', '/call/break-throw-sync'],
      ['callApp, rejects after a partial body', '/call/break-throw-async'],
      ['callApp, destroys its response', '/call/break-destroy'],
      ['fetch app, body stream errors mid-way', '/fetch-break'],
    ])('%s', async (_label, path) => {
      const outcome = await getOutcome(s.url + path);
      expectBroken(outcome);
      await expectNoOpenConnections();
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('(d) per-mount timeout', () => {
    it('a Node app that never sends headers gives 504, and sees its request and response closed', async () => {
      const probe = newProbe();
      const started = Date.now();
      const res = await request(s.url).get('/slow/x').set('x-probe', probe.id);
      const elapsed = Date.now() - started;
      expect(res.status).toBe(504);
      expect(elapsed).toBeGreaterThanOrEqual(180);
      expect(elapsed).toBeLessThan(2000);
      expect(probe.events).toContain('called');
      await within(Promise.all([probe.seen('req-close'), probe.seen('res-close')]), 1000, 'app req and res close');
      expect(s.logger.lines.some((l) => l.level === 'warn' && l.message.includes('/slow'))).toBe(true);
    });

    it('a fetch app that never resolves gives 504, and its request.signal aborts', async () => {
      const probe = newProbe();
      const res = await request(s.url).get('/slow-fetch/x').set('x-probe', probe.id);
      expect(res.status).toBe(504);
      expect(probe.events).toContain('called');
      await within(probe.seen('signal-abort'), 1000, 'request.signal abort');
    });
  });

  // -------------------------------------------------------------------------------------------
  // (e) client disconnects. Each scenario resolves once the app has seen everything expected.

  /** POSTs a 1 MiB body, sends 16 KiB, waits until the app has read some, then disconnects. */
  async function abortUpload(path: string, expected: string[]): Promise<Probe> {
    const probe = newProbe();
    const req = http.request(s.url + path, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(MiB), 'x-probe': probe.id },
    });
    req.on('error', () => undefined);
    req.on('response', (res) => res.resume());
    req.write(Buffer.alloc(16 * 1024, 7));
    await within(probe.seen('data'), 2000, `${path}: app reads the first body chunk`);
    req.destroy();
    await within(Promise.all(expected.map((e) => probe.seen(e))), 2000, `${path}: app sees ${expected.join(', ')} (saw ${probe.events.join(', ')})`);
    return probe;
  }

  /** GETs a slow stream and disconnects after the first chunk. */
  async function abortDownload(path: string, expected: string[]): Promise<Probe> {
    const probe = newProbe();
    const firstChunk = new Promise<void>((resolve, reject) => {
      const req = http.get(s.url + path, { agent: false, headers: { 'x-probe': probe.id } }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`${path}: status ${res.statusCode}`));
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
    });
    await within(firstChunk, 2000, `${path}: first response chunk`);
    await within(Promise.all(expected.map((e) => probe.seen(e))), 2000, `${path}: app sees ${expected.join(', ')} (saw ${probe.events.join(', ')})`);
    return probe;
  }

  const scenarios = {
    directUpload: () => abortUpload('/up-direct/x', ['req-aborted', 'req-close', 'res-close']),
    captureUpload: () => abortUpload('/call/upload', ['req-aborted', 'req-close', 'res-close']),
    fetchUpload: () => abortUpload('/fetch-up/x', ['signal-abort']),
    directDownload: () => abortDownload('/stream-direct/x', ['req-aborted', 'req-close', 'res-close']),
    captureDownload: () => abortDownload('/call/stream', ['req-aborted', 'req-close', 'res-close']),
    fetchDownload: () => abortDownload('/fetch-stream/x', ['signal-abort', 'cancel']),
  };

  describe('(e) client disconnects mid-request (slow upload)', () => {
    it('direct mount: the app request emits aborted and close; no connection is left', async () => {
      await scenarios.directUpload();
      await expectNoOpenConnections();
    });
    it('callApp: the inner request emits aborted and close, the captured response close', async () => {
      await scenarios.captureUpload();
      await expectNoOpenConnections();
    });
    it('fetch app: request.signal aborts and reading the body fails', async () => {
      const probe = await scenarios.fetchUpload();
      await within(probe.seen('body-error'), 2000, 'body read error');
      await expectNoOpenConnections();
    });
  });

  describe('(e) client disconnects mid-response (slow stream)', () => {
    it('direct mount: the app request emits aborted and close, its response closes unfinished', async () => {
      const probe = await scenarios.directDownload();
      expect(probe.facts.finishedAtClose).toBe(false);
      await expectNoOpenConnections();
    });
    it('callApp: the inner request emits aborted and close (a GET too), the captured response closes unfinished', async () => {
      const probe = await scenarios.captureDownload();
      expect(probe.facts.finishedAtClose).toBe(false);
      await expectNoOpenConnections();
    });
    it('fetch app: request.signal aborts and the body stream is cancelled', async () => {
      await scenarios.fetchDownload();
      await expectNoOpenConnections();
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('(f) nothing leaks', () => {
    const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const listenerCounts = (emitter: NodeJS.EventEmitter) =>
      Object.fromEntries(emitter.eventNames().map((name) => [String(name), emitter.listenerCount(name)]));
    // Under jest, `process` is the test file's own copy: the one the library and the apps use.
    const snapshot = () => ({
      timeouts: timeouts(),
      processListeners: listenerCounts(process),
      serverListeners: listenerCounts(server),
    });

    it('50 rounds of every disconnect scenario leave no connections, listeners or timers', async () => {
      const all = Object.values(scenarios);
      for (const scenario of all) await scenario(); // warm-up: lazy one-time allocations
      await expectNoOpenConnections();
      await sleep(100);
      const baseline = snapshot();

      for (let round = 0; round < 50; round++) {
        for (const scenario of all) await scenario();
      }

      await expectNoOpenConnections();
      await waitFor(() => timeouts() <= baseline.timeouts, 3000, `Timeout count back to ${baseline.timeouts}`).catch(
        () => undefined,
      );
      const after = snapshot();
      expect(after.processListeners).toEqual(baseline.processListeners);
      expect(after.serverListeners).toEqual(baseline.serverListeners);
      // Fewer is no leak: a timer of the baseline (an idle pool's, a keep-alive's) may have run out.
      expect(after.timeouts).toBeLessThanOrEqual(baseline.timeouts);
    }, 120_000);
  });

  // -------------------------------------------------------------------------------------------
  describe('callApp streaming', () => {
    it('resolves the GatewayResponse as soon as headers are sent, and the body follows complete', async () => {
      const started = Date.now();
      const res = await request(s.url).get('/call/late-body');
      const total = Date.now() - started;
      expect(res.status).toBe(200);
      expect(res.text).toBe('the body, one second late');
      expect(lateBodyTimings.gotResponse - lateBodyTimings.called).toBeLessThan(300);
      expect(total).toBeGreaterThanOrEqual(950);
    });

    it('applies backpressure: the app sees write() return false until the consumer reads', async () => {
      // The request's outcome is checked after what the app saw, which explains a failure best.
      const result = await request(s.url)
        .get('/call/backpressure')
        .timeout(10_000)
        .buffer(true)
        .parse((response, callback) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => callback(null, Buffer.concat(chunks)));
        })
        .then(
          (response) => ({ response, error: undefined }),
          (error: Error) => ({ response: undefined, error }),
        );
      const { writes, drains, stalled, handlerReturnedAt } = backpressure;
      expect(writes[0].ok).toBe(false);
      // While the handler sat on the response, the app was held at its first write.
      expect(writes.filter((w) => w.at < handlerReturnedAt)).toHaveLength(1);
      expect(stalled).toBe(false); // the 'drain' the app waited for did come
      expect(result.error).toBeUndefined();
      expect(result.response?.status).toBe(200);
      const body = result.response?.body as Buffer;
      expect(body.length).toBe(BIG_CHUNKS * MiB);
      for (let i = 0; i < BIG_CHUNKS; i++) expect(body[i * MiB]).toBe(i + 1);
      expect(writes).toHaveLength(BIG_CHUNKS);
      expect(drains.length).toBeGreaterThanOrEqual(1);
      expect(drains[0]).toBeGreaterThanOrEqual(handlerReturnedAt);
    });
  });
});
