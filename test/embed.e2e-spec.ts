/**
 * The other direction: a Nest app served inside other servers, end to end over real HTTP.
 *
 * createRequestListener / createFetchHandler (lib/embed/) hosted in a plain http.Server,
 * Express 5 (`app.use('/nest', listener)`), Koa 3 (`ctx.respond = false` with a fixed prefix),
 * Hono 4 on @hono/node-server (a fetch handler with a fixed prefix) and another Nest app
 * (`@MountGateway`). The inner app is test/fixtures/embed/inner-app.ts.
 */
import { createAdaptorServer } from '@hono/node-server';
import { Controller, Get, Req, UseGuards, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import express from 'express';
import { Hono } from 'hono';
import Koa from 'koa';
import {
  createFetchHandler,
  createRequestListener,
  GatewayModule,
  MountGateway,
  RemoteUserGuard,
  type EmbedOptions,
  type NestAppSource,
  type NestFetchHandler,
  type NestRequestListener,
} from 'nest-gateway';
import { createHash, randomBytes } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BIG_SIZE,
  bigSha256,
  InnerModule,
  LoneController,
  MiB,
  type DripRecord,
  type InnerConfig,
} from './fixtures/embed/inner-app.js';
import { send } from './fixtures/http-client.js';
import { startNest } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const postJson = (url: string, value: unknown) =>
  send(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function config(name: string, extra: Partial<InnerConfig> = {}): InnerConfig {
  return { name, events: [], drips: [], clients: [], ...extra };
}

/** Opens `url` on a connection of its own, waits for the first bytes of the answer, and goes away. */
function leaveAfterFirstBytes(url: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => undefined);
    req.setTimeout(5000, () => reject(new Error(`no answer from ${url}`)));
  });
}

/** Starts a chunked upload to `url`, sends some of it, and goes away mid-body. */
function leaveMidUpload(url: string, whenSent: () => boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream' } });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(16 * 1024, 0x62));
    waitFor(whenSent, 5000, 'the upload to reach the Nest handler').then(() => {
      req.destroy();
      resolve();
    }, reject);
  });
}

/** A Nest app embedded in a host server, reachable at `base` (which ends with `prefix`). */
interface Hosted {
  /** URL of the host server, no prefix. */
  origin: string;
  /** What the inner app is mounted under, '' for none. */
  prefix: string;
  config: InnerConfig;
  close(): Promise<void>;
}

/** Serves `server` on an ephemeral port; closing it closes the server, then the embedded app. */
async function serveHost<T extends { close(): Promise<void> }>(server: Server, prefix: string, cfg: InnerConfig, app: T) {
  const origin = await listen(server);
  return {
    origin,
    prefix,
    config: cfg,
    close: async () => {
      await closeServer(server);
      await app.close();
    },
  };
}

async function plainHost(cfg: InnerConfig, source: NestAppSource = InnerModule.forRoot(cfg), options?: EmbedOptions) {
  const listener = await createRequestListener(source, options);
  const server = http.createServer(listener);
  return { ...(await serveHost(server, '', cfg, listener)), listener };
}

async function expressHost(cfg: InnerConfig, source: NestAppSource = InnerModule.forRoot(cfg)) {
  const listener = await createRequestListener(source);
  const app = express();
  app.use('/nest', listener);
  const server = http.createServer(app);
  return { ...(await serveHost(server, '/nest', cfg, listener)), listener };
}

async function koaHost(cfg: InnerConfig) {
  const listener = await createRequestListener(InnerModule.forRoot(cfg), { prefix: '/nest' });
  const app = new Koa();
  app.use(async (ctx, next) => {
    if (ctx.path !== '/nest' && !ctx.path.startsWith('/nest/')) return next();
    ctx.respond = false;
    listener(ctx.req, ctx.res);
  });
  app.use((ctx) => {
    ctx.body = 'koa itself';
  });
  const server = http.createServer(app.callback());
  return { ...(await serveHost(server, '/nest', cfg, listener)), listener };
}

async function honoHost(cfg: InnerConfig, source: NestAppSource = InnerModule.forRoot(cfg)) {
  const handler = await createFetchHandler(source, { prefix: '/nest' });
  const app = new Hono();
  app.all('/nest/*', (c) => handler(c.req.raw));
  app.get('/', (c) => c.text('hono itself'));
  const server = createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as Server;
  return { ...(await serveHost(server, '/nest', cfg, handler)), handler };
}

async function nestHost(cfg: InnerConfig) {
  const listener = await createRequestListener(InnerModule.forRoot(cfg));
  @MountGateway('inner', listener)
  class InnerMount {}
  const outer = await startNest({ imports: [GatewayModule.forRoot()], controllers: [InnerMount] });
  return {
    origin: outer.url,
    prefix: '/inner',
    config: cfg,
    listener,
    outer,
    close: async () => {
      await outer.close();
      await listener.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The same app in every host
// ---------------------------------------------------------------------------------------------

const HOSTS: Array<[string, string, (cfg: InnerConfig) => Promise<Hosted>]> = [
  ['plain http.createServer(listener)', '', (cfg) => plainHost(cfg)],
  ["Express 5 app.use('/nest', listener)", '/nest', (cfg) => expressHost(cfg)],
  ["Koa 3 (ctx.respond = false, prefix '/nest')", '/nest', (cfg) => koaHost(cfg)],
  ["Hono 4 on @hono/node-server (createFetchHandler, prefix '/nest')", '/nest', (cfg) => honoHost(cfg)],
  ["another Nest app (@MountGateway('inner', listener))", '/inner', (cfg) => nestHost(cfg)],
];

describe.each(HOSTS)('hosted in %s', (hostName, prefix, start) => {
  let host: Hosted;
  let base: string;
  const name = hostName.split(' ')[0].toLowerCase();

  beforeAll(async () => {
    host = await start(config(name));
    expect(host.prefix).toBe(prefix);
    base = host.origin + host.prefix;
  });
  afterAll(async () => {
    await host?.close();
  });

  test('GET is answered by the inner app, which sees its own path and the mount prefix', async () => {
    const res = await send(`${base}/hello`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['x-served-by']).toBe(name);
    expect(res.json()).toEqual({ app: name, greeting: `hello from ${name}`, url: '/hello', baseUrl: host.prefix });
  });

  test('POST with a JSON body is parsed by the inner app', async () => {
    const payload = { title: 'Grüße', tags: ['a', 'b'], n: 42, nested: { ok: true } };
    const res = await postJson(`${base}/echo`, payload);
    expect(res.status).toBe(201);
    expect(res.json()).toEqual({ app: name, received: payload, contentType: 'application/json' });
  });

  test('a redirect to /target carries the prefix, and the target is reachable there', async () => {
    const res = await send(`${base}/go`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${host.prefix}/target`);
    const followed = await send(host.origin + res.headers.location);
    expect(followed.status).toBe(200);
    expect(followed.json()).toEqual({ app: name, target: true });
  });

  test('an absolute redirect to the app’s own host carries the prefix', async () => {
    const res = await send(`${base}/abs-go`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${host.origin}${host.prefix}/target`);
  });

  // BUG (lib/embed/prefix-rewrite.ts rewriteForPrefix): only headers already set with setHeader are
  // rewritten; those passed to writeHead(status, headers) are merged by Node after the check.
  test('Location and Set-Cookie given to res.writeHead() itself are rewritten too', async () => {
    const res = await send(`${base}/raw-redirect`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${host.prefix}/target`);
    expect(res.headers['set-cookie']).toEqual([`raw=1; Path=${host.prefix || '/'}`]);
  });

  test('a cookie with Path=/ gets Path=<prefix>; a deeper path is put under the prefix', async () => {
    const res = await send(`${base}/cookie`);
    expect(res.status).toBe(200);
    expect(res.headers['set-cookie']).toEqual([
      `sid=abc; Path=${host.prefix || '/'}; HttpOnly`,
      `deep=1; Path=${host.prefix}/account`,
    ]);
  });

  test('an unknown path stays the inner app’s Nest 404 (its JSON body, its headers)', async () => {
    const res = await send(`${base}/nope?x=1`);
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['x-served-by']).toBe(name);
    expect(res.json()).toEqual({ statusCode: 404, error: 'Not Found', message: expect.stringMatching(/^Cannot GET \S*\/nope/) });
  });

  test('HEAD gets the GET headers and no body', async () => {
    const get = await send(`${base}/hello`);
    const head = await send(`${base}/hello`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toMatch(/^application\/json/);
    expect(head.headers['x-served-by']).toBe(name);
    expect(head.headers['content-length']).toBe(String(get.body.length));
    expect(head.body.length).toBe(0);
  });

  test('a streamed 10 MiB response (StreamableFile over a Readable) arrives whole', async () => {
    const res = await send(`${base}/big`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.body.length).toBe(BIG_SIZE);
    expect(sha256(res.body)).toBe(bigSha256());
  });

  test('a client leaving an @Sse() stream: the Nest app hears it and unsubscribes the stream', async () => {
    const before = host.config.clients!.length;
    await leaveAfterFirstBytes(`${base}/events`);
    const record = host.config.clients![before];
    await waitFor(() => record.events.includes('unsubscribed'), 3000, 'the @Sse() stream to be unsubscribed');
    expect(record.events).toEqual(expect.arrayContaining(['req close', 'socket close', 'unsubscribed']));
  });

  test('a client leaving mid-upload: the Nest handler reading it hears aborted and close', async () => {
    const before = host.config.clients!.length;
    await leaveMidUpload(`${base}/slow-upload`, () => host.config.clients!.length > before);
    const record = host.config.clients![before];
    await waitFor(() => record.events.includes('socket close'), 3000, "the handler's socket to close");
    expect(record.events).toEqual(expect.arrayContaining(['aborted', 'req close', 'socket close']));
  });

  test('a 20 MiB upload is read by the inner app as a stream', async () => {
    const upload = randomBytes(20 * MiB);
    const res = await send(`${base}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: upload,
    });
    expect(res.status).toBe(201);
    expect(res.json()).toEqual({ app: name, size: upload.length, sha256: sha256(upload) });
  });
});

// ---------------------------------------------------------------------------------------------
// Two apps in one process
// ---------------------------------------------------------------------------------------------

describe('two independent Nest apps in one Express host', () => {
  let server: Server | undefined;
  let alpha: NestRequestListener | undefined;
  let beta: NestRequestListener | undefined;
  let origin: string;
  const alphaConfig = config('alpha', { providers: [{ provide: 'ONLY_ALPHA', useValue: 'alpha-secret' }] });
  const betaConfig = config('beta', { providers: [{ provide: 'ONLY_BETA', useValue: 'beta-secret' }] });

  beforeAll(async () => {
    alpha = await createRequestListener(InnerModule.forRoot(alphaConfig));
    beta = await createRequestListener(InnerModule.forRoot(betaConfig));
    const app = express();
    app.use('/a', alpha);
    app.use('/b', beta);
    server = http.createServer(app);
    origin = await listen(server);
  });
  afterAll(async () => {
    if (server) await closeServer(server);
    await alpha?.close();
    await beta?.close();
  });

  test('each answers with its own providers and config, under its own prefix', async () => {
    const [a, b] = await Promise.all([send(`${origin}/a/hello`), send(`${origin}/b/hello`)]);
    expect(a.json()).toEqual({ app: 'alpha', greeting: 'hello from alpha', url: '/hello', baseUrl: '/a' });
    expect(b.json()).toEqual({ app: 'beta', greeting: 'hello from beta', url: '/hello', baseUrl: '/b' });
    expect((await send(`${origin}/a/go`)).headers.location).toBe('/a/target');
    expect((await send(`${origin}/b/go`)).headers.location).toBe('/b/target');
  });

  test('a provider of one app is not visible in the other', async () => {
    expect((await send(`${origin}/a/peek/ONLY_ALPHA`)).json()).toEqual({ app: 'alpha', found: true, value: 'alpha-secret' });
    expect((await send(`${origin}/b/peek/ONLY_ALPHA`)).json()).toEqual({ app: 'beta', found: false });
    expect((await send(`${origin}/a/peek/ONLY_BETA`)).json()).toEqual({ app: 'alpha', found: false });
    expect((await send(`${origin}/b/peek/ONLY_BETA`)).json()).toEqual({ app: 'beta', found: true, value: 'beta-secret' });
    expect(alpha!.app).not.toBe(beta!.app);
  });

  test('closing one runs its shutdown hooks only, and the other keeps serving', async () => {
    await alpha!.close();
    expect(alphaConfig.events).toEqual(['alpha:onModuleDestroy', 'alpha:onApplicationShutdown']);
    expect(betaConfig.events).toEqual([]);
    const b = await send(`${origin}/b/hello`);
    expect(b.status).toBe(200);
    expect(b.json()).toMatchObject({ app: 'beta' });
    const upload = randomBytes(MiB);
    const u = await send(`${origin}/b/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: upload });
    expect(u.json()).toEqual({ app: 'beta', size: MiB, sha256: sha256(upload) });
  });
});

// ---------------------------------------------------------------------------------------------
// One-file forms and a ready-made application
// ---------------------------------------------------------------------------------------------

describe('one-file forms', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  test('a @Controller class alone is served (a module is written for it)', async () => {
    const plain = await plainHost(config('lone'), LoneController);
    closers.push(plain.close);
    expect((await send(`${plain.origin}/`)).json()).toEqual({ lone: true });
    expect((await send(`${plain.origin}/hi/bob?x=1`)).json()).toEqual({ hi: 'bob', url: '/hi/bob?x=1' });
    expect((await send(`${plain.origin}/nope`)).status).toBe(404);

    const mounted = await expressHost(config('lone'), LoneController);
    closers.push(mounted.close);
    expect((await send(`${mounted.origin}/nest/hi/ann`)).json()).toEqual({ hi: 'ann', url: '/hi/ann' });
    expect((await send(`${mounted.origin}/nest`)).json()).toEqual({ lone: true });
  });

  test('a handler function answers every method and path with its return value', async () => {
    // `req` is `unknown` in NestAppSource's function form, hence the cast.
    const handler = (req: unknown) => ({ path: (req as { url: string }).url, method: (req as { method: string }).method });
    const plain = await plainHost(config('fn'), handler);
    closers.push(plain.close);
    expect((await send(`${plain.origin}/`)).json()).toEqual({ path: '/', method: 'GET' });
    expect((await send(`${plain.origin}/any/deep/path?q=1`)).json()).toEqual({ path: '/any/deep/path?q=1', method: 'GET' });
    const post = await send(`${plain.origin}/form`, { method: 'POST', body: 'x' });
    expect(post.json()).toEqual({ path: '/form', method: 'POST' });
    expect((await send(`${plain.origin}/thing`, { method: 'DELETE' })).json()).toEqual({ path: '/thing', method: 'DELETE' });

    const mounted = await expressHost(config('fn'), handler);
    closers.push(mounted.close);
    expect((await send(`${mounted.origin}/nest/any?q=2`)).json()).toEqual({ path: '/any?q=2', method: 'GET' });
    expect((await send(`${mounted.origin}/nest`)).json()).toEqual({ path: '/', method: 'GET' });

    const hono = await honoHost(config('fn'), handler);
    closers.push(hono.close);
    expect((await send(`${hono.origin}/nest/via/hono?z=3`)).json()).toEqual({ path: '/via/hono?z=3', method: 'GET' });
  });
});

describe('an INestApplication created by the test', () => {
  let app: INestApplication | undefined;
  let server: Server | undefined;
  afterEach(async () => {
    if (server) await closeServer(server);
    server = undefined;
    await app?.close();
    app = undefined;
  });

  test('is initialised and served; close() on the listener leaves it open', async () => {
    const cfg = config('given');
    app = await NestFactory.create(InnerModule.forRoot(cfg), { logger: ['error', 'warn'] });
    const listener = await createRequestListener(app);
    expect(listener.app).toBe(app);
    server = http.createServer(listener);
    const origin = await listen(server);
    expect((await send(`${origin}/hello`)).json()).toMatchObject({ app: 'given' });

    await listener.close();
    expect(cfg.events).toEqual([]);
    const after = await send(`${origin}/hello`);
    expect(after.status).toBe(200);
    expect(after.json()).toMatchObject({ app: 'given' });

    const closing = app;
    app = undefined;
    await closing.close();
    expect(cfg.events).toEqual(['given:onModuleDestroy', 'given:onApplicationShutdown']);
  });

  test('an app the test already initialised is taken as is, by createFetchHandler too', async () => {
    const cfg = config('ready');
    app = await NestFactory.create(InnerModule.forRoot(cfg), { logger: ['error', 'warn'] });
    await app.init();
    const handler = await createFetchHandler(app);
    expect(handler.app).toBe(app);
    const res = await handler(new Request('http://embedded.test/hello'));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ app: 'ready', url: '/hello' });
    await handler.close();
    expect(cfg.events).toEqual([]);
  });
});

describe('a fixed prefix under a host that strips it already', () => {
  test("Express's app.use('/hello', listener) with prefix '/hello': the path is not stripped a second time", async () => {
    const cfg = config('twice');
    const listener = await createRequestListener(InnerModule.forRoot(cfg), { prefix: '/hello' });
    const app = express();
    app.use('/hello', listener);
    const server = http.createServer(app);
    const origin = await listen(server);
    try {
      const res = await send(`${origin}/hello/hello`);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ app: 'twice', greeting: 'hello from twice', url: '/hello', baseUrl: '/hello' });
      expect((await send(`${origin}/hello/go`)).headers.location).toBe('/hello/target');
    } finally {
      await closeServer(server);
      await listener.close();
    }
  });
});

describe('a fixed prefix that the host leaves in the path (Koa, a fetch runtime)', () => {
  @Controller()
  class MembersController {
    @Get('members/page')
    @UseGuards(RemoteUserGuard)
    page() {
      return { members: true };
    }

    @Get('original')
    original(@Req() req: { url: string; originalUrl: string }) {
      return { url: req.url, originalUrl: req.originalUrl };
    }
  }
  const membersApp = { module: class MembersModule {}, imports: [GatewayModule.forRoot({ loginUrl: '/login' })], controllers: [MembersController] };
  const browser = { accept: 'text/html' };
  /** The app sees the path under the prefix, and its login redirect brings the browser back under it. */
  const expectServedUnderNest = async (origin: string) => {
    expect((await send(`${origin}/nest/original?x=1`)).json()).toEqual({ url: '/original?x=1', originalUrl: '/nest/original?x=1' });
    const res = await send(`${origin}/nest/members/page`, { headers: browser });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/nest/login?next=%2Fnest%2Fmembers%2Fpage');
  };

  test('Koa: req.originalUrl keeps the prefix, so a login redirect brings the browser back under it', async () => {
    const listener = await createRequestListener(membersApp, { prefix: '/nest' });
    const app = new Koa();
    app.use(async (ctx) => {
      ctx.respond = false;
      listener(ctx.req, ctx.res);
    });
    const server = http.createServer(app.callback());
    const origin = await listen(server);
    try {
      await expectServedUnderNest(origin);
    } finally {
      await closeServer(server);
      await listener.close();
    }
  });

  test("Hono's app.mount('/nest', handler), which strips the prefix itself: req.originalUrl gets it back", async () => {
    const handler = await createFetchHandler(membersApp, { prefix: '/nest' });
    const app = new Hono();
    app.mount('/nest', handler);
    const server = createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as Server;
    const origin = await listen(server);
    try {
      await expectServedUnderNest(origin);
    } finally {
      await closeServer(server);
      await handler.close();
    }
  });

  test('createFetchHandler: the same', async () => {
    const handler = await createFetchHandler(membersApp, { prefix: '/nest' });
    try {
      const original = await handler(new Request('http://embedded.test/nest/original?x=1'));
      expect(await original.json()).toEqual({ url: '/original?x=1', originalUrl: '/nest/original?x=1' });
      const res = await handler(new Request('http://embedded.test/nest/members/page', { headers: browser }));
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe('/nest/login?next=%2Fnest%2Fmembers%2Fpage');
    } finally {
      await handler.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// X-Forwarded-Prefix
// ---------------------------------------------------------------------------------------------

describe('X-Forwarded-Prefix from a proxy the Nest app trusts (trust proxy: loopback)', () => {
  let host: Awaited<ReturnType<typeof plainHost>> | undefined;
  let app: INestApplication | undefined;
  beforeAll(async () => {
    const cfg = config('xfp');
    app = await NestFactory.create(InnerModule.forRoot(cfg), { logger: ['error', 'warn'] });
    app.getHttpAdapter().getInstance().set('trust proxy', 'loopback');
    await app.init();
    host = await plainHost(cfg, app);
  });
  afterAll(async () => {
    await host?.close();
    await app?.close();
  });

  const go = (prefix?: string) => send(`${host!.origin}/go`, { headers: prefix === undefined ? {} : { 'x-forwarded-prefix': prefix } });

  test('without it nothing is rewritten', async () => {
    const res = await go();
    expect(res.headers.location).toBe('/target');
    expect((await send(`${host!.origin}/cookie`)).headers['set-cookie']?.[0]).toBe('sid=abc; Path=/; HttpOnly');
  });

  test.each(['/outer', '/outer/'])('%s is accepted: the redirect, the cookie and req.originalUrl carry /outer', async (prefix) => {
    expect((await go(prefix)).headers.location).toBe('/outer/target');
    const cookie = await send(`${host!.origin}/cookie`, { headers: { 'x-forwarded-prefix': prefix } });
    expect(cookie.headers['set-cookie']?.[0]).toBe('sid=abc; Path=/outer; HttpOnly');
    const where = await send(`${host!.origin}/where?x=1`, { headers: { 'x-forwarded-prefix': prefix } });
    expect(where.json()).toEqual({ url: '/where?x=1', baseUrl: '/outer', originalUrl: '/outer/where?x=1' });
  });

  test('with X-Forwarded-Host and X-Forwarded-Proto, an absolute redirect to that public origin carries the prefix', async () => {
    const headers = { 'x-forwarded-prefix': '/outer', 'x-forwarded-host': 'public.example', 'x-forwarded-proto': 'https' };
    const res = await send(`${host!.origin}/public-go`, { headers });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('https://public.example/outer/target');
  });

  test.each(['//evil.com', '/a b', 'http://x', 'http://evil.com/x', '/ok//evil', 'relative', '/a\\b'])(
    '%j is rejected: the redirect stays /target',
    async (prefix) => {
      const res = await go(prefix);
      expect(res.status).toBe(302);
      expect(res.headers.location).toBe('/target');
      const cookie = await send(`${host!.origin}/cookie`, { headers: { 'x-forwarded-prefix': prefix } });
      expect(cookie.headers['set-cookie']?.[0]).toBe('sid=abc; Path=/; HttpOnly');
    },
  );
});

describe('X-Forwarded-Prefix from a client the Nest app does not trust (the default)', () => {
  let host: Awaited<ReturnType<typeof plainHost>> | undefined;
  beforeAll(async () => {
    host = await plainHost(config('xfp-untrusted'));
  });
  afterAll(async () => {
    await host?.close();
  });

  // A forged prefix would go into the redirects and cookie paths, and a shared cache would
  // keep them for everyone else.
  test('is ignored: the redirect, the cookie and the request stay unprefixed', async () => {
    const go = await send(`${host!.origin}/go`, { headers: { 'x-forwarded-prefix': '/forged' } });
    expect(go.headers.location).toBe('/target');
    const cookie = await send(`${host!.origin}/cookie`, { headers: { 'x-forwarded-prefix': '/forged' } });
    expect(cookie.headers['set-cookie']?.[0]).toBe('sid=abc; Path=/; HttpOnly');
    const hello = await send(`${host!.origin}/hello`, { headers: { 'x-forwarded-prefix': '/forged' } });
    expect(hello.json()).toMatchObject({ url: '/hello' });
    expect(hello.json().baseUrl ?? '').toBe('');
  });
});

// ---------------------------------------------------------------------------------------------
// Aborts and shutdown
// ---------------------------------------------------------------------------------------------

describe('createFetchHandler aborts', () => {
  let handler: NestFetchHandler | undefined;
  const cfg = config('drip');
  beforeAll(async () => {
    handler = await createFetchHandler(InnerModule.forRoot(cfg));
  });
  afterAll(async () => {
    await handler?.close();
  });

  test('request.signal aborting while the Nest handler streams tears its response down', async () => {
    const controller = new AbortController();
    const res = await handler!(new Request('http://embedded.test/drip', { signal: controller.signal }));
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    const record: DripRecord = cfg.drips!.at(-1)!;
    expect(record.closed).toBe(false);

    controller.abort();
    await waitFor(() => record.closed, 2000, 'the Nest handler sees its response close');
    expect(record.finished).toBe(false);
    // The body the caller holds ends in an error rather than hanging.
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) return 'ended';
      })(),
    ).rejects.toBeDefined();
  });

  test('request.signal aborting before the Nest handler answered rejects the call and closes its response', async () => {
    const controller = new AbortController();
    const before = cfg.drips!.length;
    const pending = handler!(new Request('http://embedded.test/stall', { signal: controller.signal }));
    await waitFor(() => cfg.drips!.length > before, 2000, 'the stalling handler runs');
    const record = cfg.drips!.at(-1)!;
    controller.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => record.closed, 2000, 'the stalling handler sees its response close');
  });

  test('request.signal aborted already: the call rejects at once and the Nest handler never runs', async () => {
    const before = cfg.drips!.length;
    const call = (path: string) => handler!(new Request(`http://embedded.test${path}`, { signal: AbortSignal.abort() }));
    await expect(within(call('/hello'), 2000, 'the call to settle')).rejects.toMatchObject({ name: 'AbortError' });
    await expect(within(call('/stall'), 2000, 'the call to settle')).rejects.toMatchObject({ name: 'AbortError' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cfg.drips!.length).toBe(before);
  });

  test('a caller that cancels the body while bytes wait unread: nothing is thrown, the next call is served', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      for (let i = 0; i < 5; i++) {
        const res = await handler!(new Request('http://embedded.test/big'));
        const reader = res.body!.getReader();
        let received = 0;
        while (received <= 100 * 1024) {
          const { done, value } = await reader.read();
          if (done) throw new Error('the body ended before it was cancelled');
          received += value.length;
        }
        await reader.cancel();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(uncaught).toEqual([]);
      expect(await (await handler!(new Request('http://embedded.test/hello'))).text()).toContain('drip');
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  test("cancelling the body of the returned Response closes the Nest handler's response", async () => {
    const res = await handler!(new Request('http://embedded.test/drip'));
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    const record: DripRecord = cfg.drips!.at(-1)!;
    await reader.cancel();
    await waitFor(() => record.closed, 2000, 'the Nest handler sees its response close');
    expect(record.finished).toBe(false);
  });

  test.each(['request.signal aborting', 'cancelling the body'])(
    '%s of an @Sse() stream: the Nest app hears its client leave and unsubscribes the stream',
    async (how) => {
      const controller = new AbortController();
      const before = cfg.clients!.length;
      const res = await handler!(new Request('http://embedded.test/events', { signal: controller.signal }));
      const reader = res.body!.getReader();
      expect((await reader.read()).done).toBe(false);
      const record = cfg.clients![before];
      if (how === 'request.signal aborting') controller.abort();
      else await reader.cancel();
      await waitFor(() => record.events.includes('unsubscribed'), 2000, 'the @Sse() stream to be unsubscribed');
      expect(record.events).toEqual(expect.arrayContaining(['req close', 'socket close', 'unsubscribed']));
    },
  );

  test('a client going away from a Hono host tears the inner response down', async () => {
    const hostCfg = config('hono-drip');
    const host = await honoHost(hostCfg);
    try {
      await new Promise<void>((resolve, reject) => {
        const req = http.get(`${host.origin}/nest/drip`, { agent: false }, (res) => {
          expect(res.statusCode).toBe(200);
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => undefined);
        req.setTimeout(5000, () => reject(new Error('no data')));
      });
      const record = hostCfg.drips!.at(-1)!;
      await waitFor(() => record.closed, 3000, 'the Nest handler behind Hono sees its response close');
      expect(record.finished).toBe(false);
    } finally {
      await host.close();
    }
  });
});

describe('createFetchHandler under https', () => {
  let handler: NestFetchHandler | undefined;
  beforeAll(async () => {
    handler = await createFetchHandler(InnerModule.forRoot(config('tls')), { prefix: '/nest' });
  });
  afterAll(async () => {
    await handler?.close();
  });

  test('a request for an https URL is secure to the Nest app, and its own redirects stay on https', async () => {
    const res = await handler!(new Request('https://embedded.test/nest/scheme'));
    expect(await res.json()).toEqual({ protocol: 'https', secure: true });
    const go = await handler!(new Request('https://embedded.test/nest/scheme-go'));
    expect(go.status).toBe(302);
    expect(go.headers.get('location')).toBe('https://embedded.test/nest/target');
  });

  test('an http URL stays http', async () => {
    const res = await handler!(new Request('http://embedded.test/nest/scheme'));
    expect(await res.json()).toEqual({ protocol: 'http', secure: false });
  });
});

describe('createFetchHandler with a Request built by its caller (no Content-Length)', () => {
  let handler: NestFetchHandler | undefined;
  beforeAll(async () => {
    handler = await createFetchHandler(InnerModule.forRoot(config('built')));
  });
  afterAll(async () => {
    await handler?.close();
  });
  const payload = { title: 'Grüße', n: 42 };
  const json = { 'content-type': 'application/json' };

  test('a string body reaches the Nest body parser', async () => {
    const res = await handler!(new Request('http://embedded.test/echo', { method: 'POST', headers: json, body: JSON.stringify(payload) }));
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ app: 'built', received: payload, contentType: 'application/json' });
  });

  test('a streamed body of unknown length does too', async () => {
    const bytes = new TextEncoder().encode(JSON.stringify(payload));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 5));
        controller.enqueue(bytes.subarray(5));
        controller.close();
      },
    });
    const init = { method: 'POST', headers: json, body, duplex: 'half' } as RequestInit;
    const res = await handler!(new Request('http://embedded.test/echo', init));
    expect(await res.json()).toEqual({ app: 'built', received: payload, contentType: 'application/json' });
  });
});

describe('close() releases the app', () => {
  test('a listener: onModuleDestroy and onApplicationShutdown ran', async () => {
    const cfg = config('closing');
    const listener = await createRequestListener(InnerModule.forRoot(cfg));
    expect(cfg.events).toEqual([]);
    await listener.close();
    expect(cfg.events).toEqual(['closing:onModuleDestroy', 'closing:onApplicationShutdown']);
  });

  test('a fetch handler: onModuleDestroy and onApplicationShutdown ran', async () => {
    const cfg = config('closing-fetch');
    const handler = await createFetchHandler(InnerModule.forRoot(cfg));
    expect((await handler(new Request('http://embedded.test/hello'))).status).toBe(200);
    await handler.close();
    expect(cfg.events).toEqual(['closing-fetch:onModuleDestroy', 'closing-fetch:onApplicationShutdown']);
  });

  test('a listener: requests after close() are answered 503, not by the destroyed app', async () => {
    const host = await plainHost(config('closed'));
    try {
      expect((await send(`${host.origin}/hello`)).status).toBe(200);
      await host.listener.close();
      const res = await send(`${host.origin}/hello`);
      expect(res.status).toBe(503);
      expect(res.body.toString()).toBe('Service Unavailable');
      expect(res.headers['x-served-by']).toBeUndefined();
    } finally {
      await host.close();
    }
  });

  test('a fetch handler behind Hono: requests after close() are answered 503', async () => {
    const host = await honoHost(config('closed-fetch'));
    try {
      expect((await send(`${host.origin}/nest/hello`)).status).toBe(200);
      await host.handler.close();
      const res = await send(`${host.origin}/nest/hello`);
      expect(res.status).toBe(503);
      expect(res.headers['x-served-by']).toBeUndefined();
    } finally {
      await host.close();
    }
  });

  test('an app inside an Express host, after its host is closed', async () => {
    const cfg = config('express-closing');
    const host = await expressHost(cfg);
    expect((await send(`${host.origin}/nest/hello`)).status).toBe(200);
    await host.close();
    expect(cfg.events).toEqual(['express-closing:onModuleDestroy', 'express-closing:onApplicationShutdown']);
  });
});
