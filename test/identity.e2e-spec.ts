import { All, Controller, Get, Inject, Injectable, Req, UseGuards } from '@nestjs/common';
import { realpathSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import {
  GatewayHeaders,
  GatewayModule,
  GatewayService,
  MountGateway,
  PathInfo,
  RemoteUserGuard,
  cgiApp,
  fetchApp,
  isGitPushRequest,
} from 'nest-gateway';
import request from 'supertest';
import { echoListener } from './fixtures/apps.js';
import { LoginController, authenticate, basic } from './fixtures/login.js';
import { startNest, type Started } from './fixtures/start.js';

const fetchEcho = fetchApp(async (req, env) =>
  Response.json({ url: req.url, headers: Object.fromEntries(req.headers), env }),
);

@Injectable()
class PushNeedsLogin extends RemoteUserGuard {
  protected override requiresUser(req: unknown) {
    return isGitPushRequest(req);
  }
}

@MountGateway('node', echoListener)
class NodeMount {}

@MountGateway('fetch', fetchEcho)
class FetchMount {}

@MountGateway('service', echoListener, { remoteUser: 'svc-account' })
class ServiceMount {}

@MountGateway('private', echoListener)
@UseGuards(RemoteUserGuard)
class PrivateMount {}

@MountGateway('git', echoListener)
@UseGuards(PushNeedsLogin)
class GitMount {}

function ignorant(req: IncomingMessage, res: ServerResponse) {
  const url = req.url ?? '/';
  res.setHeader('set-cookie', ['a=1; Path=/; HttpOnly', 'b=2; path=/sub; Secure', 'c=3', 'd=4; Path=/pfx/x', 'e=5; Path=/x; Path=/']);
  if (url.startsWith('/relative')) res.writeHead(302, { location: '/login?x=1' });
  else if (url.startsWith('/fragment')) res.writeHead(302, { location: '/pfx#top' });
  else if (url.startsWith('/secure')) res.writeHead(302, { location: `https://${req.headers.host}/login` });
  else if (url.startsWith('/scheme-relative')) res.writeHead(302, { location: `//${req.headers.host}/login` });
  else if (url.startsWith('/page-relative')) res.writeHead(302, { location: 'login' });
  else if (url.startsWith('/absolute')) res.writeHead(302, { location: `http://${req.headers.host}/login` });
  else if (url.startsWith('/elsewhere')) res.writeHead(302, { location: 'https://example.org/login' });
  else if (url.startsWith('/already')) res.writeHead(302, { location: '/pfx/login' });
  else res.writeHead(200);
  res.end('ok');
}

@MountGateway('pfx', ignorant, { rewrite: { location: true, cookiePath: true } })
class RewrittenMount {}

@MountGateway('raw', ignorant)
class UnrewrittenMount {}

@MountGateway('t/:tenant', ignorant, { rewrite: { cookiePath: true } })
class TenantMount {}

@MountGateway('headers', echoListener)
@GatewayHeaders({ set: { server: 'nest-gateway' }, remove: ['x-powered-by'], append: { vary: 'Cookie' } })
class HeadersMount {}

@Controller('calls')
@GatewayHeaders({ set: { 'x-class': 'yes' } })
class CallsController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All('node/*path')
  node(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(echoListener, req, pathInfo);
  }

  @All('anonymous/*path')
  anonymous(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(echoListener, req, pathInfo, { remoteUser: null });
  }

  @Get('plain')
  @GatewayHeaders({ set: { 'x-handler': 'yes' }, remove: ['x-powered-by'] })
  plain() {
    return { plain: true };
  }
}

@Controller('both')
@GatewayHeaders({ append: { vary: 'Cookie', 'set-cookie': 'seen=1; Path=/' } })
class BothLevelsController {
  @Get('x')
  @GatewayHeaders({ set: { 'x-handler': 'yes' } })
  x() {
    return { both: true };
  }
}

// Stacked decorators apply as read, top to bottom: class ones first, then the handler's.
@Controller('stacked')
@GatewayHeaders({ set: { 'x-order': 'class-1' }, append: { 'x-trail': 'class-1' } })
@GatewayHeaders({ set: { 'x-class-2': 'yes' }, append: { 'x-trail': 'class-2' } })
class StackedController {
  @Get('x')
  @GatewayHeaders({ append: { 'x-trail': 'handler-1' } })
  @GatewayHeaders({ set: { 'x-order': 'handler-2' }, append: { 'x-trail': 'handler-2' } })
  x() {
    return { stacked: true };
  }
}

@MountGateway('stacked-mount', echoListener)
@GatewayHeaders({ set: { 'x-first': 'yes', 'x-dropped': 'yes' } })
@GatewayHeaders({ remove: ['x-dropped'], append: { vary: 'Cookie' } })
class StackedMount {}

const controllers = [
  StackedController,
  StackedMount,
  LoginController,
  NodeMount,
  FetchMount,
  ServiceMount,
  PrivateMount,
  GitMount,
  RewrittenMount,
  UnrewrittenMount,
  TenantMount,
  HeadersMount,
  CallsController,
  BothLevelsController,
];

const FORGED = {
  'Remote-User': 'mallory',
  'REMOTE-USER': 'mallory',
  remote_user: 'mallory',
  'X-Remote-User': 'mallory',
  'x-forwarded-user': 'mallory',
  'X-WebAuth-User': 'mallory',
};

function identityHeadersIn(headers: Record<string, unknown>) {
  return Object.entries(headers).filter(([name]) => /remote.user|forwarded.user|webauth/i.test(name));
}

describe('single sign-on', () => {
  let s: Started;
  let callerSaw: Record<string, unknown> = {};
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot({ loginUrl: '/login' })], controllers }, (app) => {
      app.use(authenticate);
      app.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
        const headers = req.headers;
        res.on('finish', () => {
          callerSaw = { sameObject: req.headers === headers, remoteUser: req.headers['remote-user'] };
        });
        next();
      });
    });
  });
  afterAll(() => s.close());

  const forged = (path: string) => {
    let r = request(s.url).get(path);
    for (const [name, value] of Object.entries(FORGED)) r = r.set(name, value);
    return r;
  };

  it.each(['/node/x', '/calls/node/x'])('removes every forged identity header for anonymous requests (%s)', async (path) => {
    const res = await forged(path);
    expect(res.status).toBe(200);
    expect(identityHeadersIn(res.body.headers)).toEqual([]);
  });

  it('removes forged identity headers and sets no REMOTE_USER for fetch apps', async () => {
    const res = await forged('/fetch/x');
    expect(identityHeadersIn(res.body.headers)).toEqual([]);
    expect(res.body.env.REMOTE_USER).toBeUndefined();
  });

  it.each(['/node/x', '/calls/node/x'])('passes the logged-in user once, never a forged one (%s)', async (path) => {
    const res = await forged(path).set('authorization', basic('alice'));
    expect(identityHeadersIn(res.body.headers)).toEqual([['remote-user', 'alice']]);
  });

  it('passes the user to fetch apps as header and env.REMOTE_USER', async () => {
    const res = await forged('/fetch/x').set('authorization', basic('bob'));
    expect(identityHeadersIn(res.body.headers)).toEqual([['remote-user', 'bob']]);
    expect(res.body.env.REMOTE_USER).toBe('bob');
  });

  it('restores the caller’s own headers after a direct mount', async () => {
    const res = await forged('/node/x').set('authorization', basic('alice'));
    expect(res.body.headers['remote-user']).toBe('alice');
    expect(callerSaw).toEqual({ sameObject: true, remoteUser: 'mallory' });
  });

  it('lets a mount or a call override the principal', async () => {
    const service = await forged('/service/x');
    expect(identityHeadersIn(service.body.headers)).toEqual([['remote-user', 'svc-account']]);
    const anonymous = await forged('/calls/anonymous/x').set('authorization', basic('alice'));
    expect(identityHeadersIn(anonymous.body.headers)).toEqual([]);
  });

  it('challenges command-line clients with Basic, then lets them in', async () => {
    const anonymous = await request(s.url).get('/private/x');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toMatch(/^Basic realm=/);
    const wrong = await request(s.url).get('/private/x').set('authorization', basic('alice', 'nope'));
    expect(wrong.status).toBe(401);
    const ok = await request(s.url).get('/private/x').set('authorization', basic('alice'));
    expect(ok.status).toBe(200);
    expect(ok.body.headers['remote-user']).toBe('alice');
  });

  it('sends browsers to the login page and back, then keeps them signed in by cookie', async () => {
    const anonymous = await request(s.url).get('/private/docs?page=2').set('accept', 'text/html');
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.location).toBe('/login?next=%2Fprivate%2Fdocs%3Fpage%3D2');
    const login = await request(s.url)
      .post('/login?next=%2Fprivate%2Fdocs%3Fpage%3D2')
      .type('form')
      .send({ username: 'bob', password: 'builder' });
    expect(login.status).toBe(302);
    expect(login.headers.location).toBe('/private/docs?page=2');
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0].split(';')[0];
    const page = await request(s.url).get('/private/docs?page=2').set('accept', 'text/html').set('cookie', cookie);
    expect(page.status).toBe(200);
    expect(page.body).toMatchObject({ url: '/docs?page=2' });
    expect(page.body.headers['remote-user']).toBe('bob');
  });

  it('answers 401, not the login redirect, to a client that refuses HTML (q=0)', async () => {
    const refuses = await request(s.url).get('/private/x').set('accept', 'application/json, text/html;q=0');
    expect(refuses.status).toBe(401);
    expect(refuses.headers['www-authenticate']).toMatch(/^Basic/);
    const prefersJson = await request(s.url).get('/private/x').set('accept', 'application/json, text/html;q=0.5');
    expect(prefersJson.status).toBe(302);
  });

  it('puts only the local path and query in next for an absolute-form request target', async () => {
    const reply = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const { hostname, port } = new URL(s.url);
      http
        .request({ hostname, port, path: 'http://evil.example/private/a?b=c', headers: { accept: 'text/html' }, agent: false }, resolve)
        .on('error', reject)
        .end();
    });
    reply.resume();
    expect(reply.statusCode).toBe(302);
    expect(reply.headers.location).toBe('/login?next=%2Fprivate%2Fa%3Fb%3Dc');
  });

  it('requires a user only for git pushes when the guard’s hook says so', async () => {
    expect((await request(s.url).get('/git/repo.git/info/refs?service=git-upload-pack')).status).toBe(200);
    expect((await request(s.url).post('/git/repo.git/git-upload-pack')).status).toBe(200);
    const advert = await request(s.url).get('/git/repo.git/info/refs?service=git-receive-pack');
    expect(advert.status).toBe(401);
    expect(advert.headers['www-authenticate']).toMatch(/^Basic/);
    expect((await request(s.url).post('/git/repo.git/git-receive-pack')).status).toBe(401);
    const push = await request(s.url).post('/git/repo.git/git-receive-pack').set('authorization', basic('alice'));
    expect(push.status).toBe(200);
    expect(push.body.headers['remote-user']).toBe('alice');
  });
});

describe('a login page with a query and a fragment', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot({ loginUrl: '/login?from=wiki#sign-in' })], controllers: [PrivateMount] });
  });
  afterAll(() => s.close());

  it('adds next to the query, before the fragment', async () => {
    const res = await request(s.url).get('/private/docs?page=2').set('accept', 'text/html');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/login?from=wiki&next=%2Fprivate%2Fdocs%3Fpage%3D2#sign-in');
  });
});

describe('response shaping', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers });
  });
  afterAll(() => s.close());

  it('rewrites root-relative Locations into the mount', async () => {
    const res = await request(s.url).get('/pfx/relative');
    expect(res.headers.location).toBe('/pfx/login?x=1');
  });

  it('rewrites absolute Locations on the app’s own host, never other hosts or prefixed ones', async () => {
    const host = new URL(s.url).host;
    expect((await request(s.url).get('/pfx/absolute')).headers.location).toBe(`http://${host}/pfx/login`);
    expect((await request(s.url).get('/pfx/elsewhere')).headers.location).toBe('https://example.org/login');
    expect((await request(s.url).get('/pfx/already')).headers.location).toBe('/pfx/login');
  });

  it('rewrites cookie paths, keeping every cookie and attribute', async () => {
    const res = await request(s.url).get('/pfx/');
    expect(res.headers['set-cookie']).toEqual([
      'a=1; Path=/pfx; HttpOnly',
      'b=2; path=/pfx/sub; Secure',
      'c=3',
      'd=4; Path=/pfx/x',
      // Browsers take the last Path: every one is moved under the mount.
      'e=5; Path=/pfx/x; Path=/pfx',
    ]);
  });

  it('keeps a fragment, an https the app asked for, and a scheme-relative URL on its own host', async () => {
    const host = new URL(s.url).host;
    expect((await request(s.url).get('/pfx/fragment')).headers.location).toBe('/pfx#top');
    expect((await request(s.url).get('/pfx/secure')).headers.location).toBe(`https://${host}/pfx/login`);
    expect((await request(s.url).get('/pfx/scheme-relative')).headers.location).toBe(`//${host}/pfx/login`);
    expect((await request(s.url).get('/pfx/page-relative')).headers.location).toBe('login');
  });

  it('gives a cookie no attribute of the client’s choosing through the path of a parameterised mount', async () => {
    const res = await request(s.url).get('/t/x;Domain=example.test;Max-Age=31536000/');
    const cookies = res.headers['set-cookie'] as unknown as string[];
    expect(cookies[0]).toBe('a=1; Path=/t/x%3BDomain=example.test%3BMax-Age=31536000; HttpOnly');
    for (const cookie of cookies) expect(cookie).not.toMatch(/;\s*(Domain|Max-Age)=/i);
  });

  it('changes nothing when rewriting is off', async () => {
    expect((await request(s.url).get('/raw/relative')).headers.location).toBe('/login?x=1');
    expect((await request(s.url).get('/raw/')).headers['set-cookie'][0]).toBe('a=1; Path=/; HttpOnly');
  });

  it('applies @GatewayHeaders to a mounted app', async () => {
    const res = await request(s.url).get('/headers/x');
    expect(res.headers.server).toBe('nest-gateway');
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers.vary).toMatch(/Cookie/);
  });

  it('applies @GatewayHeaders to a returned GatewayResponse and to an ordinary handler', async () => {
    const called = await request(s.url).get('/calls/node/x');
    expect(called.headers['x-class']).toBe('yes');
    const plain = await request(s.url).get('/calls/plain');
    expect(plain.body).toEqual({ plain: true });
    expect(plain.headers['x-class']).toBe('yes');
    expect(plain.headers['x-handler']).toBe('yes');
    expect(plain.headers['x-powered-by']).toBeUndefined();
  });

  it('applies @GatewayHeaders on a class and on its handler once each (an append is not doubled)', async () => {
    const res = await request(s.url).get('/both/x');
    expect(res.body).toEqual({ both: true });
    expect(res.headers['x-handler']).toBe('yes');
    expect(res.headers.vary).toBe('Cookie');
    expect(res.headers['set-cookie']).toEqual(['seen=1; Path=/']);
  });
});

describe('stacked @GatewayHeaders', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [StackedController, StackedMount] });
  });
  afterAll(() => s.close());

  it('on a class and on a handler all apply, top to bottom, each once', async () => {
    const res = await request(s.url).get('/stacked/x');
    expect(res.body).toEqual({ stacked: true });
    expect(res.headers['x-trail']).toBe('class-1, class-2, handler-1, handler-2');
    expect(res.headers['x-class-2']).toBe('yes');
    expect(res.headers['x-order']).toBe('handler-2');
  });

  it('on a mount all apply, top to bottom, each once', async () => {
    const res = await request(s.url).get('/stacked-mount/x');
    expect(res.status).toBe(200);
    expect(res.headers['x-first']).toBe('yes');
    expect(res.headers['x-dropped']).toBeUndefined();
    expect(res.headers.vary).toBe('Cookie');
  });
});

describe('scheme, host and client address behind a proxy', () => {
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example', 'x-forwarded-for': '203.0.113.9' };
  // What proxies and CDNs set, and what apps are often told to believe about the client.
  const clientAddress = { 'x-real-ip': '198.51.100.7', 'true-client-ip': '198.51.100.7', 'cf-connecting-ip': '198.51.100.7', 'x-client-ip': '198.51.100.7' };
  // Apps believe more of the family than the standard three: Rack the scheme, oauth2-proxy's
  // users the email and groups, Envoy's the client certificate.
  const forwardedFamily = {
    'X-Forwarded-Ssl': 'on',
    'X-Forwarded-Scheme': 'https',
    'X-Forwarded-Email': 'ceo@corp.example',
    'X-Forwarded-Groups': 'admins',
    'X-Forwarded-Preferred-Username': 'ceo',
    'X-Forwarded-Client-Cert': 'Hash=1;Subject="CN=admin"',
    X_Forwarded_Uri: '/admin',
  };

  it('uses the socket’s when the proxy is not trusted, and hides forwarding and client-address headers', async () => {
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [FetchMount, NodeMount] });
    try {
      const fetched = await request(s.url).get('/fetch/a').set(forwarded);
      expect(fetched.body.url).toBe(`${s.url}/a`);
      expect(fetched.body.headers['x-forwarded-proto']).toBeUndefined();
      const node = await request(s.url).get('/node/a').set(forwarded);
      expect(node.body.headers['x-forwarded-host']).toBeUndefined();
      const forged = await request(s.url).get('/node/a').set(clientAddress);
      for (const name of Object.keys(clientAddress)) expect(forged.body.headers[name]).toBeUndefined();
      for (const path of ['/node/a', '/fetch/a']) {
        const family = await request(s.url).get(path).set(forwardedFamily);
        expect(Object.keys(family.body.headers).filter((name) => /forwarded/i.test(name))).toEqual([]);
      }
    } finally {
      await s.close();
    }
  });

  it('uses the forwarded ones when Express trusts the proxy', async () => {
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [FetchMount, NodeMount] }, (app) => {
      (app as unknown as { set(k: string, v: unknown): void }).set('trust proxy', 'loopback');
    });
    try {
      const fetched = await request(s.url).get('/fetch/a?b=1').set(forwarded);
      expect(fetched.body.url).toBe('https://public.example/a?b=1');
      const node = await request(s.url).get('/node/a').set(forwarded);
      expect(node.body.headers['x-forwarded-host']).toBe('public.example');
      const relayed = await request(s.url).get('/node/a').set(clientAddress);
      for (const name of Object.keys(clientAddress)) expect(relayed.body.headers[name]).toBe('198.51.100.7');
      const family = await request(s.url).get('/node/a').set(forwardedFamily);
      expect(family.body.headers['x-forwarded-email']).toBe('ceo@corp.example');
    } finally {
      await s.close();
    }
  });
});

function distinctListener(req: IncomingMessage, res: ServerResponse) {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ headers: req.headers, distinct: req.headersDistinct }));
}

@MountGateway('distinct', distinctListener)
class DistinctMount {}

@Controller('call-distinct')
class DistinctCalls {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All(['', '*path'])
  call(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(distinctListener, req, pathInfo);
  }
}

const seenByMiddleware: (req: IncomingMessage, res: ServerResponse, next: () => void) => void = (req, res, next) => {
  res.setHeader('x-middleware-saw', JSON.stringify([req.headers['remote-user'] ?? null, req.headersDistinct['x-remote-user'] ?? null]));
  next();
};

@MountGateway('wrapped', echoListener, { middleware: [seenByMiddleware] })
class WrappedMount {}

describe('the headers a Node app and its middleware see', () => {
  let s: Started;
  let callerSaw: unknown;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [DistinctMount, DistinctCalls, WrappedMount] }, (app) => {
      app.use(authenticate);
      // Something before the mount reads headersDistinct, which Node then keeps.
      app.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
        void req.headersDistinct;
        res.on('finish', () => {
          callerSaw = { headers: req.headers['remote-user'], distinct: req.headersDistinct['remote-user'] };
        });
        next();
      });
    });
  });
  afterAll(() => s.close());

  it.each(['/distinct/x', '/call-distinct/x'])('gives headersDistinct the same headers as headers (%s)', async (path) => {
    const anonymous = await request(s.url).get(path).set({ 'Remote-User': 'mallory', 'X-Forwarded-For': '203.0.113.9', Accept: 'text/plain' });
    expect(anonymous.status).toBe(200);
    expect(anonymous.body.distinct['remote-user']).toBeUndefined();
    expect(anonymous.body.distinct['x-forwarded-for']).toBeUndefined();
    expect(anonymous.body.distinct.accept).toEqual(['text/plain']);
    const alice = await request(s.url).get(path).set({ 'Remote-User': 'mallory', authorization: basic('alice') });
    expect(alice.body.headers['remote-user']).toBe('alice');
    expect(alice.body.distinct['remote-user']).toEqual(['alice']);
  });

  it('gives the client its own headers back after the mount', async () => {
    await request(s.url).get('/distinct/x').set({ 'Remote-User': 'mallory', authorization: basic('alice') });
    expect(callerSaw).toEqual({ headers: 'mallory', distinct: ['mallory'] });
  });

  it('shows a mount’s middleware the headers its app gets, not the client’s forged ones', async () => {
    const anonymous = await request(s.url).get('/wrapped/x').set({ 'Remote-User': 'mallory', 'X-Remote-User': 'mallory' });
    expect(JSON.parse(anonymous.headers['x-middleware-saw'])).toEqual([null, null]);
    const alice = await request(s.url).get('/wrapped/x').set({ 'Remote-User': 'mallory', authorization: basic('alice') });
    expect(JSON.parse(alice.headers['x-middleware-saw'])).toEqual(['alice', null]);
    expect(alice.body.headers['remote-user']).toBe('alice');
    expect(callerSaw).toEqual({ headers: 'mallory', distinct: ['mallory'] });
  });
});

const VARS_SCRIPT = realpathSync(fileURLToPath(new URL('./fixtures/cgi/vars.py', import.meta.url)));

@MountGateway('spaced', echoListener, { remoteUser: ' admin' })
class SpacedPrincipalMount {}

@MountGateway('utf8-node', echoListener, { remoteUser: 'Łukasz' })
class Utf8NodeMount {}

@MountGateway('utf8-fetch', fetchEcho, { remoteUser: 'Łukasz' })
class Utf8FetchMount {}

@MountGateway('utf8-cgi', cgiApp(VARS_SCRIPT), { remoteUser: 'Łukasz' })
class Utf8CgiMount {}

describe('principals a header cannot carry as they are', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [SpacedPrincipalMount, Utf8NodeMount, Utf8FetchMount, Utf8CgiMount],
    });
  });
  afterAll(() => s.close());
  // What a header carries: the name's UTF-8 bytes, as Node shows a header's bytes.
  const asHeader = Buffer.from('Łukasz', 'utf8').toString('latin1');

  it('refuses a name with a space at either end, which a header would lose', async () => {
    expect((await request(s.url).get('/spaced/x')).status).toBe(500);
  });

  it('passes a name beyond ASCII as UTF-8 bytes in the header, and as itself in REMOTE_USER', async () => {
    const node = await request(s.url).get('/utf8-node/x');
    expect(node.body.headers['remote-user']).toBe(asHeader);
    const fetched = await request(s.url).get('/utf8-fetch/x');
    expect(fetched.status).toBe(200);
    expect(fetched.body.headers['remote-user']).toBe(asHeader);
    expect(Buffer.from(fetched.body.headers['remote-user'], 'latin1').toString('utf8')).toBe('Łukasz');
    expect(fetched.body.env.REMOTE_USER).toBe('Łukasz');
    const cgi = await request(s.url).get('/utf8-cgi/x');
    expect(JSON.parse(cgi.text).env.REMOTE_USER).toBe('Łukasz');
  });
});
