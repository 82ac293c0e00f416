import { All, Controller, Get, Inject, Req, Res } from '@nestjs/common';
import express from 'express';
import type { Response } from 'express';
import {
  BodyTooLargeError,
  GatewayModule,
  GatewayResponse,
  GatewayService,
  MountGateway,
  PathInfo,
  cgiApp,
  fetchApp,
  proxyApp,
  type GatewayAppLike,
} from 'nest-gateway';
import { getEventListeners } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { brotliCompressSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import request from 'supertest';
import { send } from './fixtures/http-client.js';
import { buildPackage } from './fixtures/built-package.js';
import { echoListener, expressSubApp, honoApp } from './fixtures/apps.js';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

/** A stand-in for Trac: a login page, cookies, and a Server header of its own. */
function tracLike(req: IncomingMessage & { gatewayEnv?: Record<string, unknown> }, res: ServerResponse) {
  res.setHeader('server', 'tracd/1.6');
  res.setHeader('set-cookie', ['trac_session=abc; Path=/', 'trac_form_token=xyz; Path=/']);
  res.setHeader('content-type', 'text/plain');
  res.end(`trac at ${req.url} for ${String(req.gatewayEnv?.['trac.env_path'])}`);
}

const big = (_req: IncomingMessage, res: ServerResponse) => {
  res.setHeader('content-type', 'application/octet-stream');
  res.end(Buffer.alloc(11 * 1024 * 1024, 1));
};

/** An app that compresses its answers (Django's GZipMiddleware, Express's compression()). */
function compressing(req: IncomingMessage, res: ServerResponse) {
  const path = (req.url ?? '/').split('?')[0];
  const html = Buffer.from('<html><a href="/old/page">link</a></html>');
  if (path === '/bomb') {
    // 64 MiB of zeros in about 64 KiB of gzip.
    res.setHeader('content-encoding', 'gzip');
    return res.end(gzipSync(Buffer.alloc(64 * 1024 * 1024)));
  }
  if (path === '/deflate-bomb') {
    res.setHeader('content-encoding', 'deflate');
    return res.end(deflateSync(Buffer.alloc(64 * 1024 * 1024)));
  }
  if (path === '/zstd') {
    res.setHeader('content-encoding', 'zstd');
    return res.end('not really zstd');
  }
  const coding = decodeURIComponent(path.slice(1));
  const encoded = coding === 'br' ? brotliCompressSync(html) : coding === 'deflate' ? deflateSync(html) : coding === 'gzip, br' ? brotliCompressSync(gzipSync(html)) : gzipSync(html);
  res.setHeader('content-type', 'text/html');
  res.setHeader('content-encoding', coding);
  res.setHeader('content-length', encoded.length);
  res.end(encoded);
}

/** The built package (dist/), loaded beside the library under test: a second copy of it. */
let otherCopy: typeof import('nest-gateway') | undefined;

const shutdown = new AbortController();

/** A GET with Node's own client, which refuses a response whose framing it cannot read. */
function rawGet(url: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Never answers; notes each response that closes. */
const closedResponses: string[] = [];
/** How each background call ended, by path. */
const backgroundOutcomes = new Map<string, string>();
function neverAnswers(req: IncomingMessage, res: ServerResponse) {
  res.on('close', () => closedResponses.push(req.url ?? ''));
}

@Controller()
class FilterController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  /** The seed's Trac example: per-request environ, login/logout redirected to our own pages. */
  @All('tracs/:id/*path')
  async trac(@Req() req: { params: { id: string } }, @Res() res: Response, @PathInfo() pathInfo: string) {
    if (pathInfo.startsWith('/login')) return res.redirect('/my-login-form');
    if (pathInfo.startsWith('/logout')) return res.redirect('/my-logout-form');
    const response = await this.gateway.callApp(tracLike, req, pathInfo, {
      env: { 'trac.env_path': `/var/trac-instances/${req.params.id}` },
    });
    response.headers.set('server', 'nest-gateway');
    return res.status(200).send(await response.text());
  }

  @All('filtered/*path')
  async filtered(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(tracLike, req, pathInfo);
    response.headers.set('server', 'nest-gateway');
    response.setStatus(203, 'Filtered By Nest');
    response.body = (await response.text()).toUpperCase();
    return response;
  }

  @Get('streamed/*path')
  async streamed(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(tracLike, req, pathInfo);
    response.headers.set('x-filtered', '1');
    return response;
  }

  /** The headers a called app's response comes with; the app names hop-by-hop headers of its own. */
  @Get('hop-by-hop/:variant')
  async hopByHop(@Req() req: { params: { variant: string } }) {
    const own = req.params.variant === 'own';
    const response = await this.gateway.callApp(
      (_req: IncomingMessage, res: ServerResponse) => {
        // With a Connection header of the app's own, Node adds no `Connection: close`.
        // Node lets an app put any text there; what is not a token names no header.
        if (own) res.setHeader('connection', 'x-hop-secret, Keep-Alive, not a token, a/b');
        res.setHeader('x-hop-secret', 'for the next hop only');
        res.setHeader('close', 'a header named like the token');
        res.setHeader('keep-alive', 'timeout=5');
        res.setHeader('x-kept', '1');
        res.end('ok');
      },
      req,
      '',
    );
    const headers = Object.fromEntries(response.headers);
    // Framing is Node's business (and differs between the two variants).
    delete headers['content-length'];
    return headers;
  }

  /** A header that ends in 'à': with a string body, Node writes the head as UTF-8, 'à' as C3 A0. */
  @Get('utf8-header')
  utf8Header(@Req() req: unknown) {
    return this.gateway.callApp(
      (_req: IncomingMessage, res: ServerResponse) => {
        res.setHeader('x-title', 'voilà');
        res.end('ok');
      },
      req,
      '',
    );
  }

  /** An app's head of 80,000 headers (Node caps none it sends), each name twice. */
  @Get('many-headers')
  async manyHeaders(@Req() req: unknown) {
    const response = await this.gateway.callApp(
      (_req: IncomingMessage, res: ServerResponse) => {
        const raw: string[] = [];
        for (let i = 0; i < 40_000; i++) raw.push(`x-h${i}`, 'a');
        for (let i = 0; i < 40_000; i++) raw.push(`x-h${i}`, 'b');
        res.writeHead(200, raw);
        res.end();
      },
      req,
      '',
    );
    return { names: [...response.headers.keys()].length, first: response.headers.get('x-h0'), last: response.headers.get('x-h39999') };
  }

  /** Headers in an order of the app's own, one of them repeated, and two cookies; returned untouched. */
  @Get('ordered')
  ordered(@Req() req: unknown) {
    return this.gateway.callApp(
      (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200, ['Z-Named-Late', '1', 'Set-Cookie', 'a=1', 'X-Repeated', 'a', 'A-Named-Early', '2', 'X-Repeated', 'b', 'Set-Cookie', 'b=2']);
        res.end('ordered');
      },
      req,
      '',
    );
  }

  /** The same app's response filtered by the caller, as the seed's views filter Trac's. */
  @Get('ordered-filtered/:read')
  async orderedFiltered(@Req() req: { params: { read: string } }) {
    const response = await this.ordered(req);
    const headers = response.headers;
    if (req.params.read === 'iterated') void [...headers.keys()];
    headers.set('x-repeated', 'c');
    headers.append('z-named-late', '2');
    headers.delete('a-named-early');
    headers.set('server', 'nest-gateway');
    headers.append('set-cookie', 'c=3');
    return response;
  }

  /** A caller that puts a control character in a header: `Headers` takes it, Node refuses to send it. */
  @Get('unsendable-header/*path')
  async unsendableHeader(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(
      (_req: IncomingMessage, res: ServerResponse) => {
        res.on('close', () => closedResponses.push('unsendable'));
        res.setHeader('content-type', 'text/plain');
        res.setHeader('x-app', 'kept off the error');
        res.write('a body that is never sent');
      },
      req,
      pathInfo,
    );
    response.headers.set('x-note', 'bell \x07 in it');
    return response;
  }

  /**
   * As above, with headers on the client's response already (CORS middleware's, a cookie) that
   * the app's response overrides, and a Date of the app's.
   */
  @Get('unsendable-over-cors')
  async unsendableOverCors(@Req() req: unknown, @Res({ passthrough: true }) res: Response) {
    res.setHeader('access-control-allow-origin', 'https://client.example');
    res.cookie('session', 'kept');
    const response = await this.gateway.callApp(
      (_req: IncomingMessage, appRes: ServerResponse) => {
        appRes.setHeader('access-control-allow-origin', '*');
        appRes.setHeader('set-cookie', 'app=1');
        appRes.end('never sent');
      },
      req,
      '',
    );
    response.headers.set('date', 'Fri, 01 Jan 1999 00:00:00 GMT');
    response.headers.set('x-note', 'bell \x07 in it');
    return response;
  }

  /** An app whose Content-Length is no single length (Node sends what it is given). */
  @Get('odd-length/:value')
  oddLength(@Req() req: { params: { value: string } }) {
    return this.gateway.callApp(
      (_req: IncomingMessage, res: ServerResponse) => {
        res.setHeader('content-length', req.params.value);
        res.end('ok');
      },
      req,
      '',
    );
  }

  @Get('twice/*path')
  async twice(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const first = await this.gateway.callApp(echoListener, req, pathInfo);
    const second = await this.gateway.callApp(honoApp(), req, pathInfo);
    return { first: await first.json(), second: await second.text() };
  }

  /** One signal for every call, as an app-wide shutdown signal would be. */
  @Get('shared-signal/*path')
  sharedSignal(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(echoListener, req, pathInfo, { signal: shutdown.signal });
  }

  /** A signal of the caller's: aborted after `ms`, or before the call when 0. */
  @Get('caller-signal/:ms/*path')
  callerSignal(@Req() req: { params: { ms: string } }, @PathInfo() pathInfo: string) {
    const ms = Number(req.params.ms);
    return this.gateway.callApp(neverAnswers, req, pathInfo, { signal: ms === 0 ? AbortSignal.abort() : AbortSignal.timeout(ms) });
  }

  /**
   * Answers the client itself, then calls on in the background with a signal of its own:
   * aborted before the call when `ms` is 0, else after `ms`; the call starts before the
   * answer with `?early`, after it has closed otherwise.
   */
  @Get('background/:ms/*path')
  async background(@Req() req: { params: { ms: string }; query: Record<string, string> }, @Res() res: Response, @PathInfo() pathInfo: string) {
    const ms = Number(req.params.ms);
    const signal = ms === 0 ? AbortSignal.abort() : AbortSignal.timeout(ms);
    const call = () => this.gateway.callApp(neverAnswers, req, pathInfo, { signal });
    const early = 'early' in req.query ? call() : undefined;
    early?.catch(() => undefined);
    res.end('accepted');
    await new Promise((resolve) => res.once('close', resolve));
    const outcome = await (early ?? call()).then(
      () => 'answered',
      (error: Error) => `failed: ${error.message}`,
    );
    backgroundOutcomes.set(pathInfo, outcome);
  }

  /** An app with validators; `?replace` sets a new body, otherwise only a header changes. */
  @Get('etag/*path')
  async etag(@Req() req: { query: Record<string, string> }, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(
      (inner: IncomingMessage, res: ServerResponse) => {
        res.setHeader('etag', inner.url?.startsWith('/weak') ? 'W/"v2"' : '"v1"');
        res.end('original');
      },
      req,
      pathInfo,
    );
    response.headers.set('x-filtered', '1');
    // A filter's own validator for the bytes it sends, set before the body.
    if ('own' in req.query) response.headers.set('etag', '"mine"');
    if ('replace' in req.query) response.body = 'replaced';
    return response;
  }

  @Get('bad-suffix/*path')
  badSuffix(@Req() req: unknown) {
    return this.gateway.callApp(echoListener, req, '/not/the/tail');
  }

  @Get('too-big')
  async tooBig(@Req() req: unknown) {
    const response = await this.gateway.callApp(big, req, '');
    try {
      await response.bytes();
      return { error: null };
    } catch (error) {
      return { error: (error as Error).name, message: (error as Error).message };
    }
  }

  @Get('raised-limit')
  async raisedLimit(@Req() req: unknown) {
    const response = await this.gateway.callApp(big, req, '');
    return { length: (await response.bytes({ limit: 12 * 1024 * 1024 })).length };
  }

  @Get('express/*path')
  async express(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(expressSubApp(), req, pathInfo);
  }

  @All('options/*path')
  options(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(echoListener, req, pathInfo, {
      method: 'PUT',
      headers: { 'x-added': 'yes', 'user-agent': null },
      body: 'replacement body',
      env: { tenant: 'acme' },
    });
  }

  @All('no-body/*path')
  noBody(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(echoListener, req, pathInfo, { body: null });
  }

  @Get('headers-view/*path')
  headersView(@Req() req: unknown, @PathInfo() pathInfo: string) {
    // What libraries that treat req.headers as Node's own object do with it.
    const view = (inner: IncomingMessage, res: ServerResponse) => {
      const headers = inner.headers as Record<string, unknown> & { hasOwnProperty(name: string): boolean };
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          plain: Object.getPrototypeOf(headers) === Object.prototype,
          hasProbe: headers.hasOwnProperty('x-probe'),
          constructorHeader: headers.constructor,
          cookie: headers.cookie,
        }),
      );
    };
    return this.gateway.callApp(view, req, pathInfo);
  }

  @Get('fetch-env/*path')
  fetchEnv(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(
      fetchApp(async (request, env) => Response.json({ url: request.url, env })),
      req,
      pathInfo,
      { env: { 'trac.env_path': '/srv/a' } },
    );
  }

  @Get('compressed/rewritten/*path')
  async compressedRewritten(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(compressing, req, pathInfo);
    response.body = (await response.text()).replaceAll('/old/', '/new/');
    return response;
  }

  @Get('compressed/read-only/*path')
  async compressedReadOnly(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(compressing, req, pathInfo);
    response.headers.set('x-length-seen', String((await response.text()).length));
    return response;
  }

  @Get('compressed/errors/*path')
  async compressedErrors(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(compressing, req, pathInfo);
    try {
      return { text: await response.text() };
    } catch (error) {
      return { error: (error as Error).name };
    }
  }

  /** The same, made by another copy of the library (a dependency that brings its own). */
  @Get('constructed-elsewhere')
  constructedElsewhere() {
    return new otherCopy!.GatewayResponse({ status: 200, headers: { 'x-made': 'elsewhere' }, body: 'built by another copy' });
  }

  @Get('constructed')
  constructed() {
    return new GatewayResponse({
      status: 201,
      statusText: 'Made',
      headers: [['x-made', 'here']],
      body: 'built by hand',
    });
  }
}

@MountGateway('mounted-express', expressSubApp())
class MountedExpress {}

describe('GatewayService.callApp', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [FilterController, MountedExpress] });
  });
  afterAll(() => s.close());

  it('passes per-request environ and lets the view redirect login/logout (the seed’s Trac view)', async () => {
    const page = await request(s.url).get('/tracs/alpha/wiki/Start');
    expect(page.text).toBe('trac at /wiki/Start for /var/trac-instances/alpha');
    const login = await request(s.url).get('/tracs/alpha/login');
    expect(login.status).toBe(302);
    expect(login.headers.location).toBe('/my-login-form');
    const logout = await request(s.url).get('/tracs/beta/logout?x=1');
    expect(logout.headers.location).toBe('/my-logout-form');
  });

  it('sends a returned GatewayResponse as is after the caller changed status, headers and body', async () => {
    const res = await new Promise<IncomingMessage & { text: string }>((resolve) => {
      http.get(`${s.url}/filtered/page`, (r) => {
        let text = '';
        r.setEncoding('utf8').on('data', (c) => (text += c));
        r.on('end', () => resolve(Object.assign(r, { text })));
      });
    });
    expect(res.statusCode).toBe(203);
    expect(res.statusMessage).toBe('Filtered By Nest');
    expect(res.headers.server).toBe('nest-gateway');
    expect(res.headers['set-cookie']).toEqual(['trac_session=abc; Path=/', 'trac_form_token=xyz; Path=/']);
    expect(res.text).toBe('TRAC AT /PAGE FOR UNDEFINED');
    expect(res.headers['content-length']).toBe(String(res.text.length));
  });

  it('streams an untouched body and keeps header changes', async () => {
    const res = await request(s.url).get('/streamed/x');
    expect(res.headers['x-filtered']).toBe('1');
    expect(res.headers['set-cookie']).toHaveLength(2);
    expect(res.text).toBe('trac at /x for undefined');
  });

  it("drops the hop-by-hop headers of the app's response, and those its Connection header names", async () => {
    const own = await request(s.url).get('/hop-by-hop/own');
    expect(own.body).toEqual({ close: 'a header named like the token', 'x-kept': '1' });
    // Node's own `Connection: close` names a header too.
    const node = await request(s.url).get('/hop-by-hop/node');
    expect(node.body).toEqual({ 'x-hop-secret': 'for the next hop only', 'x-kept': '1' });
  });

  it("passes a header value's bytes on as they are, a last byte A0 (of a UTF-8 'à') included", async () => {
    const value = await new Promise<string | undefined>((resolve, reject) => {
      http.get(`${s.url}/utf8-header`, (r) => {
        r.resume();
        resolve(r.headers['x-title'] as string | undefined);
      }).on('error', reject);
    });
    // The bytes the app sent, as Node's client reads them (latin1): C3 A0, not whitespace in HTTP.
    expect(value).toBe('voil\u00c3\u00a0');
  });

  it("joins every repeated name of a long head of the app's (past the names a scan looks through)", async () => {
    // Its cost is for the bench (bench/findings.md, tenth round), not for a timed test.
    const res = await request(s.url).get('/many-headers').timeout(20000);
    expect(res.body).toEqual({ names: 40_000, first: 'a, b', last: 'a, b' });
  });

  it("keeps the app's header order, joins a repeated header and keeps each cookie apart", async () => {
    const res = await send(`${s.url}/ordered`);
    const names = res.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    expect(names.filter((name) => ['z-named-late', 'x-repeated', 'a-named-early'].includes(name))).toEqual(['z-named-late', 'x-repeated', 'a-named-early']);
    expect(res.headers['x-repeated']).toBe('a, b');
    expect(res.rawHeaders.filter((_, i) => i % 2 === 1 && /^set-cookie$/i.test(res.rawHeaders[i - 1]))).toEqual(['a=1', 'b=2']);
    expect(res.body.toString()).toBe('ordered');
  });

  it.each(['listed', 'iterated'])("sends the caller's changes to the app's headers, in the app's order until they are iterated (%s)", async (read) => {
    const res = await send(`${s.url}/ordered-filtered/${read}`);
    const names = res.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    const ours = names.filter((name) => ['z-named-late', 'x-repeated', 'server', 'a-named-early'].includes(name));
    // Iterating a Headers sorts it, as the Fetch standard says.
    expect(ours).toEqual(read === 'listed' ? ['z-named-late', 'x-repeated', 'server'] : ['server', 'x-repeated', 'z-named-late']);
    expect(res.headers['x-repeated']).toBe('c');
    expect(res.headers['z-named-late']).toBe('1, 2');
    expect(res.headers['server']).toBe('nest-gateway');
    expect(res.rawHeaders.filter((_, i) => i % 2 === 1 && /^set-cookie$/i.test(res.rawHeaders[i - 1]))).toEqual(['a=1', 'b=2', 'c=3']);
    expect(res.body.toString()).toBe('ordered');
  });

  it("answers 500 when a header of the response is one Node refuses to send, and closes the app's response", async () => {
    const res = await request(s.url).get('/unsendable-header/x').timeout(5000);
    expect(res.status).toBe(500);
    expect(res.headers['x-app']).toBeUndefined();
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    await waitFor(() => closedResponses.includes('unsendable'), 2000, 'the app to see its response closed');
    expect(s.logger.errors().join('\n')).toMatch(/Invalid character in header content \["x-note"\]/);
  });

  it("answers that 500 with the client's response's own headers, as before the app's response overrode them", async () => {
    const res = await within(rawGet(`${s.url}/unsendable-over-cors`), 3000, 'an answer');
    expect(res.status).toBe(500);
    expect(res.headers['access-control-allow-origin']).toBe('https://client.example');
    expect(res.headers['set-cookie']).toEqual([expect.stringMatching(/^session=kept;/)]);
    // Node's own Date, not the app's, and not none.
    expect(res.headers['date']).toMatch(/GMT$/);
    expect(res.headers['date']).not.toMatch(/1999/);
    expect(res.headers['x-note']).toBeUndefined();
  });

  it('passes on a Content-Length that repeats one length as that length, and none that is no length', async () => {
    // Taken off, the body goes out chunked.
    const cases: Array<[value: string, length: string | undefined, coding: string | undefined]> = [
      ['2, 2', '2', undefined],
      ['abc', undefined, 'chunked'],
      ['2, 3', undefined, 'chunked'],
    ];
    for (const [value, length, coding] of cases) {
      const res = await within(rawGet(`${s.url}/odd-length/${encodeURIComponent(value)}`), 3000, `an answer for ${value}`);
      const framing = [res.headers['content-length'], res.headers['transfer-encoding']];
      expect([value, res.status, ...framing, res.body]).toEqual([value, 200, length, coding, 'ok']);
    }
  });

  it('can call apps twice on one request', async () => {
    const res = await request(s.url).get('/twice/hello/again?q=1');
    expect(res.status).toBe(200);
    expect(res.body.first).toMatchObject({ url: '/hello/again?q=1', baseUrl: '/twice' });
    expect(res.body.second).toBe('Hello again');
  });

  it("leaves nothing on a caller's long-lived signal once each call's response is done", async () => {
    for (let i = 0; i < 20; i++) expect((await request(s.url).get(`/shared-signal/${i}`)).status).toBe(200);
    await waitFor(() => getEventListeners(shutdown.signal, 'abort').length === 0, 2000, 'no abort listener left on the shared signal');
  });

  it("ends the call when the caller's signal aborts: the app sees its response closed", async () => {
    const started = Date.now();
    const res = await request(s.url).get('/caller-signal/200/waiting');
    expect(res.status).toBe(500);
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => closedResponses.includes('/waiting'), 2000, 'the app to see its response closed');
  });

  it("fails at once when the caller's signal is aborted already, and the app's response is closed", async () => {
    const res = await request(s.url).get('/caller-signal/0/never');
    expect(res.status).toBe(500);
    await waitFor(() => closedResponses.includes('/never'), 2000, 'the app to see its response closed');
  });

  it("ends a call made after the client's response when the caller's signal is aborted already", async () => {
    expect((await request(s.url).get('/background/0/after')).text).toBe('accepted');
    await waitFor(() => backgroundOutcomes.has('/after'), 2000, 'the background call to fail');
    expect(backgroundOutcomes.get('/after')).toMatch(/^failed/);
    await waitFor(() => closedResponses.includes('/after'), 2000, 'the app to see its response closed');
  });

  it("ends a call that outlives the client's response when the caller's signal aborts", async () => {
    expect((await request(s.url).get('/background/300/outlives?early')).text).toBe('accepted');
    await waitFor(() => backgroundOutcomes.has('/outlives'), 3000, 'the background call to fail');
    expect(backgroundOutcomes.get('/outlives')).toMatch(/^failed/);
    await waitFor(() => closedResponses.includes('/outlives?early'), 2000, 'the app to see its response closed');
  });

  it("weakens the app's strong ETag when the body is replaced, and keeps it otherwise, or when the caller set its own", async () => {
    const replaced = await request(s.url).get('/etag/strong?replace');
    expect(replaced.text).toBe('replaced');
    expect(replaced.headers.etag).toBe('W/"v1"');
    expect((await request(s.url).get('/etag/weak?replace')).headers.etag).toBe('W/"v2"');
    const own = await request(s.url).get('/etag/strong?own&replace');
    expect(own.text).toBe('replaced');
    expect(own.headers.etag).toBe('"mine"');
    const kept = await request(s.url).get('/etag/strong');
    expect(kept.text).toBe('original');
    expect(kept.headers.etag).toBe('"v1"');
  });

  it('rejects a pathInfo that is not the tail of the request path with a 500', async () => {
    const res = await request(s.url).get('/bad-suffix/x');
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts/);
    expect(s.logger.errors().some((line) => line.includes('must be') && line.includes('suffix'))).toBe(true);
  });

  it('reads bodies with a 10 MiB default limit and a clear error above it', async () => {
    const res = await request(s.url).get('/too-big');
    expect(res.body.error).toBe(BodyTooLargeError.name);
    expect(res.body.message).toMatch(/10485760-byte limit/);
    expect((await request(s.url).get('/raised-limit')).body).toEqual({ length: 11 * 1024 * 1024 });
  });

  describe('bodies the app compressed', () => {
    /** The bytes as they came over the wire: supertest would decode them. */
    const raw = (path: string) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        http.get(`${s.url}${path}`, { headers: { 'accept-encoding': 'gzip, deflate, br' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        }).on('error', reject);
      });

    it.each(['gzip', 'deflate', 'br', 'gzip, br'])('text() decodes %s, and the rewritten body goes out as plain text', async (coding) => {
      const res = await raw(`/compressed/rewritten/${encodeURIComponent(coding)}`);
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body.toString()).toBe('<html><a href="/new/page">link</a></html>');
      expect(res.headers['content-length']).toBe(String(res.body.length));
    });

    it('reading the body does not change what is sent: still the app’s gzip', async () => {
      const res = await raw('/compressed/read-only/gzip');
      expect(res.headers['x-length-seen']).toBe('41');
      expect(res.headers['content-encoding']).toBe('gzip');
      expect(gunzipSync(res.body).toString()).toBe('<html><a href="/old/page">link</a></html>');
    });

    it('a body that inflates past the limit is refused, not inflated', async () => {
      expect((await request(s.url).get('/compressed/errors/bomb')).body).toEqual({ error: BodyTooLargeError.name });
    });

    it('a deflate (zlib) body that inflates past the limit is refused as too large, not as corrupt', async () => {
      expect((await request(s.url).get('/compressed/errors/deflate-bomb')).body).toEqual({ error: BodyTooLargeError.name });
    });

    it('an encoding it cannot decode is a clear error', async () => {
      expect((await request(s.url).get('/compressed/errors/zstd')).body).toEqual({ error: 'ContentEncodingError' });
    });
  });

  it('applies method, header, body and env overrides', async () => {
    const res = await request(s.url).post('/options/x').set('user-agent', 'test-agent').send('original');
    expect(res.body).toMatchObject({ method: 'PUT', url: '/x', env: { tenant: 'acme' } });
    expect(res.body.headers['x-added']).toBe('yes');
    expect(res.body.headers['user-agent']).toBeUndefined();
    expect(Buffer.from(res.body.bodyHex, 'hex').toString()).toBe('replacement body');
    expect(res.body.headers['content-length']).toBe('16');
  });

  it('takes the framing and the Content-Type off a body replaced by none', async () => {
    const res = await request(s.url).post('/no-body/x').set('content-type', 'application/json').send('{"a":1}');
    expect(res.body.bodyHex).toBe('');
    expect(res.body.headers['content-type']).toBeUndefined();
    expect(res.body.headers['content-length']).toBeUndefined();
    expect(res.body.headers['transfer-encoding']).toBeUndefined();
  });

  it("gives the app headers in an object like Node's own req.headers", async () => {
    const res = await request(s.url).get('/headers-view/x').set('x-probe', '1').set('constructor', 'c').set('cookie', 'a=1');
    expect(res.body).toEqual({ plain: true, hasProbe: true, constructorHeader: 'c', cookie: 'a=1' });
  });

  it('hands fetch apps the env as second argument and the URL at their own root', async () => {
    const res = await request(s.url).get('/fetch-env/a/b?c=1');
    expect(res.body.env).toEqual({ 'trac.env_path': '/srv/a' });
    expect(res.body.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/a\/b\?c=1$/);
  });

  it('sends a GatewayResponse built by hand', async () => {
    const res = await request(s.url).get('/constructed');
    expect(res.status).toBe(201);
    expect(res.headers['x-made']).toBe('here');
    expect(res.text).toBe('built by hand');
  });

  it('sends a GatewayResponse of another copy of the library like its own: whole, with its length', async () => {
    otherCopy = (await import(pathToFileURL(buildPackage()).href)) as typeof import('nest-gateway');
    expect(otherCopy.GatewayResponse).not.toBe(GatewayResponse);
    const res = await send(`${s.url}/constructed-elsewhere`);
    expect(res.status).toBe(200);
    expect(res.headers['x-made']).toBe('elsewhere');
    expect(res.headers['content-length']).toBe(String('built by another copy'.length));
    expect(res.headers['transfer-encoding']).toBeUndefined();
    expect(res.body.toString()).toBe('built by another copy');
  }, 120_000);

  it('captures Express apps without touching shared prototypes, so the host keeps working', async () => {
    const prototypes = [express.request, express.response, http.IncomingMessage.prototype, http.ServerResponse.prototype];
    const before = prototypes.map((p) => [Object.getPrototypeOf(p), Object.getOwnPropertyNames(p).sort().join()]);
    for (let i = 0; i < 3; i++) {
      const captured = await request(s.url).get('/express/query?a=1');
      expect(captured.body).toEqual({ query: { a: '1' } });
      const file = await request(s.url).get('/express/file');
      expect(file.text).toBe('hello from a file\n');
      const redirect = await request(s.url).get('/express/redirect');
      expect(redirect.headers.location).toBe('/express/target');
      const mounted = await request(s.url).get('/mounted-express/query?b=2');
      expect(mounted.body).toEqual({ query: { b: '2' } });
    }
    const after = prototypes.map((p) => [Object.getPrototypeOf(p), Object.getOwnPropertyNames(p).sort().join()]);
    expect(after).toEqual(before);
  });
});

describe('a body too big to read, passed on unchanged', () => {
  const SIZE = 200 * 1024;
  const OUTPUT_SCRIPT = fileURLToPath(new URL('./fixtures/cgi/output.sh', import.meta.url));
  const bigListener = (_req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('content-type', 'application/octet-stream');
    res.end(Buffer.alloc(SIZE, 'b'));
  };
  let upstream: http.Server;
  let proxy: ReturnType<typeof proxyApp>;
  let s: Started;
  beforeAll(async () => {
    upstream = http.createServer(bigListener);
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    proxy = proxyApp(`http://127.0.0.1:${(upstream.address() as { port: number }).port}`);
    const apps: Record<string, GatewayAppLike> = {
      node: bigListener,
      proxy,
      fetch: fetchApp(() => new Response(new Blob([Buffer.alloc(SIZE, 'b')]))),
      cgi: cgiApp(OUTPUT_SCRIPT),
    };

    @Controller('over-limit')
    class OverLimit {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      @Get(':kind/*path')
      async passOn(@Req() req: IncomingMessage & { params: { kind: string } }, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(apps[req.params.kind], req, pathInfo);
        await expect(response.text({ limit: 1000 })).rejects.toBeInstanceOf(BodyTooLargeError);
        return response;
      }

      @Get('destroyed/:kind/*path')
      async destroyed(@Req() req: IncomingMessage & { params: { kind: string } }, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(apps[req.params.kind], req, pathInfo);
        response.body?.destroy();
        return response;
      }
    }
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [OverLimit] });
  });
  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    upstream?.close();
  });

  it.each(['node', 'proxy', 'fetch', 'cgi'])('sends every byte of it when returned after text() refused it (%s)', async (kind) => {
    const res = await send(`${s.url}/over-limit/${kind}/x?a=${SIZE}`);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(SIZE);
  });

  it.each(['node', 'proxy', 'fetch', 'cgi'])('answers 500, not an empty success, for a response whose body was destroyed (%s)', async (kind) => {
    const res = await send(`${s.url}/over-limit/destroyed/${kind}/x`);
    expect(res.status).toBe(500);
  });
});

describe("a caller's signal aborting while a fetch app's body streams", () => {
  let s: Started;
  const cancelled = { count: 0 };
  beforeAll(async () => {
    const slowLines = fetchApp(() => {
      let i = 0;
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            await new Promise((resolve) => setTimeout(resolve, 50));
            if (i++ > 60) controller.close();
            else controller.enqueue(new TextEncoder().encode(`line ${i}\n`));
          },
          cancel() {
            cancelled.count++;
          },
        }),
      );
    });

    @Controller('aborted-stream')
    class AbortedStream {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      @Get('*path')
      async call(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const caller = new AbortController();
        const response = await this.gateway.callApp(slowLines, req, pathInfo, { signal: caller.signal });
        setTimeout(() => caller.abort(), 300);
        return response;
      }
    }
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [AbortedStream] });
  });
  afterAll(() => s?.close());

  it('breaks the body off and cancels the app’s stream, as for the other kinds', async () => {
    const started = Date.now();
    await expect(send(`${s.url}/aborted-stream/x`)).rejects.toThrow();
    // The app would have streamed for 3 s.
    expect(Date.now() - started).toBeLessThan(2000);
    await waitFor(() => cancelled.count === 1, 2000, "the app's stream cancelled");
  });
});
