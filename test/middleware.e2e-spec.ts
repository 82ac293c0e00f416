import express from 'express';
import { GatewayModule, MountGateway, cgiApp, fetchApp, proxyApp, type NodeMiddleware } from 'nest-gateway';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { startNest, type Started } from './fixtures/start.js';

const seen: string[] = [];
const record =
  (name: string): NodeMiddleware =>
  (req, _res, next) => {
    seen.push(`${name} ${req.url} ${(req as IncomingMessage & { baseUrl?: string }).baseUrl}`);
    next();
  };
const addHeader: NodeMiddleware = (_req, res, next) => {
  res.setHeader('x-middleware', 'yes');
  next();
};
const gate: NodeMiddleware = (req, res, next) => {
  if (req.headers['x-block']) {
    res.statusCode = 418;
    res.end('blocked by middleware');
  } else next();
};
// What connect-history-api-fallback does for a single-page app: unknown paths serve the index.
const historyFallback: NodeMiddleware = (req, _res, next) => {
  if (!req.url?.startsWith('/assets/')) req.url = '/index.html?from=history';
  next();
};
const failing: NodeMiddleware = (_req, _res, next) => next(new Error('middleware broke'));

// Starts the answer, then fails: what Express's final handler does then is break the connection.
const failingMidAnswer: NodeMiddleware = (_req, res, next) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.write('partial');
  setTimeout(() => next(new Error('middleware broke mid-answer')), 20);
};

function app(req: IncomingMessage & { baseUrl?: string }, res: ServerResponse) {
  res.end(`app saw ${req.url} under ${req.baseUrl}`);
}

@MountGateway('wrapped', app, { middleware: [record('first'), addHeader, gate, record('last')] })
class Wrapped {}

@MountGateway('plain', app)
class Plain {}

@MountGateway('broken', app, { middleware: [failing] })
class Broken {}

@MountGateway('broken-mid-answer', app, { middleware: [failingMidAnswer] })
class BrokenMidAnswer {}

const script = fileURLToPath(new URL('./fixtures/cgi/env.sh', import.meta.url));
@MountGateway('cgi', cgiApp(script), { middleware: [addHeader, gate] })
class CgiWrapped {}

@MountGateway('spa', app, { middleware: [historyFallback] })
class Spa {}

@MountGateway('spa-cgi', cgiApp(script), { middleware: [historyFallback] })
class SpaCgi {}

// A mount whose middleware parses the JSON body to look at it, then lets the app have it.
const nameHeader: NodeMiddleware = (req, res, next) => {
  res.setHeader('x-name', String((req as IncomingMessage & { body?: { name?: string } }).body?.name ?? 'none'));
  next();
};
function echoBody(req: IncomingMessage, res: ServerResponse) {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => res.end(`${req.headers['content-type']} ${Buffer.concat(chunks).toString()}`));
}
@MountGateway('parsed', echoBody, { middleware: [express.json(), nameHeader] })
class Parsed {}


describe('middleware per mount', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [Wrapped, Plain, Broken, BrokenMidAnswer, CgiWrapped, Spa, SpaCgi, Parsed] });
  });
  afterAll(() => s.close());
  beforeEach(() => (seen.length = 0));

  it('runs in order before the app, with mount semantics, and the app still sees its own path', async () => {
    const res = await fetch(`${s.url}/wrapped/a/b?c=1`);
    expect(await res.text()).toBe('app saw /a/b?c=1 under /wrapped');
    expect(res.headers.get('x-middleware')).toBe('yes');
    expect(seen).toEqual(['first /a/b?c=1 /wrapped', 'last /a/b?c=1 /wrapped']);
  });

  it('runs only for its own mount', async () => {
    const res = await fetch(`${s.url}/plain/x`);
    expect(await res.text()).toBe('app saw /x under /plain');
    expect(res.headers.get('x-middleware')).toBeNull();
    expect(seen).toEqual([]);
  });

  it('a middleware that answers ends the request there', async () => {
    const res = await fetch(`${s.url}/wrapped/x`, { headers: { 'x-block': '1' } });
    expect(res.status).toBe(418);
    expect(await res.text()).toBe('blocked by middleware');
    expect(seen).toEqual(['first /x /wrapped']);
  });

  it('next(error) becomes a 500 through Nest, logged', async () => {
    const res = await fetch(`${s.url}/broken/x`);
    expect(res.status).toBe(500);
    expect(s.logger.errors().join('\n')).toMatch(/middleware broke/);
  });

  it('next(error) after the answer has started breaks the response off, logged, as under Express', async () => {
    const res = await fetch(`${s.url}/broken-mid-answer/x`);
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    expect(s.logger.errors().join('\n')).toMatch(/middleware broke mid-answer/);
    // The server goes on serving.
    expect(await (await fetch(`${s.url}/plain/x`)).text()).toBe('app saw /x under /plain');
  });

  it('wraps apps of other kinds too (a CGI script)', async () => {
    const ok = await fetch(`${s.url}/cgi/p`);
    expect(ok.headers.get('x-middleware')).toBe('yes');
    expect(await ok.text()).toContain('SCRIPT_NAME=/cgi');
    const blocked = await fetch(`${s.url}/cgi/p`, { headers: { 'x-block': '1' } });
    expect(blocked.status).toBe(418);
  });

  it('a middleware that rewrites req.url (a history fallback) decides what the app serves, as under Express', async () => {
    expect(await (await fetch(`${s.url}/spa/some/route`)).text()).toBe('app saw /index.html?from=history under /spa');
    expect(await (await fetch(`${s.url}/spa/assets/app.js?v=1`)).text()).toBe('app saw /assets/app.js?v=1 under /spa');
    const cgi = await (await fetch(`${s.url}/spa-cgi/some/route`)).text();
    expect(cgi).toContain('PATH_INFO=/index.html\n');
    expect(cgi).toContain('QUERY_STRING=from=history\n');
    expect(cgi).toContain('SCRIPT_NAME=/spa-cgi\n');
  });

  it('a middleware may parse the body (express.json()); the app still gets it byte for byte', async () => {
    const json = '{"name": "ada",  "n": 12345678901234567890}';
    const parsed = await fetch(`${s.url}/parsed/x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: json });
    expect(parsed.headers.get('x-name')).toBe('ada');
    expect(await parsed.text()).toBe(`application/json ${json}`);
    // A body the middleware leaves alone still streams to the app as it comes.
    const text = await fetch(`${s.url}/parsed/x`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'plain words' });
    expect(text.headers.get('x-name')).toBe('none');
    expect(await text.text()).toBe('text/plain plain words');
  });
});

describe('middleware that reads the body, in front of each kind of app', () => {
  let s: Started;
  let upstream: Server;
  const json = '{"name": "ada",  "n": 12345678901234567890}';
  beforeAll(async () => {
    upstream = createServer(echoBody);
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const proxy = proxyApp(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    const vars = fileURLToPath(new URL('./fixtures/cgi/vars.py', import.meta.url));
    const middleware = [express.json(), nameHeader];
    @MountGateway('parsed-proxy', proxy, { middleware })
    class ParsedProxy {}
    @MountGateway('parsed-cgi', cgiApp(vars), { middleware })
    class ParsedCgi {}
    @MountGateway('parsed-fetch', fetchApp(async (request) => new Response(`${request.headers.get('content-type')} ${await request.text()}`)), { middleware })
    class ParsedFetch {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [ParsedProxy, ParsedCgi, ParsedFetch] });
  });
  afterAll(async () => {
    await s.close();
    upstream.close();
  });
  const post = (path: string) => fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: json });

  it('proxyApp: the upstream gets the body byte for byte', async () => {
    const res = await post('/parsed-proxy/x');
    expect(res.headers.get('x-name')).toBe('ada');
    expect(await res.text()).toBe(`application/json ${json}`);
  });

  it('cgiApp: the script gets the body on stdin, with its CONTENT_LENGTH and CONTENT_TYPE', async () => {
    const res = await post('/parsed-cgi/x');
    expect(res.headers.get('x-name')).toBe('ada');
    const report = (await res.json()) as { body: string; env: Record<string, string> };
    expect(report.body).toBe(json);
    expect(report.env.CONTENT_LENGTH).toBe(String(Buffer.byteLength(json)));
    expect(report.env.CONTENT_TYPE).toBe('application/json');
  });

  it('fetchApp: request.text() is the body', async () => {
    const res = await post('/parsed-fetch/x');
    expect(res.headers.get('x-name')).toBe('ada');
    expect(await res.text()).toBe(`application/json ${json}`);
  });
});
