import { All, Controller, Inject, Req } from '@nestjs/common';
import { GatewayModule, GatewayService, MountGateway, PathInfo, fetchApp } from 'nest-gateway';
import { createHash } from 'node:crypto';
import { request as undiciRequest } from 'undici';
import { BINARY_SHA, responsesListener, shortBinary } from './fixtures/responses.js';
import { startNest, type Started } from './fixtures/start.js';

@MountGateway('mounted', responsesListener)
class MountedResponses {}

@Controller('called')
class CalledResponses {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}
  @All('*path')
  call(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(responsesListener, req, pathInfo);
  }
}

const fetchResponses = fetchApp(async (request) => {
  const path = new URL(request.url).pathname;
  if (path === '/cookies') {
    const headers = new Headers();
    headers.append('set-cookie', 'a=1; Path=/');
    headers.append('set-cookie', 'b=2; Path=/; Secure');
    return new Response('cookies', { headers });
  }
  if (path === '/no-content') return new Response(null, { status: 204 });
  if (path === '/reason') return new Response('custom', { status: 299, statusText: 'Quite Fine Indeed' });
  if (path === '/sized') return new Response('hello world', { headers: { 'content-length': '11', 'content-type': 'text/plain' } });
  return new Response('nope', { status: 404 });
});

@MountGateway('fetched', fetchResponses)
class FetchedResponses {}

describe.each(['mounted', 'called'])('responses through %s Node apps', (kind) => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [MountedResponses, CalledResponses] });
  });
  afterAll(() => s.close());
  const get = (path: string, method: 'GET' | 'HEAD' = 'GET') => undiciRequest(`${s.url}/${kind}${path}`, { method });

  it('keeps Content-Length and sends no body for HEAD', async () => {
    const res = await get('/sized', 'HEAD');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe('11');
    expect(await res.body.text()).toBe('');
  });

  it('passes 204 and 304 without a body', async () => {
    const noContent = await get('/no-content');
    expect(noContent.statusCode).toBe(204);
    expect(noContent.headers['x-kind']).toBe('empty');
    expect(await noContent.body.text()).toBe('');
    const notModified = await get('/not-modified');
    expect(notModified.statusCode).toBe(304);
    expect(notModified.headers.etag).toBe('"v1"');
    expect(await notModified.body.text()).toBe('');
  });

  it('streams a body without Content-Length as chunked', async () => {
    const res = await get('/chunked');
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(await res.body.text()).toBe('one,two,three');
  });

  it('does not double-frame a body the app framed as chunked itself', async () => {
    const res = await get('/explicit-chunked');
    expect(await res.body.text()).toBe('framed by the app');
  });

  it('keeps a custom reason phrase', async () => {
    const res = await new Promise<{ status: number; message: string; body: string }>((resolve, reject) => {
      import('node:http').then(({ get: httpGet }) => {
        httpGet(`${s.url}/${kind}/reason`, (r) => {
          let body = '';
          r.setEncoding('utf8').on('data', (c) => (body += c));
          r.on('end', () => resolve({ status: r.statusCode!, message: r.statusMessage!, body }));
        }).on('error', reject);
      });
    });
    expect(res).toEqual({ status: 299, message: 'Quite Fine Indeed', body: 'custom' });
  });

  it('keeps every Set-Cookie separately', async () => {
    const res = await get('/cookies');
    expect(res.headers['set-cookie']).toEqual([
      'a=1; Path=/; HttpOnly',
      'b=2; Path=/x; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
      'c=3',
    ]);
    await res.body.dump();
  });

  it('passes binary bodies byte for byte', async () => {
    const res = await get('/binary');
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(createHash('sha256').update(body).digest('hex')).toBe(BINARY_SHA);
  });

  it.each([1, 256, 4095, 4096, 4097])('passes a short binary body of %i bytes byte for byte, with its length', async (size) => {
    const res = await get(`/short-binary?size=${size}`);
    expect(res.headers['content-length']).toBe(String(size));
    expect(Buffer.from(await res.body.arrayBuffer()).equals(shortBinary(size))).toBe(true);
    const head = await get(`/short-binary?size=${size}`, 'HEAD');
    expect(head.statusCode).toBe(200);
    expect(await head.body.text()).toBe('');
  });
});

describe('responses through fetch apps', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [FetchedResponses] });
  });
  afterAll(() => s.close());

  it('keeps every Set-Cookie, 204, reason phrases and HEAD semantics', async () => {
    const cookies = await undiciRequest(`${s.url}/fetched/cookies`);
    expect(cookies.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/; Secure']);
    await cookies.body.dump();
    const empty = await undiciRequest(`${s.url}/fetched/no-content`);
    expect(empty.statusCode).toBe(204);
    await empty.body.dump();
    const head = await undiciRequest(`${s.url}/fetched/sized`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe('11');
    expect(await head.body.text()).toBe('');
  });
});
