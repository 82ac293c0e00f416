/**
 * proxyApp end to end: a real Nest app proxying to real upstream HTTP servers.
 *
 * Upstreams:
 *  - Debian's gunicorn and uWSGI (HTTP socket) serving a Flask app behind werkzeug's ProxyFix
 *    (test/fixtures/proxy/flask_app.py), on TCP and on a Unix socket;
 *  - small Node servers (http.createServer in this file) for what only a hand-written upstream
 *    can show: hop-by-hop response headers, 50 MiB bodies both ways, stalls, dying mid-body,
 *    aborted requests, balancing.
 */
import { All, Controller, Inject, Req } from '@nestjs/common';
import { GatewayModule, GatewayService, MountGateway, PathInfo, proxyApp } from 'nest-gateway';
import { createHash, randomBytes } from 'node:crypto';
import { getEventListeners, once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http, { type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { authenticate, basic } from './fixtures/login.js';
import {
  freePort,
  processGroupMembers,
  startGunicorn,
  startNginx,
  startUwsgiHttp,
  type UpstreamProcess,
} from './fixtures/proxy/upstreams.js';
import { send, type Reply } from './fixtures/http-client.js';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

type Proxy = ReturnType<typeof proxyApp>;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface NodeUpstream {
  server: Server;
  url: string;
  connections(): Promise<number>;
  close(): Promise<void>;
}

/** A Node HTTP server as an upstream, on 127.0.0.1 or on a Unix socket. */
async function nodeUpstream(handler: RequestListener, socketPath?: string): Promise<NodeUpstream> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => (socketPath ? server.listen(socketPath, resolve) : server.listen(0, '127.0.0.1', resolve)));
  const url = socketPath ? `unix:${socketPath}` : `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    url,
    connections: () => new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n)))),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Echoes method, url, headers (raw names kept) and body of the request as JSON. */
const echo: RequestListener = (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawNames: req.rawHeaders.filter((_, i) => i % 2 === 0),
        body: Buffer.concat(chunks).toString(),
      }),
    );
  });
};

/** Resolves once `read()` has returned the same value for `quietMs` (the flow has stopped). */
async function settled(read: () => number, quietMs = 400, maxMs = 10_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await sleep(50);
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return now;
  }
  throw new Error(`still moving after ${maxMs} ms (at ${last})`);
}

/** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done).off('close', done);
      resolve();
    };
    res.on('drain', done).on('close', done);
  });
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** V8's full collection, callable from a test (the flag takes effect for new contexts). */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

// ---------------------------------------------------------------------------------------------
// Flask behind ProxyFix, under uWSGI's HTTP socket and under gunicorn
// ---------------------------------------------------------------------------------------------

const FORGED = { 'Remote-User': 'mallory', remote_user: 'mallory', 'X-Remote-User': 'mallory' };

describe.each([
  ['uWSGI (HTTP socket)', () => startUwsgiHttp()],
  ['gunicorn', () => startGunicorn()],
])('Flask mounted at /flask under %s', (_label, start) => {
  let upstream: UpstreamProcess;
  let proxies: Proxy[] = [];
  let s: Started; // Express does not trust a proxy (the default)
  let t: Started; // Express trusts the proxy in front of it
  let u: Started; // Express trusts only a proxy at 10.1.2.3: the test client is not it
  let upstreamHost: string;

  beforeAll(async () => {
    upstream = await start();
    upstreamHost = new URL(upstream.url).host;
    const keep = proxyApp(upstream.url);
    const toUpstream = proxyApp(upstream.url, { host: 'upstream' });
    const named = proxyApp(upstream.url, { host: 'wiki.internal:8080' });
    proxies = [keep, toUpstream, named];

    @MountGateway('flask', keep)
    class FlaskMount {}
    @MountGateway('flask-upstream-host', toUpstream)
    class UpstreamHostMount {}
    @MountGateway('flask-named-host', named)
    class NamedHostMount {}

    @Controller('filtered')
    class FilteringController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      @All('*path')
      async filter(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(keep, req, pathInfo);
        const seen = await response.json<{ url: string; remote_user_header: string | null }>();
        response.status = 203;
        response.headers.set('x-filtered', 'yes');
        response.headers.delete('server');
        response.body = JSON.stringify({ filtered: true, url: seen.url, user: seen.remote_user_header });
        return response;
      }
    }

    const metadata = { imports: [GatewayModule.forRoot()], controllers: [FlaskMount, UpstreamHostMount, NamedHostMount, FilteringController] };
    s = await startNest(metadata, (app) => app.use(authenticate));
    t = await startNest(metadata, (app) => {
      (app as unknown as { set(k: string, v: unknown): void }).set('trust proxy', true);
      app.use(authenticate);
    });
    u = await startNest(metadata, (app) => {
      (app as unknown as { set(k: string, v: unknown): void }).set('trust proxy', '10.1.2.3');
      app.use(authenticate);
    });
  });

  afterAll(async () => {
    await s?.close();
    await t?.close();
    await u?.close();
    await Promise.all(proxies.map((p) => p.close()));
    if (upstream) {
      await upstream.stop();
      // master and workers are gone
      expect(processGroupMembers(upstream.process.pid!)).toEqual([]);
    }
  });

  it('builds its URLs (relative and external) under the mount prefix', async () => {
    const res = await request(s.url).get('/flask/hello/world');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      name: 'world',
      script_root: '/flask',
      path: '/hello/world',
      url: '/flask/hello/world',
      external_url: `${s.url}/flask/hello/world`,
      scheme: 'http',
      remote_addr: '127.0.0.1',
    });
  });

  it('redirects to a Location under the mount prefix', async () => {
    const res = await request(s.url).get('/flask/go').redirects(0);
    expect(res.status).toBe(302);
    expect(new URL(res.headers.location, `${s.url}/flask/go`).href).toBe(`${s.url}/flask/hello/again`);
  });

  it('receives a form POST whole (Nest’s body parsers leave it alone)', async () => {
    const res = await request(s.url).post('/flask/hello/form').type('form').send('a=1&b=%C3%A9t%C3%A9');
    expect(res.status).toBe(200);
    expect(res.body.body).toBe('a=1&b=%C3%A9t%C3%A9');
  });

  it('sees Remote-User only for a user the Nest app authenticated', async () => {
    const anonymous = await request(s.url).get('/flask/hello/x');
    expect(anonymous.body.remote_user_header).toBeNull();
    expect(anonymous.body.identity_like).toEqual({});

    const alice = await request(s.url).get('/flask/hello/x').set('authorization', basic('alice'));
    expect(alice.body.remote_user_header).toBe('alice');
    expect(alice.body.identity_like).toEqual({ HTTP_REMOTE_USER: 'alice' });

    const wrongPassword = await request(s.url).get('/flask/hello/x').set('authorization', basic('alice', 'nope'));
    expect(wrongPassword.body.remote_user_header).toBeNull();
  });

  // A header named in Connection is hop-by-hop and dropped; the client must not be able to
  // drop the principal the gateway adds that way.
  it('keeps the principal when the client names the identity header in Connection', async () => {
    const res = await request(s.url).get('/flask/hello/x').set('authorization', basic('alice')).set('connection', 'Remote-User');
    expect(res.status).toBe(200);
    expect(res.body.remote_user_header).toBe('alice');
  });

  it.each([
    ['anonymous', undefined, {}],
    ['logged in as bob', basic('bob'), { HTTP_REMOTE_USER: 'bob' }],
  ])('never sees a client-forged identity header (%s)', async (_who, authorization, expected) => {
    for (const base of [s.url, t.url]) {
      let r = request(base).get('/flask/hello/x').set(FORGED);
      if (authorization) r = r.set('authorization', authorization);
      const res = await r;
      expect(res.status).toBe(200);
      expect(res.body.identity_like).toEqual(expected);
      expect(Object.keys(res.body.headers).filter((n) => /remote.user/i.test(n))).toEqual(authorization ? ['Remote-User'] : []);
    }
  });

  it('does not trust client-sent X-Forwarded-* when Express does not trust a proxy', async () => {
    const res = await request(s.url)
      .get('/flask/hello/x')
      .set({
        'x-forwarded-prefix': '/evil',
        'x-forwarded-for': '203.0.113.7',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'https',
      });
    expect(res.body).toMatchObject({
      url: '/flask/hello/x',
      external_url: `${s.url}/flask/hello/x`,
      remote_addr: '127.0.0.1',
      scheme: 'http',
    });
    expect(res.body.headers['X-Forwarded-For']).toBe('127.0.0.1');
    expect(res.body.headers['X-Forwarded-Prefix']).toBe('/flask');
  });

  it('chains client-sent X-Forwarded-* behind a trusted proxy (trust proxy on)', async () => {
    const res = await request(t.url)
      .get('/flask/hello/x')
      .set({
        'x-forwarded-prefix': '/outer',
        'x-forwarded-for': '203.0.113.7',
        'x-forwarded-host': 'public.example',
        'x-forwarded-proto': 'https',
      });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      script_root: '/outer/flask',
      url: '/outer/flask/hello/x',
      external_url: 'https://public.example/outer/flask/hello/x',
      scheme: 'https',
    });
    expect(res.body.headers['X-Forwarded-For']).toBe('203.0.113.7, 127.0.0.1');
    expect(res.body.headers['X-Forwarded-Host']).toBe('public.example');
  });

  // BUG lib/platform/request-info.ts (clientView): `trustsProxy = Boolean(app.get('trust proxy'))`
  // treats any setting as "trust every peer"; Express itself asks its compiled 'trust proxy fn'
  // about the socket's address. So gateway.service.ts keeps the client's X-Forwarded-* and
  // proxy-headers.ts chains the forged X-Forwarded-Prefix/-For: Flask builds URLs under /evil.
  it('does not trust client-sent X-Forwarded-* when trust proxy names another address than the client', async () => {
    const res = await request(u.url)
      .get('/flask/hello/x')
      .set({ 'x-forwarded-prefix': '/evil', 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'evil.example' });
    expect(res.body).toMatchObject({ url: '/flask/hello/x', external_url: `${u.url}/flask/hello/x` });
    expect(res.body.headers['X-Forwarded-For']).toBe('127.0.0.1');
    expect(res.body.headers['X-Forwarded-Prefix']).toBe('/flask');
  });

  it('sends the client’s Host by default (host: keep)', async () => {
    const res = await request(s.url).get('/flask/hello/x');
    expect(res.body.original_host).toBe(new URL(s.url).host);
  });

  it("sends the upstream's host:port with host: 'upstream', and URLs still name the public host", async () => {
    const res = await request(s.url).get('/flask-upstream-host/hello/x');
    expect(res.body.original_host).toBe(upstreamHost);
    expect(res.body.external_url).toBe(`${s.url}/flask-upstream-host/hello/x`);
  });

  it('sends a fixed Host when host is a string', async () => {
    const res = await request(s.url).get('/flask-named-host/hello/x');
    expect(res.body.original_host).toBe('wiki.internal:8080');
  });

  it('lets a controller filter the response of callApp (status, header, body)', async () => {
    const res = await request(s.url).get('/filtered/hello/x').set('authorization', basic('alice'));
    expect(res.status).toBe(203);
    expect(res.headers['x-filtered']).toBe('yes');
    expect(res.headers.server).toBeUndefined();
    expect(res.body).toEqual({ filtered: true, url: '/filtered/hello/x', user: 'alice' });
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(JSON.stringify(res.body))));
  });
});

// ---------------------------------------------------------------------------------------------
// Unix sockets
// ---------------------------------------------------------------------------------------------

describe('upstreams on Unix sockets', () => {
  let gunicorn: UpstreamProcess;
  let node: NodeUpstream;
  let dir: string;
  let proxies: Proxy[];
  let s: Started;

  beforeAll(async () => {
    gunicorn = await startGunicorn({ unix: true });
    dir = await mkdtemp(join(tmpdir(), 'nest-gateway-proxy-'));
    node = await nodeUpstream(echo, join(dir, 'node.sock'));
    const flask = proxyApp(gunicorn.url);
    // nginx's spelling, with a base path on the upstream
    const based = proxyApp(`http://${node.url}:/base`);
    proxies = [flask, based];
    @MountGateway('flask', flask)
    class FlaskMount {}
    @MountGateway('based', based)
    class BasedMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [FlaskMount, BasedMount] }, (app) => app.use(authenticate));
  });

  afterAll(async () => {
    await s?.close();
    await Promise.all(proxies.map((p) => p.close()));
    await node?.close();
    await gunicorn?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves Flask under gunicorn -b unix:… with the mount prefix and the user', async () => {
    expect(gunicorn.url).toMatch(/^unix:\/.*\/g\.sock$/);
    const res = await request(s.url).get('/flask/hello/sock').set('authorization', basic('alice'));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      url: '/flask/hello/sock',
      external_url: `${s.url}/flask/hello/sock`,
      remote_user_header: 'alice',
      original_host: new URL(s.url).host,
    });
  });

  it('puts the base path of http://unix:/path.sock:/base before the path info', async () => {
    const res = await request(s.url).post('/based/a/b?c=1').type('text').send('hi');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ method: 'POST', url: '/base/a/b?c=1', body: 'hi' });
    expect(res.body.headers['x-forwarded-prefix']).toBe('/based');
  });
});

describe('an upstream with a base path', () => {
  let upstream: NodeUpstream;
  let proxy: Proxy;
  let s: Started;

  beforeAll(async () => {
    // Resolves dot segments, as WHATWG URL parsers, Tomcat and Apache do: only /base is public.
    upstream = await nodeUpstream((req, res) => {
      const path = new URL(req.url!, 'http://upstream').pathname;
      // An app that knows its own base path but not the mount: redirects and cookies under /base.
      if (path === '/base/login') {
        const to = req.url!.includes('absolute') ? `http://${req.headers.host}/base/home?x=1` : '/base/home?x=1';
        res.writeHead(302, { location: to, 'set-cookie': ['sid=1; Path=/base; HttpOnly', 'admin=2; Path=/base/admin', 'all=3; Path=/'] });
        return res.end();
      }
      res.end(path.startsWith('/base/') ? `public ${path}` : `private ${path}`);
    });
    proxy = proxyApp(`${upstream.url}/base`);
    @MountGateway('pub', proxy)
    class PublicMount {}
    @MountGateway('rewritten', proxy, { rewrite: { location: true, cookiePath: true } })
    class RewrittenMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [PublicMount, RewrittenMount] });
  });

  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    await upstream?.close();
  });

  const get = (path: string) => getAsWritten(s.url, path);

  it('serves paths under it', async () => {
    expect(await get('/pub/doc')).toEqual({ status: 200, body: 'public /base/doc' });
  });

  it("maps the app's redirects and cookie paths under its base path to the mount with rewrite (as nginx's proxy_redirect does)", async () => {
    for (const query of ['', '?absolute']) {
      const res = await request(s.url).get(`/rewritten/login${query}`);
      expect(res.status).toBe(302);
      expect(new URL(res.headers.location, s.url).pathname + new URL(res.headers.location, s.url).search).toBe('/rewritten/home?x=1');
      expect(res.headers['set-cookie']).toEqual(['sid=1; Path=/rewritten; HttpOnly', 'admin=2; Path=/rewritten/admin', 'all=3; Path=/rewritten']);
    }
    expect((await request(s.url).get('/rewritten/home')).text).toBe('public /base/home');
  });

  it.each(['/pub/../secret', '/pub/x/../../secret', '/pub/%2e%2e/secret', '/pub/.%2E/secret', '/pub/./../secret', '/pub/..\\secret', '/pub/..%5csecret'])(
    'never lets dot segments reach outside it (%s)',
    async (path) => {
      const res = await get(path);
      expect(res.body).not.toContain('private');
      expect(res.status).toBe(400);
    },
  );
});

/** GET of a path as written: node:http's URL parsing would resolve the dots first. */
function getAsWritten(url: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    http
      .get({ hostname, port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

describe('an nginx upstream with a base path (nginx decodes %2F, then resolves dot segments)', () => {
  let upstream: UpstreamProcess;
  let proxy: Proxy;
  let s: Started;

  beforeAll(async () => {
    upstream = await startNginx(['location /base/ { return 200 "public $uri"; }', 'location / { return 200 "private $uri"; }']);
    proxy = proxyApp(`${upstream.url}/base`);
    @MountGateway('pub', proxy)
    class PublicMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [PublicMount] });
  });

  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    await upstream?.stop();
  });

  const get = (path: string) => getAsWritten(s.url, path);

  it('passes an encoded slash in a name through untouched', async () => {
    expect(await get('/pub/group%2Fproject/x')).toEqual({ status: 200, body: 'public /base/group/project/x' });
  });

  it.each(['/pub/..%2Fsecret', '/pub/%2e%2e%2fsecret', '/pub/x/..%2F..%2Fsecret', '/pub/x%2F..%2F..%2Fsecret'])(
    'never lets a dot segment behind an encoded slash reach outside it (%s)',
    async (path) => {
      const res = await get(path);
      expect(res.body).not.toContain('private');
      expect(res.status).toBe(400);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Hop-by-hop headers
// ---------------------------------------------------------------------------------------------

describe('hop-by-hop headers', () => {
  let upstream: NodeUpstream;
  let proxy: Proxy;
  let s: Started;

  beforeAll(async () => {
    upstream = await nodeUpstream((req, res) => {
      if (req.url === '/hop-response') {
        res.writeHead(200, {
          'content-type': 'text/plain',
          connection: 'keep-alive, X-Upstream-Hop',
          'keep-alive': 'timeout=99, max=7',
          'x-upstream-hop': 'secret',
          'x-end-to-end': 'kept',
        });
        res.end('ok');
        return;
      }
      if (req.url === '/early-hints') {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        res.writeHead(200, { 'content-type': 'text/plain', link: '</style.css>; rel=preload; as=style' });
        res.end('final');
        return;
      }
      echo(req, res);
    });
    proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
  });

  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    await upstream?.close();
  });

  it('drops request headers listed in Connection, and TE / Keep-Alive', async () => {
    const res = await send(`${s.url}/node/echo`, {
      headers: {
        connection: 'keep-alive, X-Hop-Secret',
        'x-hop-secret': 'do-not-forward',
        te: 'trailers',
        'keep-alive': 'timeout=99',
        'x-end-to-end': 'kept',
      },
    });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString());
    expect(seen.headers['x-end-to-end']).toBe('kept');
    expect(seen.headers['x-hop-secret']).toBeUndefined();
    expect(seen.headers.te).toBeUndefined();
    expect(seen.headers['keep-alive']).toBeUndefined();
    expect(String(seen.headers.connection ?? '')).not.toMatch(/x-hop-secret/i);
  });

  it('answers with the final response after an upstream’s 103 Early Hints', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${s.url}/node/early-hints`);
      expect(res.status).toBe(200);
      expect(res.headers.get('link')).toBe('</style.css>; rel=preload; as=style');
      expect(await res.text()).toBe('final');
    }
  });

  it('drops hop-by-hop response headers of the upstream', async () => {
    const res = await send(`${s.url}/node/hop-response`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('ok');
    expect(res.headers['x-end-to-end']).toBe('kept');
    expect(res.headers['x-upstream-hop']).toBeUndefined();
    // The Nest server sends its own Connection / Keep-Alive; none of the upstream's.
    expect(String(res.headers['keep-alive'] ?? '')).not.toMatch(/99|max=7/);
    expect(String(res.headers.connection ?? '')).not.toMatch(/x-upstream-hop/i);
  });
});

// ---------------------------------------------------------------------------------------------
// Requests and responses in detail (Node upstream)
// ---------------------------------------------------------------------------------------------

describe('request and response details', () => {
  let upstream: NodeUpstream;
  let proxies: Proxy[];
  let s: Started;
  let t: Started;
  const uploads: Array<{ complete: boolean; received: number; closed: ReturnType<typeof deferred> }> = [];
  const stalledBodyClosed = deferred();

  beforeAll(async () => {
    upstream = await nodeUpstream((req, res) => {
      const path = req.url ?? '/';
      if (path === '/cookies') {
        res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/; HttpOnly', 'c=3, with comma; Path=/']);
        res.end('cookies');
      } else if (path === '/many-cookies') {
        res.setHeader('set-cookie', Array.from({ length: 300 }, (_, i) => `c${i}=${'v'.repeat(60)}; Path=/`));
        res.end('many');
      } else if (path === '/huge-head') {
        res.setHeader('set-cookie', Array.from({ length: 100 }, (_, i) => `c${i}=${'v'.repeat(1000)}; Path=/`));
        res.end('huge');
      } else if (path === '/ordered') {
        res.writeHead(200, ['Z-Named-Late', '1', 'X-Repeated', 'a', 'A-Named-Early', '2', 'X-Repeated', 'b']).end('ordered');
      } else if (path === '/spaced') {
        // Whitespace after a value is allowed on the wire (RFC 9110 5.5: OWS), and undici keeps it.
        res.setHeader('etag', '"v1" ');
        res.setHeader('x-spaced', ['a ', 'b\t']);
        res.end('spaced');
      } else if (path === '/reason') {
        res.writeHead(418, 'Short And Stout', { 'content-type': 'text/plain' }).end('teapot');
      } else if (path === '/no-content') {
        res.writeHead(204).end();
      } else if (path === '/sized') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11', 'x-method': req.method ?? '' }).end(req.method === 'HEAD' ? undefined : 'eleven byte');
      } else if (path === '/stall-body') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('partial'); // and never more
        req.socket.once('close', () => stalledBodyClosed.resolve());
      } else if (path === '/slow-upload') {
        const seen = { complete: false, received: 0, closed: deferred() };
        uploads.push(seen);
        req.on('data', (c: Buffer) => (seen.received += c.length));
        req.on('end', () => (seen.complete = true));
        req.on('close', () => seen.closed.resolve());
      } else echo(req, res);
    });
    const node = proxyApp(upstream.url);
    const plain = proxyApp(upstream.url, { xForwarded: false });
    const stallingBody = proxyApp(upstream.url, { bodyTimeout: 300 });
    proxies = [node, plain, stallingBody];
    @MountGateway('node', node)
    class NodeMount {}
    @MountGateway('plain', plain)
    class PlainMount {}
    @MountGateway('stall', stallingBody)
    class StallMount {}

    @Controller('calls')
    class CallsController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      @All('replace/*path')
      replace(@Req() req: unknown, @PathInfo() pathInfo: string) {
        return this.gateway.callApp(node, req, pathInfo, {
          method: 'PUT',
          headers: { 'content-type': 'application/json', 'x-added': 'yes' },
          body: JSON.stringify({ replaced: true }),
        });
      }

      @All('pass/*path')
      pass(@Req() req: unknown, @PathInfo() pathInfo: string) {
        return this.gateway.callApp(node, req, pathInfo);
      }

      @All('connect/*path')
      connect(@Req() req: unknown, @PathInfo() pathInfo: string) {
        return this.gateway.callApp(node, req, pathInfo, { method: 'CONNECT' });
      }

      @All('replace-body/*path')
      async replaceBody(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(node, req, pathInfo);
        response.body = 'replaced';
        return response;
      }
    }

    const metadata = { imports: [GatewayModule.forRoot()], controllers: [NodeMount, PlainMount, StallMount, CallsController] };
    s = await startNest(metadata, (app) => app.use(authenticate));
    t = await startNest(metadata, (app) => (app as unknown as { set(k: string, v: unknown): void }).set('trust proxy', true));
  });

  afterAll(async () => {
    await s?.close();
    await t?.close();
    await Promise.all(proxies.map((p) => p.close()));
    await upstream?.close();
  });

  it.each([
    ['/node', '/'],
    ['/node/', '/'],
    ['/node?q=1', '/?q=1'],
    // (`..%2F` is refused as a dot segment: nginx decodes it and resolves the `..`.)
    ['/node/a%2Fb/%C3%A9/..x%2F.y?x=%20&y/../%2e', '/a%2Fb/%C3%A9/..x%2F.y?x=%20&y/../%2e'],
  ])('sends %s upstream as %s (undecoded)', async (path, expected) => {
    const res = await send(`${s.url}${path}`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString()).url).toBe(expected);
  });

  it('keeps every Set-Cookie of the upstream separate', async () => {
    const res = await send(`${s.url}/node/cookies`);
    const cookies = res.rawHeaders.filter((_, i) => i % 2 === 1 && /^set-cookie$/i.test(res.rawHeaders[i - 1]));
    expect(cookies).toEqual(['a=1; Path=/', 'b=2; Path=/; HttpOnly', 'c=3, with comma; Path=/']);
  });

  it('passes a response head of many cookies beyond Node’s 16 KiB, and answers 502 past 64 KiB', async () => {
    const many = await send(`${s.url}/node/many-cookies`, { maxHeaderSize: 256 * 1024 });
    expect(many.status).toBe(200);
    expect(many.headers['set-cookie']).toHaveLength(300);
    const huge = await send(`${s.url}/node/huge-head`, { maxHeaderSize: 256 * 1024 });
    expect(huge.status).toBe(502);
  });

  it.each(['/node/ordered', '/calls/pass/ordered'])('keeps the upstream’s header order and joins a repeated header (%s)', async (path) => {
    const res = await send(`${s.url}${path}`);
    const names = res.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    const ours = names.filter((name) => ['z-named-late', 'x-repeated', 'a-named-early'].includes(name));
    expect(ours).toEqual(['z-named-late', 'x-repeated', 'a-named-early']);
    expect(res.headers['x-repeated']).toBe('a, b');
    expect(res.body.toString()).toBe('ordered');
  });

  it('takes the whitespace after an upstream value off: repeats join as without it, and a replaced body still weakens the ETag', async () => {
    const passed = await send(`${s.url}/node/spaced`);
    expect(passed.headers['x-spaced']).toBe('a, b');
    expect(passed.headers.etag).toBe('"v1"');
    const replaced = await send(`${s.url}/calls/replace-body/spaced`);
    expect(replaced.body.toString()).toBe('replaced');
    expect(replaced.headers.etag).toBe('W/"v1"');
  });

  it('passes status codes and reason phrases through', async () => {
    const teapot = await new Promise<IncomingMessage>((resolve, reject) => http.get(`${s.url}/node/reason`, { agent: false }, resolve).on('error', reject));
    teapot.resume();
    expect(teapot.statusCode).toBe(418);
    expect(teapot.statusMessage).toBe('Short And Stout');
    const empty = await send(`${s.url}/node/no-content`);
    expect(empty.status).toBe(204);
    expect(empty.body.length).toBe(0);
  });

  it('answers HEAD with the upstream’s headers and no body', async () => {
    const head = await send(`${s.url}/node/sized`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['x-method']).toBe('HEAD');
    expect(head.headers['content-length']).toBe('11');
    expect(head.body.length).toBe(0);
    // The connection is still usable: a GET right after gets its body.
    const get = await send(`${s.url}/node/sized`);
    expect(get.body.toString()).toBe('eleven byte');
  });

  it('handles Expect: 100-continue (the body follows the interim response)', async () => {
    const res = await new Promise<Omit<Reply, 'json'>>((resolve, reject) => {
      const req = http.request(`${s.url}/node/continue`, {
        method: 'POST',
        agent: false,
        headers: { expect: '100-continue', 'content-type': 'text/plain', 'content-length': '5' },
      });
      req.on('continue', () => req.end('hello'));
      req.on('response', (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode!, headers: r.headers, rawHeaders: r.rawHeaders, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
    });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString());
    expect(seen.body).toBe('hello');
    expect(seen.headers.expect).toBeUndefined();
  });

  it('sends no X-Forwarded-* with xForwarded: false', async () => {
    const res = await request(s.url).get('/plain/x').set('x-forwarded-for', '203.0.113.7');
    expect(Object.keys(res.body.headers).filter((n) => n.startsWith('x-forwarded'))).toEqual([]);
  });

  it('passes a trusted proxy’s X-Forwarded-* unchanged with xForwarded: false', async () => {
    const res = await request(t.url).get('/plain/x').set('x-forwarded-for', '203.0.113.7').set('x-forwarded-prefix', '/outer');
    expect(res.body.headers['x-forwarded-for']).toBe('203.0.113.7');
    expect(res.body.headers['x-forwarded-prefix']).toBe('/outer');
  });

  it('cuts a response whose body stalls longer than bodyTimeout (the client sees a break)', async () => {
    const res = await fetch(`${s.url}/stall/stall-body`);
    expect(res.status).toBe(200);
    await expect(within(res.text(), 5000, 'the stalled body to be cut')).rejects.toThrow();
    await within(stalledBodyClosed.promise, 3000, 'the stalled upstream connection to close');
  });

  it('aborts the upstream request when the client goes away mid-upload', async () => {
    const before = uploads.length;
    const req = http.request(`${s.url}/node/slow-upload`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(10 * MiB) },
    });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(MiB));
    await waitFor(() => uploads.length > before && uploads[before].received > 0, 5000, 'the upstream to get the first bytes');
    req.destroy();
    const seen = uploads[before];
    await within(seen.closed.promise, 5000, 'the upstream request to close');
    expect(seen.complete).toBe(false);
    expect(seen.received).toBeLessThan(10 * MiB);
  });

  it('lets callApp replace method, headers and body of the upstream request', async () => {
    const res = await request(s.url).post('/calls/replace/x?y=1').type('json').send({ original: true });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ method: 'PUT', url: '/x?y=1', body: '{"replaced":true}' });
    expect(res.body.headers['x-added']).toBe('yes');
    expect(res.body.headers['content-length']).toBe(String('{"replaced":true}'.length));
    expect(res.body.headers['x-forwarded-prefix']).toBe('/calls/replace');
  });

  it('answers 502 at once when callApp is asked to send CONNECT, which opens a tunnel, not a request', async () => {
    const res = await within(fetch(`${s.url}/calls/connect/x`), 3000, 'the answer');
    expect(res.status).toBe(502);
    // Nest's static Logger writes to the app created last (t) of the two.
    const errors = [...s.logger.errors(), ...t.logger.errors()];
    expect(errors).toContainEqual(expect.stringContaining('CONNECT cannot be sent'));
  });

  it('passes a body that Nest’s JSON parser already read to the upstream byte for byte (callApp)', async () => {
    const raw = '{ "b": 2,\n  "a": "é" }';
    const res = await request(s.url).post('/calls/pass/x').set('content-type', 'application/json').send(raw);
    expect(res.status).toBe(200);
    expect(res.body.body).toBe(raw);
    expect(res.body.method).toBe('POST');
  });

  it('passes the principal to the upstream through callApp, and drops forged copies', async () => {
    const res = await request(s.url).get('/calls/pass/x').set('authorization', basic('alice')).set(FORGED);
    expect(res.body.headers['remote-user']).toBe('alice');
    expect(res.body.headers.remote_user).toBeUndefined();
    expect(res.body.headers['x-remote-user']).toBeUndefined();
  });
});

describe('a custom identity header', () => {
  it('carries the principal in the configured header, and drops client-sent copies of it', async () => {
    const upstream = await nodeUpstream(echo);
    const proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot({ identityHeader: 'X-WebAuth-User' })], controllers: [NodeMount] }, (app) =>
      app.use(authenticate),
    );
    try {
      const alice = await request(s.url).get('/node/x').set('authorization', basic('alice')).set('x-webauth-user', 'mallory').set(FORGED);
      expect(alice.body.headers['x-webauth-user']).toBe('alice');
      expect(alice.body.rawNames.filter((n: string) => /webauth/i.test(n))).toEqual(['x-webauth-user']);
      const anonymous = await request(s.url).get('/node/x').set('X-WEBAUTH-USER', 'mallory');
      expect(anonymous.body.headers['x-webauth-user']).toBeUndefined();
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The connection pool
// ---------------------------------------------------------------------------------------------

describe('upstream connection pool', () => {
  it('reuses one kept-alive connection for sequential requests, and close() releases it', async () => {
    let opened = 0;
    const upstream = await nodeUpstream(echo);
    upstream.server.on('connection', () => opened++);
    const proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
    try {
      for (let i = 0; i < 10; i++) expect((await request(s.url).get(`/node/${i}`)).status).toBe(200);
      expect(opened).toBe(1);
      await proxy.close();
      await waitFor(async () => (await upstream.connections()) === 0, 3000, 'the pooled connection to close');
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });

  // BUG lib/apps/proxy-app.ts (NOT_REACHED / call()): a GET sent on a pooled keep-alive
  // connection that the upstream closes at that moment fails with ECONNRESET or undici's
  // "other side closed" (UND_ERR_SOCKET) and the client gets 502; nothing of the request was
  // answered, and an idempotent request can go again on a fresh connection (RFC 9112 9.3.1,
  // nginx does). Seen with uWSGI --http-socket, which closes every connection after its
  // response without saying Connection: close: about 1 GET in 1500 failed under 4 concurrent
  // clients (undici Pool straight to uWSGI: 'read ECONNRESET' / 'other side closed').
  // Here the upstream makes that race certain: it drops a connection when a second request
  // arrives on it.
  it('sends a GET again on a fresh connection when a reused one is closed under it', async () => {
    const upstream = await nodeUpstream((req, res) => {
      const socket = req.socket as typeof req.socket & { served?: number };
      socket.served = (socket.served ?? 0) + 1;
      if (socket.served > 1) socket.destroy();
      else echo(req, res);
    });
    const proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await request(s.url).get(`/node/${i}`)).status);
      expect(statuses).toEqual([200, 200, 200]);
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });

  it('never sends a POST twice when the upstream closes the connection after reading it (502), on a fresh or a reused connection', async () => {
    let charged = 0;
    const upstream = await nodeUpstream((req, res) => {
      if (req.method !== 'POST') return echo(req, res);
      // Does the work, then dies before answering (a crash, a worker killed mid-request).
      req.resume();
      req.on('end', () => {
        charged++;
        req.socket.destroy();
      });
    });
    const proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
    try {
      const fresh = await send(`${s.url}/node/charge`, { method: 'POST', body: 'amount=5' });
      expect([fresh.status, charged]).toEqual([502, 1]);
      expect((await send(`${s.url}/node/warm`)).status).toBe(200);
      const reused = await send(`${s.url}/node/charge`, { method: 'POST', body: 'amount=5' });
      expect([reused.status, charged]).toEqual([502, 2]);
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });

  it('sends a POST with an Idempotency-Key again when the connection closes under it: its server runs it once per key', async () => {
    const attempts = new Map<string, number>();
    const upstream = await nodeUpstream((req, res) => {
      const key = String(req.headers['idempotency-key'] ?? req.headers['x-idempotency-key'] ?? '');
      const attempt = (attempts.get(key) ?? 0) + 1;
      attempts.set(key, attempt);
      req.resume();
      // The first attempt per key dies before answering; the server dedups the second.
      req.on('end', () => (attempt === 1 ? req.socket.destroy() : res.end(`charged once for ${key}`)));
    });
    const proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
    try {
      const keyed = await send(`${s.url}/node/charge`, { method: 'POST', body: 'amount=5', headers: { 'Idempotency-Key': 'k1' } });
      expect([keyed.status, keyed.body.toString()]).toEqual([200, 'charged once for k1']);
      const xKeyed = await send(`${s.url}/node/charge`, { method: 'PATCH', body: 'amount=5', headers: { 'X-Idempotency-Key': 'k2' } });
      expect([xKeyed.status, xKeyed.body.toString()]).toEqual([200, 'charged once for k2']);
      expect(Object.fromEntries(attempts)).toEqual({ k1: 2, k2: 2 });
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });

  it('uses an upstream connection once each after one closed silently, so that the next POST is sent once and answered', async () => {
    let posts = 0;
    const upstream = await nodeUpstream((req, res) => {
      const socket = req.socket as typeof req.socket & { served?: number };
      // Like uWSGI's --http-socket: one request per connection, closed without saying so.
      socket.served = (socket.served ?? 0) + 1;
      if (socket.served > 1) return void socket.destroy();
      if (req.method === 'POST') posts++;
      echo(req, res);
    });
    const proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
    try {
      expect((await send(`${s.url}/node/first`)).status).toBe(200);
      // Reuses the connection, which breaks: sent again on a new one.
      expect((await send(`${s.url}/node/second`)).status).toBe(200);
      for (let i = 0; i < 3; i++) {
        const post = await send(`${s.url}/node/charge`, { method: 'POST', body: 'amount=5' });
        expect(post.status).toBe(200);
      }
      expect(posts).toBe(3);
      expect(s.logger.lines.filter((l) => /serve one request each/.test(l.message))).toHaveLength(1);
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });

  it('queues requests beyond `connections` instead of failing them', async () => {
    let open = 0;
    let maxOpen = 0;
    const upstream = await nodeUpstream((req, res) => {
      open++;
      maxOpen = Math.max(maxOpen, open);
      setTimeout(() => {
        open--;
        echo(req, res);
      }, 30);
    });
    const proxy = proxyApp(upstream.url, { connections: 2 });
    @MountGateway('node', proxy)
    class NodeMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
    try {
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => request(s.url).get(`/node/${i}`)));
      expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
      expect(maxOpen).toBeLessThanOrEqual(2);
    } finally {
      await s.close();
      await proxy.close();
      await upstream.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Streaming both ways, with backpressure
// ---------------------------------------------------------------------------------------------

describe('streaming through the proxy', () => {
  const SIZE = 50 * MiB;
  const CHUNK = 64 * 1024;
  let data: Buffer;
  let upstream: NodeUpstream;
  let proxy: Proxy;
  let s: Started;
  /** Upload side: the upstream reads nothing until `gate` opens. */
  let gate = deferred();
  let upstreamWritten = 0;

  beforeAll(async () => {
    data = randomBytes(SIZE);
    upstream = await nodeUpstream(async (req, res) => {
      if (req.url === '/upload') {
        await gate.promise;
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (c: Buffer) => {
          length += c.length;
          hash.update(c);
        });
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify({
              sha256: hash.digest('hex'),
              length,
              contentLength: req.headers['content-length'] ?? null,
              transferEncoding: req.headers['transfer-encoding'] ?? null,
            }),
          );
        });
        return;
      }
      if (req.url?.startsWith('/download')) {
        const sized = req.url === '/download';
        res.writeHead(200, { 'content-type': 'application/octet-stream', ...(sized ? { 'content-length': String(SIZE) } : {}) });
        upstreamWritten = 0;
        for (let offset = 0; offset < SIZE && !res.destroyed; offset += CHUNK) {
          const part = data.subarray(offset, offset + CHUNK);
          upstreamWritten += part.length;
          if (!res.write(part)) await drainedOrClosed(res);
        }
        res.end();
        return;
      }
      res.writeHead(404).end();
    });
    proxy = proxyApp(upstream.url);
    @MountGateway('node', proxy)
    class NodeMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NodeMount] });
  });

  afterAll(async () => {
    gate.resolve();
    await s?.close();
    await proxy?.close();
    await upstream?.close();
  });

  it('streams a 50 MiB POST to the upstream, holding the client back while the upstream does not read', async () => {
    gate = deferred();
    const req = http.request(`${s.url}/node/upload`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) },
    });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
    });
    let written = 0;
    const writer = (async () => {
      for (let offset = 0; offset < SIZE; offset += CHUNK) {
        const part = data.subarray(offset, offset + CHUNK);
        written += part.length;
        if (!req.write(part)) await once(req, 'drain');
      }
      req.end();
    })();
    writer.catch(() => undefined);

    // The upstream reads nothing yet: only socket buffers' worth can have left the client.
    const inFlight = await settled(() => written);
    expect(inFlight).toBeLessThan(SIZE / 2);

    gate.resolve();
    await within(writer, 20_000, 'the client to send all 50 MiB');
    const res = await within(response, 20_000, 'the response');
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    expect(res.statusCode).toBe(200);
    const seen = JSON.parse(Buffer.concat(chunks).toString());
    expect(seen).toEqual({ sha256: sha256(data), length: SIZE, contentLength: String(SIZE), transferEncoding: null });
  });

  it.each([
    ['with Content-Length', '/download'],
    ['chunked', '/download-chunked'],
  ])('streams a 50 MiB response (%s), holding the upstream back while the client does not read', async (_label, path) => {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      http.get(`${s.url}/node${path}`, { agent: false }, resolve).on('error', reject);
    });
    res.pause();
    expect(res.statusCode).toBe(200);
    if (path === '/download') expect(res.headers['content-length']).toBe(String(SIZE));

    const produced = await settled(() => upstreamWritten);
    expect(produced).toBeLessThan(SIZE / 2);

    const hash = createHash('sha256');
    let length = 0;
    for await (const c of res) {
      hash.update(c as Buffer);
      length += (c as Buffer).length;
    }
    expect(res.complete).toBe(true);
    expect(length).toBe(SIZE);
    expect(hash.digest('hex')).toBe(sha256(data));
  });

  it('passes a chunked request body (no Content-Length) intact', async () => {
    gate = deferred();
    gate.resolve();
    const parts = [Buffer.from('first,'), randomBytes(100_000), Buffer.alloc(0), Buffer.from('x'), randomBytes(3 * MiB)];
    const req = http.request(`${s.url}/node/upload`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
    });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
    });
    for (const part of parts) {
      if (part.length > 0 && !req.write(part)) await once(req, 'drain');
      await sleep(10);
    }
    req.end();
    const res = await within(response, 10_000, 'the response');
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const whole = Buffer.concat(parts);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ sha256: sha256(whole), length: whole.length });
  });
});

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

const shutdown = new AbortController();

describe('upstream failures', () => {
  let deadPort: number;
  let dir: string;
  let stall: NodeUpstream;
  let answering: NodeUpstream;
  let breaking: NodeUpstream;
  let endless: NodeUpstream;
  let rude: net.Server;
  let proxies: Proxy[];
  let s: Started;
  const stalled: IncomingMessage[] = [];
  const endlessSaw: { reqClose?: boolean; resClose?: boolean; finishedAtClose?: boolean; closed: ReturnType<typeof deferred> } = {
    closed: deferred(),
  };

  beforeAll(async () => {
    deadPort = await freePort();
    dir = await mkdtemp(join(tmpdir(), 'nest-gateway-proxy-fail-'));
    answering = await nodeUpstream((_req, res) => res.end('answered'));
    stall = await nodeUpstream((req) => {
      stalled.push(req); // never answers
    });
    breaking = await nodeUpstream((req, res) => {
      const sized = req.url === '/sized';
      res.writeHead(200, { 'content-type': 'application/octet-stream', ...(sized ? { 'content-length': String(MiB) } : {}) });
      res.write(Buffer.alloc(MiB / 2, 'a'), () => setTimeout(() => res.socket?.destroy(), 20));
    });
    endless = await nodeUpstream(async (req, res) => {
      req.on('close', () => (endlessSaw.reqClose = true));
      res.on('close', () => {
        endlessSaw.resClose = true;
        endlessSaw.finishedAtClose = res.writableFinished;
        endlessSaw.closed.resolve();
      });
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 'z');
      // At most ~1 GiB; stops as soon as the response is closed.
      for (let i = 0; i < 16_384 && !res.destroyed; i++) if (!res.write(chunk)) await drainedOrClosed(res);
      if (!res.destroyed) res.end();
    });

    rude = net.createServer((socket) => {
      // Answers 413 as soon as it has the request head, then closes without reading the body,
      // which resets the connection (what gunicorn and uWSGI do when an app ignores the body).
      let head = '';
      const onData = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        socket.off('data', onData).pause();
        socket.write('HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large');
        socket.resetAndDestroy();
      };
      socket.on('data', onData).on('error', () => undefined);
    });
    await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
    const down = proxyApp(`http://127.0.0.1:${deadPort}`, { connectTimeout: 2000 });
    const rejecting = proxyApp(`http://127.0.0.1:${(rude.address() as AddressInfo).port}`);
    // undici opens a spare connection right after a request is aborted before its response
    // (it re-queues the aborted request, then skips it); that one idles until keepAliveTimeout.
    const patient = proxyApp(stall.url, { keepAliveTimeout: 500 });
    const missingSocket = proxyApp(`unix:${join(dir, 'missing.sock')}`);
    const slow = proxyApp(stall.url, { headersTimeout: 300 });
    const broken = proxyApp(breaking.url);
    const streaming = proxyApp(endless.url);
    const answers = proxyApp(answering.url);
    proxies = [down, missingSocket, slow, broken, streaming, patient, rejecting, answers];
    @MountGateway('early', rejecting)
    class EarlyMount {}
    @MountGateway('patient', patient)
    class PatientMount {}
    @MountGateway('limited', patient, { timeout: 300 })
    class LimitedMount {}
    @MountGateway('down', down)
    class DownMount {}
    @MountGateway('missing', missingSocket)
    class MissingMount {}
    @MountGateway('slow', slow)
    class SlowMount {}
    @MountGateway('broken', broken)
    class BrokenMount {}
    @MountGateway('endless', streaming)
    class EndlessMount {}
    /** callApp with a signal of the caller's, aborted after 300 ms. */
    @Controller('caller-signal')
    class CallerSignalController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}
      /** One signal for every call, as an app-wide shutdown signal would be. */
      @All('shared/*path')
      shared(@Req() req: unknown, @PathInfo() pathInfo: string) {
        return this.gateway.callApp(answers, req, pathInfo, { signal: shutdown.signal });
      }
      /** Holds the response back while the upstream breaks off its body. */
      @All('late/*path')
      async late(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(broken, req, pathInfo);
        await sleep(300);
        return response;
      }
      @All('*path')
      call(@Req() req: unknown, @PathInfo() pathInfo: string) {
        return this.gateway.callApp(patient, req, pathInfo, { signal: AbortSignal.timeout(300) });
      }
    }
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [DownMount, MissingMount, SlowMount, BrokenMount, EndlessMount, PatientMount, LimitedMount, EarlyMount, CallerSignalController],
    });
  });

  afterAll(async () => {
    await s?.close();
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all([stall, answering, breaking, endless].map((u) => u?.close()));
    await new Promise((resolve) => rude?.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 502 when the upstream is down, and logs an error naming it', async () => {
    const get = await request(s.url).get('/down/x');
    expect(get.status).toBe(502);
    const post = await request(s.url).post('/down/x').type('json').send({ a: 1 });
    expect(post.status).toBe(502);
    expect(s.logger.errors().filter((m) => m.includes(`127.0.0.1:${deadPort}`)).length).toBeGreaterThanOrEqual(1);
    // No internals for the client
    expect(get.text).not.toContain(String(deadPort));
  });

  it('answers 502 when a unix: socket does not exist, and logs its path', async () => {
    const res = await request(s.url).get('/missing/x');
    expect(res.status).toBe(502);
    expect(s.logger.errors().some((m) => m.includes(join(dir, 'missing.sock')))).toBe(true);
  });

  it('answers 504 when the upstream sends no headers within headersTimeout, and drops the connection', async () => {
    const res = await within(request(s.url).get('/slow/x').then((r) => r), 5000, 'the 504');
    expect(res.status).toBe(504);
    expect(stalled.length).toBe(1);
    await waitFor(async () => (await stall.connections()) === 0, 3000, 'the stalled upstream connection to close');
  });

  it('aborts the upstream request when the client gives up before the response headers', async () => {
    const before = stalled.length;
    const abort = new AbortController();
    const pending = fetch(`${s.url}/patient/x`, { signal: abort.signal });
    pending.catch(() => undefined);
    await waitFor(() => stalled.length > before, 5000, 'the upstream to get the request');
    const upstreamReq = stalled[before];
    const closed = new Promise((resolve) => upstreamReq.once('close', resolve));
    upstreamReq.on('error', () => undefined); // 'aborted'
    abort.abort();
    await within(closed, 5000, 'the upstream request to close');
    await waitFor(async () => (await stall.connections()) === 0, 3000, 'no connection left at the upstream');
  });

  it("leaves nothing on a caller's long-lived signal once each proxied call is done", async () => {
    for (let i = 0; i < 20; i++) expect((await request(s.url).get(`/caller-signal/shared/${i}`)).text).toBe('answered');
    await waitFor(() => getEventListeners(shutdown.signal, 'abort').length === 0, 2000, 'no abort listener left on the shared signal');
  });

  it("aborts the upstream request when the caller's signal aborts the call", async () => {
    const before = stalled.length;
    const res = await within(request(s.url).get('/caller-signal/x').then((r) => r), 5000, 'the failed call');
    expect(res.status).toBe(500);
    expect(stalled.length).toBe(before + 1);
    await waitFor(() => stalled[before].closed, 3000, 'the upstream request to close');
  });

  it('answers 504 on a mount timeout and aborts the upstream request', async () => {
    const before = stalled.length;
    const res = await within(request(s.url).get('/limited/x').then((r) => r), 5000, 'the 504');
    expect(res.status).toBe(504);
    expect(stalled.length).toBe(before + 1);
    await waitFor(async () => (await stall.connections()) === 0, 3000, 'no connection left at the upstream');
  });

  // BUG (lib/apps/proxy-app.ts call() → 502 via toHttpError; root cause in undici 7's
  // client-h1): the upstream's whole 413 is in the gateway's socket when the reset comes, but
  // undici fails the request with the body write's ECONNRESET before parsing it. curl gets
  // the 413 from the same upstream every time. Real peers do this intermittently: Flask
  // refusing an upload unread gave 502 in 1 to 5 of 10 tries under gunicorn and uWSGI.
  it.failing('passes on the answer an upstream gives before reading the upload (413), then resets', async () => {
    const res = await new Promise<Omit<Reply, 'json'>>((resolve, reject) => {
      const req = http.request(`${s.url}/early/upload`, {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(MiB) },
      });
      req.on('response', (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode!, headers: r.headers, rawHeaders: r.rawHeaders, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end(Buffer.alloc(MiB));
    });
    expect({ status: res.status, body: res.body.toString() }).toEqual({ status: 413, body: 'too large' });
  });

  it.each([
    ['with Content-Length', '/sized'],
    ['chunked', '/chunked'],
  ])('gives the client a broken response when the upstream dies mid-body (%s)', async (_label, path) => {
    const res = await fetch(`${s.url}/broken${path}`);
    expect(res.status).toBe(200);
    await expect(within(res.arrayBuffer(), 5000, 'the body to fail')).rejects.toThrow(/terminated|closed|aborted|socket/i);
    // The server is fine afterwards.
    const again = await fetch(`${s.url}/broken${path}`);
    await expect(again.arrayBuffer()).rejects.toThrow();
  });

  it('gives a broken response for a body that broke off before the caller returned it, and goes on serving', async () => {
    const res = await fetch(`${s.url}/caller-signal/late/sized`);
    expect(res.status).toBe(200);
    await expect(within(res.arrayBuffer(), 5000, 'the body to fail')).rejects.toThrow(/terminated|closed|aborted|socket/i);
    expect(await (await fetch(`${s.url}/caller-signal/shared/x`)).text()).toBe('answered');
  });

  it('aborts the upstream request when the client goes away mid-response, leaving no connection', async () => {
    const abort = new AbortController();
    const res = await fetch(`${s.url}/endless/x`, { signal: abort.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    abort.abort();
    await within(endlessSaw.closed.promise, 5000, 'the upstream response to close');
    expect(endlessSaw.finishedAtClose).toBe(false);
    expect(endlessSaw.reqClose).toBe(true);
    await waitFor(async () => (await endless.connections()) === 0, 3000, 'no connection left at the upstream');
  });
});

// ---------------------------------------------------------------------------------------------
// Balancing
// ---------------------------------------------------------------------------------------------

describe('balancing over several upstreams', () => {
  let a: NodeUpstream;
  let b: NodeUpstream;
  const identified = (id: string): RequestListener => (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id, method: req.method, body: Buffer.concat(chunks).toString() }));
    });
  };

  beforeAll(async () => {
    a = await nodeUpstream(identified('a'));
    b = await nodeUpstream(identified('b'));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('uses both upstreams over 20 requests', async () => {
    const proxy = proxyApp([a.url, b.url]);
    @MountGateway('pair', proxy)
    class PairMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [PairMount] });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await request(s.url).get(`/pair/${i}`);
        expect(res.status).toBe(200);
        ids.push(res.body.id);
      }
      expect(new Set(ids)).toEqual(new Set(['a', 'b']));
      const concurrent = await Promise.all(Array.from({ length: 20 }, (_, i) => request(s.url).get(`/pair/c${i}`)));
      expect(concurrent.every((r) => r.status === 200)).toBe(true);
      expect(new Set(concurrent.map((r) => r.body.id))).toEqual(new Set(['a', 'b']));
    } finally {
      await s.close();
      await proxy.close();
    }
  });

  it('sends more requests to the less busy upstream', async () => {
    const slow = await nodeUpstream((req, res) => setTimeout(() => identified('slow')(req, res), 300));
    const proxy = proxyApp([slow.url, b.url]);
    @MountGateway('load', proxy)
    class LoadMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [LoadMount] });
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => request(s.url).get(`/load/${i}`)));
      expect(results.every((r) => r.status === 200)).toBe(true);
      const toSlow = results.filter((r) => r.body.id === 'slow').length;
      expect(toSlow).toBeLessThan(20 - toSlow);
    } finally {
      await s.close();
      await proxy.close();
      await slow.close();
    }
  });

  it('skips a unix: upstream whose socket does not exist', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nest-gateway-proxy-'));
    const proxy = proxyApp([`unix:${join(dir, 'missing.sock')}`, a.url]);
    @MountGateway('half', proxy)
    class HalfMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [HalfMount] });
    try {
      const results = [];
      for (let i = 0; i < 4; i++) results.push(await request(s.url).post(`/half/${i}`).type('text').send(`body ${i}`));
      expect(results.map((r) => r.body)).toEqual([0, 1, 2, 3].map((i) => ({ id: 'a', method: 'POST', body: `body ${i}` })));
    } finally {
      await s.close();
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('skips an upstream that refuses connections: every GET and POST (with its body) succeeds', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const proxy = proxyApp([dead, a.url]);
    @MountGateway('half', proxy)
    class HalfMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [HalfMount] });
    try {
      // The first request goes to the dead one first (equal load, first in the list).
      const first = await request(s.url).post('/half/first').type('json').send({ n: 'first' });
      expect(first.status).toBe(200);
      expect(first.body).toEqual({ id: 'a', method: 'POST', body: JSON.stringify({ n: 'first' }) });
      const results = await Promise.all([
        ...Array.from({ length: 10 }, (_, i) => request(s.url).post(`/half/${i}`).type('json').send({ n: i })),
        ...Array.from({ length: 10 }, (_, i) => request(s.url).get(`/half/g${i}`)),
      ]);
      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
      results.slice(0, 10).forEach((r, i) => expect(r.body).toEqual({ id: 'a', method: 'POST', body: JSON.stringify({ n: i }) }));
      expect(s.logger.errors()).toEqual([]);
    } finally {
      await s.close();
      await proxy.close();
    }
  });

  it('retries a POST with a multi-chunk body on the live upstream when the dead one refuses it', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const proxy = proxyApp([dead, b.url]);
    @MountGateway('retry', proxy)
    class RetryMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [RetryMount] });
    try {
      const body = 'x'.repeat(500_000);
      const res = await request(s.url).post('/retry/x').type('text').send(body);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe('b');
      expect(res.body.body).toBe(body);
    } finally {
      await s.close();
      await proxy.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A response nobody reads
// ---------------------------------------------------------------------------------------------

describe('a callApp response its caller drops unread', () => {
  let upstream: NodeUpstream;
  let proxy: Proxy;
  let s: Started;

  beforeAll(async () => {
    upstream = await nodeUpstream((req, res) => {
      const size = Number(new URL(req.url!, 'http://x').searchParams.get('size') ?? 0);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      res.end(Buffer.alloc(size, 'x'));
    });
    proxy = proxyApp(upstream.url, { connections: 1 });
    @Controller('drop')
    class DroppingController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}
      @All('*path')
      async drop(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(proxy, req, pathInfo);
        return { upstreamStatus: response.status };
      }
    }
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [DroppingController] });
  });

  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    await upstream?.close();
  });

  it('still frees the only upstream connection when the body is under 64 KiB', async () => {
    for (const size of [0, 1000, 17_000, 40_000, 64 * 1024 - 1]) {
      const res = await within(fetch(`${s.url}/drop/x?size=${size}`), 3000, `the answer after a dropped body of ${size} bytes`);
      expect(await res.json()).toEqual({ upstreamStatus: 200 });
    }
  });

  it('lets go of the upstream connection of a bigger body once nothing can read it', async () => {
    const first = await within(fetch(`${s.url}/drop/x?size=${8 * MiB}`), 3000, 'the answer after a dropped 8 MiB body');
    expect(await first.json()).toEqual({ upstreamStatus: 200 });
    // The pool's one connection is held by the paused 8 MiB answer until V8 collects its body.
    let answered = false;
    const next = fetch(`${s.url}/drop/x?size=10`).then(async (res) => ((answered = true), res.json()));
    const collect = collector();
    for (let i = 0; i < 100 && !answered; i++) {
      collect();
      await sleep(50);
    }
    expect(await within(next, 1000, 'the next answer')).toEqual({ upstreamStatus: 200 });
  });
});

describe('an upstream reason phrase Node would not send', () => {
  let upstream: net.Server;
  let proxy: ReturnType<typeof proxyApp>;
  let s: Started;
  beforeAll(async () => {
    upstream = net.createServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 O\x01K\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok', 'latin1'));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    proxy = proxyApp(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    @MountGateway('odd', proxy)
    class OddMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [OddMount] });
  });
  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    upstream?.close();
  });

  it('gets the standard one, and the answer goes through', async () => {
    const res = await new Promise<IncomingMessage>((resolve, reject) => http.get(`${s.url}/odd/`, { agent: false }, resolve).on('error', reject));
    res.resume();
    expect(res.statusCode).toBe(200);
    expect(res.statusMessage).toBe('OK');
  });
});
