import { GatewayModule, MountGateway } from 'nest-gateway';
import request from 'supertest';
import { echoListener, expressSubApp, honoApp, koaApp } from './fixtures/apps.js';
import { startNest, type Started } from './fixtures/start.js';

@MountGateway('echo', echoListener)
class EchoMount {}
@MountGateway('express', expressSubApp())
class ExpressMount {}
@MountGateway('koa', koaApp())
class KoaMount {}
@MountGateway('hono', honoApp())
class HonoMount {}

describe('smoke', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [EchoMount, ExpressMount, KoaMount, HonoMount] });
  });
  afterAll(() => s.close());

  it('works', async () => {
    for (const p of ['/echo', '/echo/', '/echo/a/b?x=1', '/express/', '/express/query?a=1', '/express/nested/deep', '/koa/x', '/hono/hello/bob', '/hono', '/express/file', '/express/redirect', '/express/throw', '/express/async-throw', '/express/missing']) {
      const r = await request(s.url).get(p);
      console.log(p, r.status, r.headers['content-type'], r.text.slice(0, 300));
    }
    const r = await request(s.url).post('/echo/x').set('content-type', 'application/json').send('{"a":1,"a":2}');
    console.log(r.text);
    console.log(s.logger.lines.filter(l => l.level !== 'log'));
  });
});
