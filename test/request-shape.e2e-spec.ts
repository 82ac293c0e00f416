import { Controller, Get, Module, Req, Res } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import express from 'express';
import { createRequestListener, GatewayModule, GatewayService, MountGateway, pathInfoOf } from 'nest-gateway';
import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import request from 'supertest';
import WebSocket, { WebSocketServer } from 'ws';
import { startNest, type Started } from './fixtures/start.js';

// The request hook's change to Express's requests should show only in `npm run bench`. These
// tests check that code sees the very same objects, and that the V8 effect the speed depends
// on is still there on this Node.
setFlagsFromString('--allow-natives-syntax');
const hasFastProperties = new Function('object', 'return %HasFastProperties(object)') as (object: object) => boolean;
const haveSameClass = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
const v8Major = Number(process.versions.v8.split('.')[0]);

interface Seen {
  reqKeys: Array<string | symbol>;
  resKeys: Array<string | symbol>;
  reqFast: boolean;
  resFast: boolean;
  req: object;
  res: object;
}

const see = (req: object, res: object): Seen => ({
  reqKeys: Reflect.ownKeys(req),
  resKeys: Reflect.ownKeys(res),
  reqFast: hasFastProperties(req),
  resFast: hasFastProperties(res),
  req,
  res,
});

/** Boots a Nest app with a plain route and a mounted Express app, each recording what it saw. */
async function boot(withGateway: boolean): Promise<{ s: Started; seen: Record<string, Seen> & { plainAll: Seen[] } }> {
  const seen = { plainAll: [] } as unknown as Record<string, Seen> & { plainAll: Seen[] };
  @Controller('plain')
  class PlainController {
    @Get()
    plain(@Req() req: IncomingMessage, @Res() res: ServerResponse) {
      seen.plain = see(req, res);
      seen.plainAll.push(seen.plain);
      res.end('plain');
    }
  }
  const app = express();
  app.get('/in', (req, res) => {
    seen.mounted = see(req, res);
    res.send('mounted');
  });
  @MountGateway('mounted', app)
  class Mounted {}
  const s = await startNest(
    withGateway
      ? { imports: [GatewayModule.forRoot()], controllers: [PlainController, Mounted] }
      : { controllers: [PlainController] },
  );
  return { s, seen };
}

/**
 * The prototype of every request and response as the server hands them over, before Express.
 * Seen as instrumentation sees them (wrapping `emit`): a 'request' listener of its own would be
 * handed the requests too, which keeps the server on Node's classes.
 */
const prototypesAtServer = (server: Server) => {
  const seen: Array<{ req: object; res: object }> = [];
  const emit = server.emit;
  server.emit = function (this: Server, event: string, ...args: unknown[]) {
    if (event === 'request') seen.push({ req: Object.getPrototypeOf(args[0]) as object, res: Object.getPrototypeOf(args[1]) as object });
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>);
  } as Server['emit'];
  return seen;
};

const listen = async (server: Server) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

describe("Express's requests and responses under the gateway's request hook", () => {
  let withHook: Awaited<ReturnType<typeof boot>>;
  let without: Awaited<ReturnType<typeof boot>>;

  beforeAll(async () => {
    withHook = await boot(true);
    without = await boot(false);
  });
  afterAll(async () => {
    await withHook?.s.close();
    await without?.s.close();
  });

  it('gives every route the same own properties, in the same order, as a Nest app without it', async () => {
    // The first request through the server is built by Node's classes, the later ones on Express's prototypes.
    for (let i = 0; i < 3; i++) {
      await request(withHook.s.url).get('/plain').expect(200, 'plain');
      await request(without.s.url).get('/plain').expect(200, 'plain');
      expect(withHook.seen.plain.reqKeys).toEqual(without.seen.plain.reqKeys);
      expect(withHook.seen.plain.resKeys).toEqual(without.seen.plain.resKeys);
    }
    expect(withHook.seen.plain.reqKeys).toEqual(without.seen.plain.reqKeys);
    expect(withHook.seen.plain.resKeys).toEqual(without.seen.plain.resKeys);
    await request(withHook.s.url).get('/mounted/in').expect(200, 'mounted');
    for (const keys of [withHook.seen.plain.reqKeys, withHook.seen.mounted.reqKeys, withHook.seen.mounted.resKeys]) {
      expect(keys.filter((key) => typeof key === 'symbol').map(String)).not.toContain('Symbol(nest-gateway.scratch)');
    }
  });

  it("has the server build them on Express's prototypes: fast properties, classes shared from one request to the next", async () => {
    // The first request through a server makes it do so; the ones after are built that way.
    for (let i = 0; i < 12; i++) await request(withHook.s.url).get('/plain').expect(200);
    const [a, b] = withHook.seen.plainAll.slice(-2);
    expect({ req: hasFastProperties(a.req), res: hasFastProperties(a.res) }).toEqual({ req: true, res: true });
    expect({ req: haveSameClass(a.req, b.req), res: haveSameClass(a.res, b.res) }).toEqual({ req: true, res: true });
    // Without the gateway every request has classes of its own on V8 before 13, as a rule: not
    // asserted, as V8 shared them once in a full-suite run on Node 20 (and kept a response in
    // fast mode once on Node 22), which is V8's doing, not the library's.
  });

  it('puts requests the server built before into dictionary mode, on V8 before 13 only', async () => {
    const fresh = await boot(true);
    try {
      await request(fresh.s.url).get('/plain').expect(200, 'plain');
      const expected = v8Major >= 13;
      const first = fresh.seen.plain;
      expect({ req: first.reqFast, res: first.resFast }).toEqual({ req: expected, res: expected });
    } finally {
      await fresh.s.close();
    }
  });
});

describe('The server under GatewayModule', () => {
  /** A Nest app under GatewayModule, initialised but not listening, and its Express app. */
  const initApp = async () => {
    @Controller('plain')
    class PlainController {
      @Get()
      plain() {
        return 'plain';
      }
    }
    @Module({ imports: [GatewayModule.forRoot()], controllers: [PlainController] })
    class InitModule {}
    const app = await NestFactory.create(InitModule, { logger: false });
    await app.init();
    return { app, instance: app.getHttpAdapter().getInstance() as (req: IncomingMessage, res: ServerResponse) => void };
  };

  it("builds requests and responses on Express's prototypes from the second request on", async () => {
    const { s } = await boot(true);
    try {
      const seen = prototypesAtServer(s.app.getHttpServer() as Server);
      const expressApp = s.app.getHttpAdapter().getInstance() as { request: object; response: object };
      for (let i = 0; i < 3; i++) await request(s.url).get('/plain').expect(200, 'plain');
      await request(s.url).get('/mounted/in').expect(200, 'mounted');
      expect(seen[0]).toEqual({ req: IncomingMessage.prototype, res: ServerResponse.prototype });
      for (const later of seen.slice(1)) expect(later).toEqual({ req: expressApp.request, res: expressApp.response });
    } finally {
      await s.close();
    }
  });

  it('leaves a server created with classes of its own as it is', async () => {
    class OwnRequest extends IncomingMessage {}
    class OwnResponse extends ServerResponse<IncomingMessage> {}
    const { app, instance } = await initApp();
    const server = createServer({ IncomingMessage: OwnRequest, ServerResponse: OwnResponse }, instance);
    const seen = prototypesAtServer(server);
    try {
      const url = await listen(server);
      for (let i = 0; i < 3; i++) await request(url).get('/plain').expect(200, 'plain');
      expect(seen).toHaveLength(3);
      for (const each of seen) expect(each).toEqual({ req: OwnRequest.prototype, res: OwnResponse.prototype });
    } finally {
      server.close();
      await app.close();
    }
  });

  it('leaves a server whose other routes never reach the app as it is: their requests keep Node\'s prototypes', async () => {
    const { app, instance } = await initApp();
    const others: Array<{ prototype: object; query: unknown }> = [];
    const server = createServer((req, res) => {
      if (req.url === '/plain') return instance(req, res);
      const own = req as IncomingMessage & { query?: unknown };
      try {
        // A plain Node handler's own query (this file is strict: a getter-only accessor throws).
        own.query = { own: true };
        others.push({ prototype: Object.getPrototypeOf(req) as object, query: own.query });
      } catch (error) {
        others.push({ prototype: Object.getPrototypeOf(req) as object, query: (error as Error).message });
      }
      res.end('other');
    });
    const seen = prototypesAtServer(server);
    try {
      const url = await listen(server);
      for (let i = 0; i < 3; i++) {
        await request(url).get('/plain').expect(200, 'plain');
        await request(url).get('/other').expect(200, 'other');
      }
      expect(others).toEqual(Array(3).fill({ prototype: IncomingMessage.prototype, query: { own: true } }));
      for (const each of seen) expect(each).toEqual({ req: IncomingMessage.prototype, res: ServerResponse.prototype });
    } finally {
      server.close();
      await app.close();
    }
  });

  it("goes back to Node's classes when another listener starts taking the server's requests (a WebSocket server)", async () => {
    const { s, seen: atRoute } = await boot(true);
    try {
      const server = s.app.getHttpServer() as Server;
      const seen = prototypesAtServer(server);
      for (let i = 0; i < 2; i++) await request(s.url).get('/plain').expect(200, 'plain');
      const expressApp = s.app.getHttpAdapter().getInstance() as { request: object };
      expect(seen[1].req).toBe(expressApp.request);
      const wss = new WebSocketServer({ server, path: '/ws' });
      const upgraded = new Promise<IncomingMessage>((resolve) => {
        wss.once('connection', (ws, req) => {
          ws.close();
          resolve(req);
        });
      });
      const client = new WebSocket(s.url.replace('http', 'ws') + '/ws');
      client.on('error', () => {});
      expect(Object.getPrototypeOf(await upgraded)).toBe(IncomingMessage.prototype);
      wss.close();
      for (let i = 0; i < 2; i++) await request(s.url).get('/plain').expect(200, 'plain');
      for (const later of seen.slice(2)) expect(later).toEqual({ req: IncomingMessage.prototype, res: ServerResponse.prototype });
      // Express changes their prototype again: dictionary mode again, on V8 before 13 only.
      expect(atRoute.plain.reqFast).toBe(v8Major >= 13);
    } finally {
      await s.close();
    }
  });
});

describe('A host server serving a Nest app through createRequestListener', () => {
  @Controller('embedded')
  class EmbeddedController {
    @Get()
    embedded(@Req() req: IncomingMessage) {
      return { fast: hasFastProperties(req) };
    }
  }
  /** No GatewayModule: the listener alone does it. */
  @Module({ controllers: [EmbeddedController] })
  class EmbeddedModule {}


  it("builds its requests on the app's prototypes when the listener is its only one", async () => {
    const listener = await createRequestListener(EmbeddedModule);
    const server = createServer(listener);
    const seen = prototypesAtServer(server);
    try {
      const url = await listen(server);
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push((await request(url).get('/embedded').expect(200)).body);
      const expressApp = listener.app.getHttpAdapter().getInstance() as { request: object };
      expect(seen.map((each) => each.req)).toEqual([IncomingMessage.prototype, expressApp.request, expressApp.request]);
      expect(answers.slice(1)).toEqual([{ fast: true }, { fast: true }]);
    } finally {
      server.close();
      await listener.close();
    }
  });

  it("leaves a host Express app's server as it is: the host's code sees its own requests", async () => {
    const listener = await createRequestListener(EmbeddedModule, { prefix: '/nest' });
    const host = express();
    host.use('/nest', listener);
    host.get('/own', (req, res) => res.json({ hostRequest: Object.getPrototypeOf(req) === host.request }));
    const server = createServer(host);
    const seen = prototypesAtServer(server);
    try {
      const url = await listen(server);
      for (let i = 0; i < 2; i++) {
        await request(url).get('/nest/embedded').expect(200);
        expect((await request(url).get('/own').expect(200)).body).toEqual({ hostRequest: true });
      }
      expect(seen.map((each) => each.req)).toEqual(Array(4).fill(IncomingMessage.prototype));
    } finally {
      server.close();
      await listener.close();
    }
  });
});

describe("callApp's own request and response for an Express app", () => {
  let s: Started;
  const seen: Array<{ req: object; res: object }> = [];

  beforeAll(async () => {
    const app = express();
    app.get('/in', (req, res) => {
      seen.push({ req, res });
      res.send('called');
    });
    @Controller('call')
    class CallingController {
      constructor(private readonly gateway: GatewayService) {}
      @Get('*path')
      call(@Req() req: IncomingMessage) {
        return this.gateway.callApp(app, req, pathInfoOf(req));
      }
    }
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CallingController] });
  });
  afterAll(() => s?.close());

  it('are built with the app\'s prototypes, and keep fast properties with classes shared from one call to the next', async () => {
    // V8 settles an object's size after its constructor's first few objects.
    for (let i = 0; i < 12; i++) await request(s.url).get('/call/in').expect(200, 'called');
    const [a, b] = seen.slice(-2);
    expect(Object.getPrototypeOf(a.req)).toBe(Object.getPrototypeOf(b.req));
    expect(Object.getPrototypeOf(a.res)).toBe(Object.getPrototypeOf(b.res));
    expect({ req: hasFastProperties(a.req), res: hasFastProperties(a.res) }).toEqual({ req: true, res: true });
    expect({ req: haveSameClass(a.req, b.req), res: haveSameClass(a.res, b.res) }).toEqual({ req: true, res: true });
  });
});
