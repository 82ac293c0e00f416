import { Controller, Get, Req, Res } from '@nestjs/common';
import express from 'express';
import { GatewayModule, GatewayService, MountGateway, pathInfoOf } from 'nest-gateway';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import request from 'supertest';
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
}

const see = (req: object, res: object): Seen => ({
  reqKeys: Reflect.ownKeys(req),
  resKeys: Reflect.ownKeys(res),
  reqFast: hasFastProperties(req),
  resFast: hasFastProperties(res),
});

/** Boots a Nest app with a plain route and a mounted Express app, each recording what it saw. */
async function boot(withGateway: boolean): Promise<{ s: Started; seen: Record<string, Seen> }> {
  const seen: Record<string, Seen> = {};
  @Controller('plain')
  class PlainController {
    @Get()
    plain(@Req() req: IncomingMessage, @Res() res: ServerResponse) {
      seen.plain = see(req, res);
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

describe("Express's requests and responses under the gateway's request hook", () => {
  let withHook: { s: Started; seen: Record<string, Seen> };
  let without: { s: Started; seen: Record<string, Seen> };

  beforeAll(async () => {
    withHook = await boot(true);
    without = await boot(false);
  });
  afterAll(async () => {
    await withHook?.s.close();
    await without?.s.close();
  });

  it('gives every route the same own properties, in the same order, as a Nest app without it', async () => {
    await request(withHook.s.url).get('/plain').expect(200, 'plain');
    await request(without.s.url).get('/plain').expect(200, 'plain');
    expect(withHook.seen.plain.reqKeys).toEqual(without.seen.plain.reqKeys);
    expect(withHook.seen.plain.resKeys).toEqual(without.seen.plain.resKeys);
    await request(withHook.s.url).get('/mounted/in').expect(200, 'mounted');
    for (const keys of [withHook.seen.plain.reqKeys, withHook.seen.mounted.reqKeys, withHook.seen.mounted.resKeys]) {
      expect(keys.filter((key) => typeof key === 'symbol').map(String)).not.toContain('Symbol(nest-gateway.scratch)');
    }
  });

  it('puts them into dictionary mode on V8 before 13 only (classes unshared by a prototype change)', async () => {
    await request(withHook.s.url).get('/plain').expect(200);
    await request(withHook.s.url).get('/mounted/in').expect(200);
    await request(without.s.url).get('/plain').expect(200);
    const expected = v8Major >= 13;
    for (const seen of [withHook.seen.plain, withHook.seen.mounted]) {
      expect({ req: seen.reqFast, res: seen.resFast }).toEqual({ req: expected, res: expected });
    }
    // Without the hook they stay in fast mode, each with classes of its own.
    expect({ req: without.seen.plain.reqFast, res: without.seen.plain.resFast }).toEqual({ req: true, res: true });
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
