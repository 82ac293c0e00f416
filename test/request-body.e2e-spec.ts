/**
 * Request bodies reach inner apps byte-identical: through `@MountGateway` mounts and through
 * `GatewayService.callApp()` from an ordinary controller, for a Node listener and a fetch app,
 * with Nest's default body parsers (json, urlencoded) switched on.
 */
import { All, Body, Controller, Inject, Post, Req } from '@nestjs/common';
import { fetchApp, GatewayModule, GatewayService, MountGateway, PathInfo } from 'nest-gateway';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { hashingListener } from './fixtures/apps.js';
import { send } from './fixtures/http-client.js';
import { startNest, type Started } from './fixtures/start.js';

// ---------------------------------------------------------------------------------------------
// Inner apps
// ---------------------------------------------------------------------------------------------

interface BodyReport {
  app: 'node' | 'fetch';
  method: string;
  contentType: string | null;
  contentLength: string | null;
  transferEncoding: string | null;
  length: number;
  sha256: string;
  hex?: string;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function report(app: BodyReport['app'], method: string, header: (name: string) => string | null, body: Buffer): BodyReport {
  return {
    app,
    method,
    contentType: header('content-type'),
    contentLength: header('content-length'),
    transferEncoding: header('transfer-encoding'),
    length: body.length,
    sha256: sha256(body),
    hex: body.length <= 4096 ? body.toString('hex') : undefined,
  };
}

/** Node listener: reads the whole body and reports its length and hash. */
function nodeHasher(req: IncomingMessage, res: ServerResponse) {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(report('node', req.method!, (name) => (req.headers[name] as string | undefined) ?? null, Buffer.concat(chunks))));
  });
}

/** Plain fetch handler doing the same. */
const fetchHasher = fetchApp(async (request: Request) => {
  const body = Buffer.from(await request.arrayBuffer());
  return Response.json(report('fetch', request.method, (name) => request.headers.get(name), body));
});

// ---------------------------------------------------------------------------------------------
// Nest side
// ---------------------------------------------------------------------------------------------

@MountGateway('mount-node', nodeHasher)
class NodeMount {}

@MountGateway('mount-fetch', fetchHasher)
class FetchMount {}

@MountGateway('count', hashingListener)
class CountMount {}

@Controller()
class CallController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All('call-node/*path')
  callNode(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(nodeHasher, req, pathInfo);
  }

  @All('call-fetch/*path')
  callFetch(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(fetchHasher, req, pathInfo);
  }

  /** An ordinary route whose JSON body Nest's parser reads first; the app gets it afterwards. */
  @Post('parsed')
  async parsed(@Req() req: IncomingMessage & { body?: unknown }) {
    const parsedByNest = req.body;
    const response = await this.gateway.callApp(nodeHasher, req, '');
    return { parsedByNest, app: await response.json<BodyReport>() };
  }

  /** Hands the same request to two apps in turn. */
  @Post('twice')
  async twice(@Req() req: IncomingMessage) {
    const first = await this.gateway.callApp(nodeHasher, req, '');
    const firstReport = await first.json<BodyReport>();
    const second = await this.gateway.callApp(fetchHasher, req, '');
    const secondReport = await second.json<BodyReport>();
    return { first: firstReport, second: secondReport };
  }
}

/** Reads the raw request stream itself before handing the request on. */
@Controller()
class ConsumingController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @Post('consumed/*path')
  async consumed(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    for await (const _chunk of req) {
      // drain
    }
    return this.gateway.callApp(nodeHasher, req, pathInfo);
  }
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

const BOUNDARY = '----nest-gateway-test-boundary-7MA4YWxkTrZu0gW';
const MULTIPART_FILE = randomBytes(3000);
const MULTIPART = Buffer.concat([
  Buffer.from(
    `--${BOUNDARY}\r\n` +
      'Content-Disposition: form-data; name="title"\r\n\r\n' +
      'héllo wörld\r\n' +
      `--${BOUNDARY}\r\n` +
      'Content-Disposition: form-data; name="file"; filename="blob.bin"\r\n' +
      'Content-Type: application/octet-stream\r\n\r\n',
  ),
  MULTIPART_FILE,
  Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
]);

/** Duplicate keys and a number beyond double precision: any re-serialisation changes the bytes. */
const TRICKY_JSON = '{"a":1,"a":12345678901234567890123}';

interface BodyCase {
  name: string;
  contentType?: string;
  /** Bytes to send; `chunked` sends them as a stream without Content-Length. */
  bytes: Buffer;
  chunked?: boolean;
}

const CASES: BodyCase[] = [
  { name: 'JSON with duplicate keys and big numbers', contentType: 'application/json', bytes: Buffer.from(TRICKY_JSON) },
  {
    name: 'urlencoded',
    contentType: 'application/x-www-form-urlencoded',
    bytes: Buffer.from('b=2&a=1&a=%C3%A9&empty=&plus=a+b&raw=%zz'),
  },
  { name: 'text/plain', contentType: 'text/plain; charset=utf-8', bytes: Buffer.from('line one\r\nline twö\n\u0000end') },
  { name: 'multipart/form-data', contentType: `multipart/form-data; boundary=${BOUNDARY}`, bytes: MULTIPART },
  { name: 'binary', contentType: 'application/octet-stream', bytes: randomBytes(64 * 1024 + 7) },
  {
    name: 'chunked JSON without Content-Length',
    contentType: 'application/json',
    bytes: Buffer.from(JSON.stringify({ items: Array.from({ length: 500 }, (_, i) => ({ i, s: 'x'.repeat(i % 17) })) }).replace(/,/g, ' ,')),
    chunked: true,
  },
  { name: 'empty POST', bytes: Buffer.alloc(0) },
];

/** A stream that hands out `bytes` in small pieces, one per tick, so the request is truly chunked. */
function trickle(bytes: Buffer, pieceSize = 1000): Readable {
  let offset = 0;
  return new Readable({
    read() {
      setImmediate(() => {
        if (offset >= bytes.length) return void this.push(null);
        this.push(bytes.subarray(offset, offset + pieceSize));
        offset += pieceSize;
      });
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('request bodies (default replay limit)', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [NodeMount, FetchMount, CountMount, CallController],
    });
  });
  afterAll(() => s.close());

  const TARGETS = [
    { name: '@MountGateway → Node listener', path: '/mount-node/in/here', app: 'node' },
    { name: '@MountGateway → fetch app', path: '/mount-fetch/in/here', app: 'fetch' },
    { name: 'callApp → Node listener', path: '/call-node/in/here', app: 'node' },
    { name: 'callApp → fetch app', path: '/call-fetch/in/here', app: 'fetch' },
  ] as const;

  describe.each(TARGETS)('$name', (target) => {
    it.each(CASES)('delivers $name byte-identical', async (bodyCase) => {
      const headers: Record<string, string> = {};
      if (bodyCase.contentType) headers['content-type'] = bodyCase.contentType;
      const res = await send(`${s.url}${target.path}`, {
        method: 'POST',
        headers,
        body: bodyCase.chunked ? trickle(bodyCase.bytes) : bodyCase.bytes,
      });

      expect(res.status).toBe(200);
      const got = res.json<BodyReport>();
      expect(got.app).toBe(target.app);
      expect(got.method).toBe('POST');
      expect(got.contentType).toBe(bodyCase.contentType ?? null);
      expect(got.length).toBe(bodyCase.bytes.length);
      expect(got.sha256).toBe(sha256(bodyCase.bytes));
      if (bodyCase.bytes.length <= 4096) expect(got.hex).toBe(bodyCase.bytes.toString('hex'));
      if (bodyCase.chunked && target.app === 'node') {
        // The request really went out chunked, and the app sees it as such.
        expect(got.contentLength).toBeNull();
        expect(got.transferEncoding).toBe('chunked');
      }
    });
  });

  it('keeps body parsers off mounts: a 2 MB JSON body (over the 100kb limit) reaches the app intact', async () => {
    const big = Buffer.from(JSON.stringify({ data: randomBytes(768 * 1024).toString('base64') }));
    const padded = Buffer.concat([big, Buffer.alloc(2 * 1024 * 1024 - big.length, ' ')]);
    expect(padded.length).toBe(2 * 1024 * 1024);

    for (const path of ['/mount-node/big', '/mount-fetch/big']) {
      const res = await send(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: padded });
      expect(res.status).toBe(200);
      const got = res.json<BodyReport>();
      expect(got.contentType).toBe('application/json');
      expect(got.length).toBe(padded.length);
      expect(got.sha256).toBe(sha256(padded));
    }
  });

  it('streams a 100 MiB upload to a mounted Node app without buffering it', async () => {
    const total = 100 * 1024 * 1024;
    const chunkSize = 64 * 1024;
    const sentHash = createHash('sha256');
    let produced = 0;
    const upload = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(chunkSize, total - produced)));
        produced += chunk.length;
        sentHash.update(chunk);
        this.push(chunk);
      },
    });

    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    try {
      const res = await send(`${s.url}/count/upload`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(total) },
        body: upload,
      });
      peak = Math.max(peak, process.memoryUsage().rss);
      expect(res.status).toBe(200);
      expect(res.json<{ length: number; sha256: string }>()).toEqual({ length: total, sha256: sentHash.digest('hex') });
    } finally {
      clearInterval(sampler);
    }
    const growthMiB = (peak - baseline) / (1024 * 1024);
    expect(growthMiB).toBeLessThan(64);
  }, 60_000);

  it('replays the same JSON body to two apps called from one handler', async () => {
    const body = Buffer.from(TRICKY_JSON);
    const res = await send(`${s.url}/twice`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(201);
    const { first, second } = res.json<{ first: BodyReport; second: BodyReport }>();
    expect(first.app).toBe('node');
    expect(second.app).toBe('fetch');
    expect(first.hex).toBe(body.toString('hex'));
    expect(second.hex).toBe(body.toString('hex'));
  });

  it('replays a body no parser read (octet-stream): the first app streams it, the second gets the recording', async () => {
    const body = randomBytes(10_000);
    const res = await send(`${s.url}/twice`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body,
    });
    expect(res.status).toBe(201);
    const { first, second } = res.json<{ first: BodyReport; second: BodyReport }>();
    expect(first.sha256).toBe(sha256(body));
    expect(second.sha256).toBe(sha256(body));
    expect(first.length).toBe(body.length);
    expect(second.length).toBe(body.length);
  });

  it('delivers a JSON body that body-parser already parsed for a controller route byte-identical (replay)', async () => {
    const body = Buffer.from(`  ${TRICKY_JSON}\n`);
    const res = await send(`${s.url}/parsed`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(201);
    const { parsedByNest, app } = res.json<{ parsedByNest: unknown; app: BodyReport }>();
    // body-parser did read the stream (last duplicate wins, the big number lost precision)...
    expect(parsedByNest).toEqual({ a: 12345678901234567890123 });
    // ...and the app still got the client's exact bytes.
    expect(app.hex).toBe(body.toString('hex'));
  });
});

describe('request bodies (bodyReplayLimit: 0)', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({
      imports: [GatewayModule.forRoot({ bodyReplayLimit: 0 })],
      controllers: [ConsumingController],
    });
  });
  afterAll(() => s.close());

  it('answers 500 (not a hang) when the handler consumed the body before callApp, and logs why', async () => {
    const res = await send(`${s.url}/consumed/x`, {
        method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: randomBytes(5000),
    });
    expect(res.status).toBe(500);
    expect(s.logger.errors().some((line) => /consumed/i.test(line))).toBe(true);
  }, 10_000);
});

/** A Nest route that takes over one path under a mount (the app is being replaced route by route). */
@Controller('legacy')
class ReplacementController {
  @Post('new')
  create(@Body() body: unknown) {
    return { nest: body };
  }
}

@MountGateway('legacy', nodeHasher)
class LegacyMount {}

describe('a Nest route under a mount prefix, registered before the mount', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [ReplacementController, LegacyMount] });
  });
  afterAll(() => s.close());

  it("gets its JSON body parsed by Nest's body parser", async () => {
    const res = await send(`${s.url}/legacy/new`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'x' }),
    });
    expect(res.status).toBe(201);
    expect(res.json()).toEqual({ nest: { title: 'x' } });
  });

  it('leaves the bodies of the other paths and methods to the mounted app, unparsed', async () => {
    // Over body-parser's 100 kB limit: a parser that read it would answer 413.
    const body = JSON.stringify({ title: 'y'.repeat(200_000) });
    for (const [method, path] of [['POST', '/legacy/old'], ['PUT', '/legacy/new'], ['POST', '/legacy']]) {
      const res = await send(`${s.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(200);
      expect(res.json()).toMatchObject({ app: 'node', method, contentType: 'application/json', length: body.length });
    }
  });
});
