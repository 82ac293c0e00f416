import {
  ArgumentsHost,
  Catch,
  Controller,
  ExceptionFilter,
  ForbiddenException,
  Get,
  Injectable,
  VersioningType,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type NestInterceptor,
  type PipeTransform,
  UseFilters,
  UseGuards,
  UseInterceptors,
  UsePipes,
  HttpException,
} from '@nestjs/common';
import express, { type Response } from 'express';
import { GatewayModule, MountGateway } from 'nest-gateway';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tap } from 'rxjs';
import request from 'supertest';
import { echoListener, expressSubApp, honoApp, koaApp } from './fixtures/apps.js';
import { startNest, type Started } from './fixtures/start.js';

@MountGateway('wiki', echoListener)
class WikiMount {}

@Controller('wikix')
class WikixController {
  @Get()
  wikix() {
    return { owner: 'nest' };
  }
}

@MountGateway('express', expressSubApp())
class ExpressMount {}

@MountGateway('koa', koaApp())
class KoaMount {}

@MountGateway('hono', honoApp())
class HonoMount {}

@MountGateway('tracs/:id', echoListener)
class ParamMount {}

@MountGateway('versioned', echoListener, { version: '2' })
class VersionedMount {}

@Injectable()
class NeedsPassword implements CanActivate {
  canActivate(context: ExecutionContext) {
    return context.switchToHttp().getRequest<IncomingMessage>().headers['x-password'] === 'open sesame';
  }
}

@Injectable()
class StampInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler) {
    const res = context.switchToHttp().getResponse<ServerResponse>();
    res.setHeader('x-intercepted', 'yes');
    return next.handle().pipe(tap(() => res.setHeader('x-after', 'never-sent-too-late')));
  }
}

class RejectSecretPaths implements PipeTransform {
  transform(value: unknown) {
    if (typeof value === 'string' && value.startsWith('/secret')) throw new ForbiddenException('no secrets');
    return value;
  }
}

@Catch(HttpException)
class TeapotFilter implements ExceptionFilter {
  catch(exception: HttpException, host: ArgumentsHost) {
    host.switchToHttp().getResponse<Response>().status(418).json({ filtered: exception.getStatus() });
  }
}

@MountGateway('guarded', echoListener)
@UseGuards(NeedsPassword)
class GuardedMount {}

@MountGateway('intercepted', echoListener)
@UseInterceptors(StampInterceptor)
class InterceptedMount {}

@MountGateway('piped', echoListener)
@UsePipes(RejectSecretPaths)
class PipedMount {}

@MountGateway('filtered', expressSubApp())
@UseFilters(TeapotFilter)
@UseGuards(NeedsPassword)
class FilteredMount {}

const controllers = [
  WikiMount,
  WikixController,
  ExpressMount,
  KoaMount,
  HonoMount,
  ParamMount,
  VersionedMount,
  GuardedMount,
  InterceptedMount,
  PipedMount,
  FilteredMount,
];

describe('@MountGateway', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers });
  });
  afterAll(() => s.close());

  it.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'])('serves %s', async (method) => {
    const res = await request(s.url)[method.toLowerCase() as 'get']('/wiki/page?x=1');
    expect(res.status).toBe(200);
    if (method !== 'HEAD') expect(res.body).toMatchObject({ method, url: '/page?x=1', baseUrl: '/wiki' });
  });

  it('serves the bare path, the path with a slash and deep sub-paths', async () => {
    expect((await request(s.url).get('/wiki')).body).toMatchObject({ url: '/', baseUrl: '/wiki', originalUrl: '/wiki' });
    expect((await request(s.url).get('/wiki/')).body).toMatchObject({ url: '/', baseUrl: '/wiki', originalUrl: '/wiki/' });
    expect((await request(s.url).get('/wiki/a/b/c/')).body).toMatchObject({ url: '/a/b/c/', baseUrl: '/wiki' });
    expect((await request(s.url).get('/wiki?q=1')).body).toMatchObject({ url: '/?q=1', baseUrl: '/wiki' });
  });

  it('matches on segment boundaries only', async () => {
    expect((await request(s.url).get('/wikix')).body).toEqual({ owner: 'nest' });
    expect((await request(s.url).get('/wikix/a')).status).toBe(404);
  });

  it('passes pathInfo undecoded', async () => {
    const res = await request(s.url).get('/wiki/a%2Fb/%C3%A9t%C3%A9?x=%20');
    expect(res.body.url).toBe('/a%2Fb/%C3%A9t%C3%A9?x=%20');
  });

  it('supports route parameters in the mount path', async () => {
    const res = await request(s.url).get('/tracs/alpha/ticket/1');
    expect(res.body).toMatchObject({ url: '/ticket/1', baseUrl: '/tracs/alpha' });
  });

  it('gives an Express sub-app its own routes, redirects, files and query parsing', async () => {
    expect((await request(s.url).get('/express/')).body).toEqual({
      where: 'root',
      baseUrl: '/express',
      url: '/',
      originalUrl: '/express/',
    });
    expect((await request(s.url).get('/express/query?a=1&b=two')).body).toEqual({ query: { a: '1', b: 'two' } });
    expect((await request(s.url).get('/express/nested/deep')).body).toEqual({ baseUrl: '/express/nested', url: '/deep' });
    const redirect = await request(s.url).get('/express/redirect');
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe('/express/target');
    const file = await request(s.url).get('/express/file');
    expect(file.status).toBe(200);
    expect(file.text).toBe('hello from a file\n');
    expect(file.headers['content-type']).toMatch(/^text\/plain/);
    const parsed = await request(s.url).post('/express/json').send({ a: 1 });
    expect(parsed.body).toEqual({ parsed: { a: 1 } });
  });

  it('answers 404 through Nest when the Express app falls through', async () => {
    const res = await request(s.url).get('/express/missing');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ statusCode: 404, message: 'Cannot GET /express/missing' });
  });

  it('runs a Koa app with the same mount semantics', async () => {
    const res = await request(s.url).get('/koa/a/b?c=d');
    expect(res.headers['x-koa']).toBe('1');
    expect(res.body).toEqual({ url: '/a/b?c=d', path: '/a/b', method: 'GET', baseUrl: '/koa' });
  });

  it('runs a Hono app as a fetch handler', async () => {
    expect((await request(s.url).get('/hono/hello/bob')).text).toBe('Hello bob');
    const root = await request(s.url).get('/hono?x=1');
    expect(root.body.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?x=1$/);
  });

  it('applies guards declared on the class', async () => {
    expect((await request(s.url).get('/guarded/x')).status).toBe(403);
    const allowed = await request(s.url).get('/guarded/x').set('x-password', 'open sesame');
    expect(allowed.status).toBe(200);
    expect(allowed.body.url).toBe('/x');
  });

  it('applies interceptors declared on the class', async () => {
    const res = await request(s.url).get('/intercepted/x');
    expect(res.status).toBe(200);
    expect(res.headers['x-intercepted']).toBe('yes');
  });

  it('applies pipes declared on the class to the pathInfo', async () => {
    expect((await request(s.url).get('/piped/public')).status).toBe(200);
    expect((await request(s.url).get('/piped/secret/x')).status).toBe(403);
  });

  it('applies exception filters declared on the class', async () => {
    const res = await request(s.url).get('/filtered/');
    expect(res.status).toBe(418);
    expect(res.body).toEqual({ filtered: 403 });
  });
});

describe('@MountGateway with a global prefix and URI versioning', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [WikiMount, VersionedMount, ExpressMount] }, (app) => {
      app.setGlobalPrefix('api');
      app.enableVersioning({ type: VersioningType.URI });
    });
  });
  afterAll(() => s.close());

  it('puts the global prefix into baseUrl', async () => {
    expect((await request(s.url).get('/api/wiki/a?b=1')).body).toMatchObject({ url: '/a?b=1', baseUrl: '/api/wiki' });
    expect((await request(s.url).get('/api/wiki')).body).toMatchObject({ url: '/', baseUrl: '/api/wiki' });
    expect((await request(s.url).get('/wiki/a')).status).toBe(404);
  });

  it('puts the version into baseUrl', async () => {
    expect((await request(s.url).get('/api/v2/versioned/x')).body).toMatchObject({ url: '/x', baseUrl: '/api/v2/versioned' });
    expect((await request(s.url).get('/api/versioned/x')).status).toBe(404);
  });

  it('lets the Express app redirect under the full prefix', async () => {
    const res = await request(s.url).get('/api/express/redirect');
    expect(res.headers.location).toBe('/api/express/target');
  });
});

describe('the caller request after a mounted app', () => {
  let s: Started;
  const seen: Array<Record<string, unknown>> = [];
  const fallThrough = (req: IncomingMessage, _res: ServerResponse, next?: (e?: unknown) => void) => {
    (req as unknown as { url: string }).url = '/mutated';
    next?.();
  };
  @MountGateway('through', fallThrough)
  class ThroughMount {}

  /** An app that turns the mount's properties into accessors of its own. */
  const accessors = (req: IncomingMessage & Record<string, unknown>, res: ServerResponse) => {
    for (const key of ['url', 'gatewayEnv']) {
      let value = req[key];
      Object.defineProperty(req, key, { get: () => value, set: (v: unknown) => (value = `set:${String(v)}`), enumerable: true, configurable: true });
    }
    res.end('accessors');
  };
  @MountGateway('accessors', accessors, { env: { site: 'accessors' } })
  class AccessorMount {}

  /** An Express app whose request and response prototypes carry helpers of their own. */
  const extended = express();
  Object.assign(extended.request, { tenant: () => 'extended' });
  Object.assign(extended.response, { brand: () => 'extended' });
  extended.get('/who', (req, res) => {
    res.json({ tenant: (req as unknown as { tenant(): string }).tenant(), ip: req.ip });
  });
  @MountGateway('extended', extended)
  class ExtendedMount {}

  /** A plain Express app (of Nest's Express) that reports how it sees its request. */
  let nestExpress: express.Express | undefined;
  const plain = express();
  plain.set('title', 'plain');
  plain.get('/inside', (req, res) => {
    res.locals.seen = true;
    res.json({
      reqApp: req.app === plain,
      resApp: res.app === plain,
      title: req.app.get('title'),
      ip: req.ip,
      locals: res.locals.seen,
      linked: req.res === res && res.req === req,
      sameRequest: Object.getPrototypeOf(req) === nestExpress?.request,
      late: typeof (req as unknown as { late?: unknown }).late,
      env: (req as unknown as { gatewayEnv?: unknown }).gatewayEnv,
    });
  });
  @MountGateway('plain', plain, { env: { site: 'plain' } })
  class PlainMount {}

  /** An Express app of Nest's Express with an Express app mounted in it, each with settings of its own. */
  const parent = express();
  parent.set('title', 'parent');
  const child = express();
  child.set('title', 'child');
  child.set('query parser', 'extended');
  child.get('/who', (req, res) => {
    res.json({ reqApp: req.app === child, resApp: res.app === child, title: req.app.get('title'), query: req.query });
  });
  parent.use('/child', child);
  /** One called as a plain function, which Express lets set its own prototypes too. */
  const called = express();
  called.set('title', 'called');
  called.get('/who', (req, res) => res.json({ reqApp: req.app === called, title: req.app.get('title') }));
  parent.use('/called', (req, res, next) => called(req, res, next));
  parent.get('/child/after', (req, res) => {
    res.json({ reqApp: req.app === parent, resApp: res.app === parent, title: req.app.get('title') });
  });
  @MountGateway('parent', parent)
  class ParentMount {}

  /** What Nest's request and response give: read before the app, and on 'finish' after it. */
  const view = (req: Record<string, unknown> & { get(name: string): unknown }, res: Record<string, unknown>) => ({
    url: req.url,
    baseUrl: req.baseUrl,
    reqApp: req.app,
    resApp: res.app,
    ip: req.ip,
    protocol: req.protocol,
    secure: req.secure,
    host: req.get('host'),
    tenant: typeof req.tenant,
    brand: typeof res.brand,
    ownKeys: Object.keys(req).includes('app') || Object.keys(res).includes('app'),
    originalUrl: req.originalUrl,
    gatewayEnv: req.gatewayEnv,
    listsGatewayEnv: Object.keys(req).includes('gatewayEnv'),
    urlIsData: 'value' in (Object.getOwnPropertyDescriptor(req, 'url') ?? {}),
    reqPrototype: Object.getPrototypeOf(req),
    resPrototype: Object.getPrototypeOf(res),
  });

  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [ThroughMount, AccessorMount, ExpressMount, ExtendedMount, PlainMount, ParentMount] }, (app) => {
      // Nest trusts its proxy; the mounted apps do not (Express's default).
      nestExpress = app.getHttpAdapter().getInstance() as express.Express;
      nestExpress.set('trust proxy', true);
      app.use((req: Record<string, unknown> & { get(name: string): unknown }, res: ServerResponse & Record<string, unknown>, next: () => void) => {
        const before = view(req, res);
        res.on('finish', () => seen.push({ before, after: view(req, res) }));
        next();
      });
    });
  });
  afterAll(() => s.close());

  it("gives Nest's code after the app Nest's request and response back, whether the app answered or fell through", async () => {
    seen.length = 0;
    const forwarded = { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' };
    await request(s.url).get('/express/query?a=1').set(forwarded);
    await request(s.url).get('/through/x').set(forwarded);
    await request(s.url).get('/accessors/x/').set(forwarded);
    await request(s.url).get('/express/redirect').set(forwarded);
    const who = await request(s.url).get('/extended/who').set(forwarded);
    // The app itself saw its own request: its helpers, its own (untrusting) proxy setting.
    expect(who.body.tenant).toBe('extended');
    expect(who.body.ip).not.toBe('203.0.113.9');
    expect(seen).toHaveLength(5);
    for (const { before, after } of seen as Array<{ before: Record<string, unknown>; after: Record<string, unknown> }>) {
      expect(after).toEqual(before);
      expect(after.reqApp).toBe(before.reqApp);
      expect(after.resApp).toBe(before.resApp);
      expect(after).toMatchObject({ ip: '203.0.113.9', protocol: 'https', secure: true, tenant: 'undefined', brand: 'undefined' });
    }
  });

  it('lets an Express app of the same Express see itself on the client\'s request, which keeps its prototype', async () => {
    seen.length = 0;
    const forwarded = { 'x-forwarded-for': '203.0.113.9' };
    const res = await request(s.url).get('/plain/inside').set(forwarded);
    expect(res.headers['x-powered-by']).toBe('Express');
    // Its settings, its `app`, its locals; its own (untrusting) proxy setting.
    expect(res.body).toEqual({ reqApp: true, resApp: true, title: 'plain', ip: expect.not.stringContaining('203.0.113.9'), locals: true, linked: true, sameRequest: true, late: 'undefined', env: { site: 'plain' } });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ after: { reqApp: nestExpress, resApp: nestExpress, ip: '203.0.113.9', ownKeys: false } });
    // The mount's own properties are gone again for Nest's code after it: values, and listed keys.
    const { before, after } = seen[0] as { before: Record<string, unknown>; after: Record<string, unknown> };
    expect(after).toMatchObject({ url: before.url, baseUrl: before.baseUrl, originalUrl: '/plain/inside', gatewayEnv: undefined, listsGatewayEnv: false });
    // Helpers the app adds to its prototypes later reach its requests from then on.
    Object.assign(plain.request, { late: () => 'late' });
    const later = await request(s.url).get('/plain/inside').set(forwarded);
    expect(later.body).toMatchObject({ reqApp: true, title: 'plain', late: 'function', sameRequest: false });
    expect(seen[1]).toMatchObject({ after: { reqApp: nestExpress, ip: '203.0.113.9', tenant: 'undefined' } });
  });

  it('lets an Express app mounted inside such an app see itself, as Express gives it', async () => {
    seen.length = 0;
    const inner = await request(s.url).get('/parent/child/who?a[b]=1');
    expect(inner.body).toEqual({ reqApp: true, resApp: true, title: 'child', query: { a: { b: '1' } } });
    // Back in the outer app after the inner one passed the request on: the outer app again.
    const after = await request(s.url).get('/parent/child/after');
    expect(after.body).toEqual({ reqApp: true, resApp: true, title: 'parent' });
    expect((await request(s.url).get('/parent/called/who')).body).toEqual({ reqApp: true, title: 'called' });
    expect(seen).toHaveLength(3);
    for (const { after: view } of seen as Array<{ after: Record<string, unknown> }>) {
      expect(view).toMatchObject({ reqApp: nestExpress, resApp: nestExpress, ownKeys: false });
      expect(view.reqPrototype).toBe(nestExpress?.request);
      expect(view.resPrototype).toBe(nestExpress?.response);
    }
  });
});

describe("Nest's route after a mounted Express app", () => {
  /** What a metrics or logging interceptor labels a request with once the handler is done. */
  const routesSeen: unknown[] = [];
  @Injectable()
  class RouteLabel implements NestInterceptor {
    intercept(context: ExecutionContext, next: CallHandler) {
      const req = context.switchToHttp().getRequest<{ route?: { path?: unknown } }>();
      return next.handle().pipe(tap(() => routesSeen.push(req.route?.path)));
    }
  }
  @MountGateway('labelled', expressSubApp())
  @UseInterceptors(RouteLabel)
  class LabelledMount {}

  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [LabelledMount] });
  });
  afterAll(() => s.close());

  it("is the mount's route again, not the one the app matched", async () => {
    expect((await request(s.url).get('/labelled/query?a=1')).body).toEqual({ query: { a: '1' } });
    expect((await request(s.url).get('/labelled/nested/deep')).status).toBe(200);
    expect(routesSeen).toEqual(['/labelled/*gatewayPathInfo', '/labelled/*gatewayPathInfo']);
  });
});
