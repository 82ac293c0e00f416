/**
 * `fastcgiApp` end to end: a real Nest app on a real port, in front of real FastCGI responders
 * (php-fpm, fcgiwrap, uWSGI) started by the test on private Unix sockets. Protocol edge cases
 * (silence, refusals, STDERR floods, a client leaving mid-response) use tiny fake responders
 * written here: test peers that speak the real FastCGI protocol.
 */
import { All, Controller, Inject, Req, type Type } from '@nestjs/common';
import { fastcgiApp, GatewayModule, GatewayService, MountGateway, PathInfo, type FastcgiAppOptions } from 'nest-gateway';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { authenticate, basic } from './fixtures/login.js';
import { startFcgiwrap, startPhpFpm, startUwsgiFastcgi, type Peer } from './fixtures/peers.js';
import { send } from './fixtures/http-client.js';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/fastcgi', import.meta.url));
/** A Status without Content-Type, the CGI suite's fixture: fcgiwrap runs CGI scripts as they are. */
const UNTYPED = fileURLToPath(new URL('./fixtures/cgi/untyped.sh', import.meta.url));
const MiB = 1024 * 1024;

type FcgiApp = ReturnType<typeof fastcgiApp>;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------



/** Streams a response through sha256 without keeping it. */
function hashOf(url: string): Promise<{ status: number; length: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const hash = createHash('sha256');
        let length = 0;
        res.on('data', (c: Buffer) => {
          length += c.length;
          hash.update(c);
        });
        res.on('end', () => resolve({ status: res.statusCode!, length, sha256: hash.digest('hex') }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function stderrLines(s: Started): string[] {
  return s.logger.lines.filter((l) => l.message.includes(' stderr: ')).map((l) => l.message);
}

/** The text a responder wrote to STDERR, as it reached the log (without the tags). */
function loggedStderr(s: Started, marker: string): string {
  return stderrLines(s)
    .map((l) => l.slice(l.indexOf(' stderr: ') + ' stderr: '.length))
    .filter((l) => l.includes(marker))
    .join('');
}

/** Pids whose parent is `pid` (Linux /proc). */
/**
 * fcgiwrap -c N forks workers that outlive a SIGTERM to their parent (peers.ts stops only the
 * parent): the workers this test started are stopped by pid.
 */
async function stopFcgiwrap(wrap: Peer | undefined): Promise<void> {
  const workers = wrap ? await childrenOf(wrap.process.pid!) : [];
  await wrap?.stop();
  for (const pid of workers) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** Builds a Nest app whose mount classes are made once the peers' sockets are known. */
function mountClass(path: string, app: Parameters<typeof MountGateway>[1], options: Parameters<typeof MountGateway>[2] = {}): Type {
  @MountGateway(path, app, options)
  class Mount {}
  return Mount;
}

// ---------------------------------------------------------------------------------------------
// A fake FastCGI responder: the real record layer, behaviour chosen by the test
// ---------------------------------------------------------------------------------------------

const T = { BEGIN: 1, END: 3, PARAMS: 4, STDIN: 5, STDOUT: 6, STDERR: 7 } as const;

function record(type: number, content: Buffer = Buffer.alloc(0), requestId = 1): Buffer {
  const padding = (8 - (content.length % 8)) % 8;
  const header = Buffer.from([1, type, requestId >> 8, requestId & 0xff, content.length >> 8, content.length & 0xff, padding, 0]);
  return Buffer.concat([header, content, Buffer.alloc(padding)]);
}

function endRequest(appStatus: number, protocolStatus: number, requestId = 1): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus, 0);
  body[4] = protocolStatus;
  return record(T.END, body, requestId);
}

function decodeParams(data: Buffer): Record<string, string> {
  const params: Record<string, string> = {};
  let offset = 0;
  const length = () => {
    if (data[offset] & 0x80) {
      const n = data.readUInt32BE(offset) & 0x7fffffff;
      offset += 4;
      return n;
    }
    return data[offset++];
  };
  while (offset < data.length) {
    const n = length();
    const v = length();
    const name = data.toString('latin1', offset, offset + n);
    offset += n;
    params[name] = data.toString('utf8', offset, offset + v);
    offset += v;
  }
  return params;
}

interface FakeCall {
  socket: Socket;
  params: Record<string, string>;
  keepConn: boolean;
  write(buffer: Buffer): void;
  stdout(text: string | Buffer): void;
  end(appStatus?: number, protocolStatus?: number): void;
}

interface FakeResponder {
  socketPath: string;
  connections: number;
  /** Resolves when a connection that carried a request closed; how many closed so far. */
  closedCount(): number;
  stop(): Promise<void>;
}

async function startFakeResponder(onRequest: (call: FakeCall) => void): Promise<FakeResponder> {
  const dir = await mkdtemp(join(tmpdir(), 'nest-gateway-fake-fcgi-'));
  const socketPath = join(dir, 'fake.sock');
  const sockets = new Set<Socket>();
  let connections = 0;
  let closed = 0;
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      closed++;
    });
    let pending = Buffer.alloc(0);
    let params: Buffer[] = [];
    let keepConn = false;
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 8) {
        const length = pending.readUInt16BE(4);
        const total = 8 + length + pending[6];
        if (pending.length < total) break;
        const type = pending[1];
        const content = pending.subarray(8, 8 + length);
        pending = pending.subarray(total);
        if (type === T.BEGIN) {
          keepConn = (content[2] & 1) === 1;
          params = [];
        } else if (type === T.PARAMS && content.length > 0) {
          params.push(Buffer.from(content));
        } else if (type === T.PARAMS) {
          const write = (b: Buffer) => {
            if (!socket.destroyed) socket.write(b);
          };
          onRequest({
            socket,
            params: decodeParams(Buffer.concat(params)),
            keepConn,
            write,
            stdout: (text) => write(record(T.STDOUT, Buffer.from(text))),
            end: (appStatus = 0, protocolStatus = 0) => {
              write(record(T.STDOUT));
              write(endRequest(appStatus, protocolStatus));
              if (!keepConn) socket.end();
            },
          });
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    get connections() {
      return connections;
    },
    closedCount: () => closed,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A counting proxy between the gateway and php-fpm: shows how many connections the pool opens
// ---------------------------------------------------------------------------------------------

interface CountingProxy {
  socketPath: string;
  accepted: number;
  open: number;
  /** Who closed each finished connection first. */
  closes: Array<'gateway' | 'responder'>;
  stop(): Promise<void>;
}

async function startCountingProxy(target: string): Promise<CountingProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'nest-gateway-fcgi-proxy-'));
  const sockets = new Set<Socket>();
  const stats: CountingProxy = {
    socketPath: join(dir, 'proxy.sock'),
    accepted: 0,
    open: 0,
    closes: [],
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
  const server = createServer((down) => {
    stats.accepted++;
    stats.open++;
    const up = connect(target);
    sockets.add(down).add(up);
    let first: 'gateway' | 'responder' | undefined;
    down.pipe(up, { end: false });
    up.pipe(down, { end: false });
    down.on('end', () => {
      first ??= 'gateway';
      up.end();
    });
    up.on('end', () => {
      first ??= 'responder';
      down.end();
    });
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    down.on('close', () => {
      sockets.delete(down);
      stats.open--;
      stats.closes.push(first ?? 'gateway');
      up.destroy();
    });
    up.on('close', () => {
      sockets.delete(up);
      down.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(stats.socketPath, resolve));
  return stats;
}

// ---------------------------------------------------------------------------------------------
// php-fpm with a document root
// ---------------------------------------------------------------------------------------------

describe('fastcgiApp: php-fpm with a document root', () => {
  let fpm: Peer;
  let s: Started;
  const apps: FcgiApp[] = [];
  // Params beyond one PARAMS record (65535 bytes), with characters of 2 and 3 bytes in UTF-8.
  const bigMode = `é€ ${'x'.repeat(40_000)}`;
  const bigExtra = 'y'.repeat(40_000);

  beforeAll(async () => {
    fpm = await startPhpFpm(8);
    const options: FastcgiAppOptions = { documentRoot: FIXTURES, env: { APP_MODE: 'fixed' }, maxConnections: 8 };
    const php = fastcgiApp({ socketPath: fpm.socketPath }, options);
    const capped = fastcgiApp({ socketPath: fpm.socketPath }, { ...options, maxStderrBytes: 500 });
    apps.push(php, capped);

    @Controller('filtered')
    class FilterController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      @All('*path')
      async filter(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(php, req, pathInfo, { remoteUser: 'frank', env: { APP_MODE: 'call' } });
        const seen = await response.json<Record<string, unknown>>();
        response.headers.set('x-filtered', 'yes');
        response.headers.delete('content-length');
        response.setStatus(203, 'Filtered');
        response.body = JSON.stringify({ filtered: true, remote_user: seen.remote_user, script_name: seen.script_name, app_mode: seen.app_mode });
        return response;
      }
    }

    @Controller('passed')
    class PassController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      @All('*path')
      async pass(@Req() req: unknown, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(php, req, pathInfo);
        response.headers.set('x-passed', 'yes');
        return response;
      }
    }

    s = await startNest(
      {
        imports: [GatewayModule.forRoot()],
        controllers: [
          mountClass('fpm', php),
          mountClass('fpm-svc', php, { remoteUser: 'svc-account' }),
          mountClass('fpm-env', php, { env: { APP_MODE: 'mount' } }),
          mountClass('fpm-bigenv', php, { env: { APP_MODE: bigMode, APP_EXTRA: bigExtra } }),
          mountClass('fpm-capped', capped),
          mountClass('fpm-sites/:site', php),
          FilterController,
          PassController,
        ],
      },
      (app) => app.use(authenticate),
    );
  });

  afterAll(async () => {
    await s?.close();
    for (const app of apps) app.close();
    await fpm?.stop();
  });

  it('passes REMOTE_USER and AUTH_TYPE for a mount with remoteUser, none for an anonymous one', async () => {
    const user = await request(s.url).get('/fpm-svc/info.php');
    expect(user.status).toBe(200);
    expect(user.body).toMatchObject({ remote_user: 'svc-account', auth_type: 'Nest', script_name: '/fpm-svc/info.php' });

    const anonymous = await request(s.url).get('/fpm/info.php');
    expect(anonymous.status).toBe(200);
    expect(anonymous.body).toMatchObject({ remote_user: null, auth_type: null });
  });

  it("passes the module's principal (the app's own login) as REMOTE_USER", async () => {
    const res = await request(s.url).get('/fpm/info.php').set('Authorization', basic('alice'));
    expect(res.body).toMatchObject({ remote_user: 'alice', auth_type: 'Nest' });
  });

  it('sends no HTTP_PROXY although the client sent Proxy: (httpoxy)', async () => {
    const res = await request(s.url).get('/fpm/info.php').set('Proxy', 'http://evil.example:8080');
    expect(res.status).toBe(200);
    expect(res.body.http_proxy).toBeNull();
  });

  it('never turns a client-forged Remote-User or X-Remote-User into REMOTE_USER', async () => {
    const anonymous = await request(s.url)
      .get('/fpm/info.php')
      .set('Remote-User', 'mallory')
      .set('X-Remote-User', 'mallory');
    expect(anonymous.body).toMatchObject({ remote_user: null, auth_type: null, http_remote_user: null, http_x_remote_user: null });

    const user = await request(s.url)
      .get('/fpm-svc/info.php')
      .set('Remote-User', 'mallory')
      .set('X-Remote-User', 'mallory');
    expect(user.body).toMatchObject({ remote_user: 'svc-account', http_remote_user: null, http_x_remote_user: null });
  });

  it('hands an urlencoded form to PHP, parsed into $_POST', async () => {
    const res = await request(s.url)
      .post('/fpm/info.php?from=query')
      .type('form')
      .send({ name: 'Zoë', words: 'two words & more', n: '3' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      method: 'POST',
      post: { name: 'Zoë', words: 'two words & more', n: '3' },
      query: { from: 'query' },
      content_type: 'application/x-www-form-urlencoded',
    });
  });

  it('hands a 5 MiB binary body to PHP intact', async () => {
    const body = randomBytes(5 * MiB);
    const res = await request(s.url).put('/fpm/info.php').set('Content-Type', 'application/octet-stream').send(body);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      method: 'PUT',
      body_length: body.length,
      content_length: String(body.length),
      body_sha256: createHash('sha256').update(body).digest('hex'),
    });
  });

  it('gives a chunked body a CONTENT_LENGTH', async () => {
    const chunks = [Buffer.from('first chunk, '), randomBytes(70_000), Buffer.from(' last chunk')];
    const all = Buffer.concat(chunks);
    const res = await send(`${s.url}/fpm/info.php`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: chunks,
      chunkPauseMs: 5,
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toMatchObject({
      content_length: String(all.length),
      body_length: all.length,
      body_sha256: createHash('sha256').update(all).digest('hex'),
    });
  });

  it('splits SCRIPT_NAME and PATH_INFO at the script', async () => {
    const res = await request(s.url).get('/fpm/sub/page.php/extra?x=1');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      page: true,
      script_name: '/fpm/sub/page.php',
      path_info: '/extra',
      query_string: 'x=1',
      query: { x: '1' },
    });
  });

  it('decodes the prefix of a parameterised mount in SCRIPT_NAME, as the script part', async () => {
    const res = await request(s.url).get('/fpm-sites/caf%C3%A9%20x/sub/page.php/extra');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ script_name: '/fpm-sites/café x/sub/page.php', path_info: '/extra' });
  });

  it('runs index.php for a path ending in /', async () => {
    const res = await request(s.url).get('/fpm/');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ index: true, script_name: '/fpm/index.php' });
  });

  it("puts the app's env params, and a mount's env over them, into $_SERVER", async () => {
    expect((await request(s.url).get('/fpm/info.php')).body.app_mode).toBe('fixed');
    expect((await request(s.url).get('/fpm-env/info.php')).body.app_mode).toBe('mount');
  });

  it('sends params too large for one FastCGI record whole, and keeps serving after them', async () => {
    for (let i = 0; i < 3; i++) {
      const big = await request(s.url).get('/fpm-bigenv/info.php');
      expect(big.status).toBe(200);
      // Compared as booleans: a failure would print 40,000 characters.
      expect([big.body.app_mode === bigMode, big.body.app_extra_length]).toEqual([true, bigExtra.length]);
      expect((await request(s.url).get('/fpm/info.php')).body.app_mode).toBe('fixed');
    }
  });

  it('answers 200 concurrent requests with a pool of 8 (all 200)', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, n) => {
        const res = await fetch(`${s.url}/fpm/slow.php?ms=2&n=${n}`);
        return { status: res.status, text: await res.text(), n };
      }),
    );
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    for (const r of results) expect(r.text).toBe(`done ${r.n}`);
  });

  it('passes on the status, every Set-Cookie and other headers that PHP sets', async () => {
    const res = await request(s.url).get('/fpm/headers.php');
    expect(res.status).toBe(201);
    expect(res.text).toBe('created');
    expect(res.headers['x-php']).toBe('yes');
    // Complete with its head: one write, with a length rather than chunked.
    expect(res.headers['content-length']).toBe('7');
    expect(res.headers['transfer-encoding']).toBeUndefined();
    const cookies = res.headers['set-cookie'] as unknown as string[];
    expect(cookies).toHaveLength(3);
    expect(cookies[0]).toMatch(/^first=one; path=\/$/);
    expect(cookies[1]).toMatch(/^second=two; path=\/fpm; HttpOnly$/);
    expect(cookies[2]).toBe('third=three');
  });

  it('passes on a redirect that PHP sends', async () => {
    const res = await request(s.url).get('/fpm/headers.php?to=/fpm/elsewhere.php');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/fpm/elsewhere.php');
    expect((res.headers['set-cookie'] as unknown as string[]).length).toBe(3);
  });

  it('streams a 20 MiB response whole', async () => {
    const block = Buffer.from('0123456789abcdef'.repeat(65536));
    const expected = createHash('sha256');
    for (let i = 0; i < 20; i++) expected.update(block);
    const res = await hashOf(`${s.url}/fpm/big.php?mib=20`);
    expect(res).toEqual({ status: 200, length: 20 * MiB, sha256: expected.digest('hex') });
  });

  it("logs what PHP writes to STDERR (error_log) under the request's tag", async () => {
    const res = await request(s.url).get('/fpm/stderr.php?lines=3');
    expect(res.status).toBe(200);
    await waitFor(() => loggedStderr(s, 'php-stderr-line-2').length > 0, 2000, 'stderr logged');
    const lines = stderrLines(s).filter((l) => l.includes('php-stderr-line-'));
    for (const line of lines) expect(line).toMatch(/^\/fpm \[FastCGI .*\] stderr: /);
    // php-fpm joins the messages of a request with '; ' in one STDERR record.
    const logged = loggedStderr(s, 'php-stderr-line-');
    for (let i = 0; i < 3; i++) expect(logged).toContain(`PHP message: php-stderr-line-${i} ${'x'.repeat(40)}`);
  });

  // BUG (lib/apps/fastcgi-app.ts, onStderr): the cap is checked before a record and the whole
  // record is logged, so one STDERR record (php-fpm sends ~8 KiB of joined messages) overshoots it.
  it('caps the STDERR it logs (maxStderrBytes)', async () => {
    const before = s.logger.lines.length;
    const res = await request(s.url).get('/fpm-capped/stderr.php?lines=200');
    expect(res.status).toBe(200);
    await waitFor(
      () => s.logger.lines.slice(before).some((l) => /more than 500 bytes/.test(l.message)),
      2000,
      'the cap is logged',
    );
    const logged = s.logger.lines
      .slice(before)
      .map((l) => l.message)
      .filter((m) => m.includes('php-stderr-line-'))
      .map((m) => m.slice(m.indexOf(' stderr: ') + ' stderr: '.length))
      .join('');
    expect(logged).toContain('php-stderr-line-0 ');
    expect(logged).not.toContain('php-stderr-line-199 ');
    expect(Buffer.byteLength(logged)).toBeLessThanOrEqual(500);
  });

  it('lets a controller call a fastcgiApp with callApp and filter its response', async () => {
    const res = await request(s.url).get('/filtered/info.php');
    expect(res.status).toBe(203);
    expect(res.headers['x-filtered']).toBe('yes');
    expect(JSON.parse(res.text)).toEqual({
      filtered: true,
      remote_user: 'frank',
      script_name: '/filtered/info.php',
      app_mode: 'call',
    });
  });

  it('lets a controller return a callApp response of a fastcgiApp as is, headers changed', async () => {
    const res = await request(s.url).get('/passed/headers.php');
    expect(res.status).toBe(201);
    expect(res.text).toBe('created');
    expect(res.headers['x-passed']).toBe('yes');
    expect(res.headers['set-cookie']).toHaveLength(3);
  });
});

// ---------------------------------------------------------------------------------------------
// The keep-alive pool, observed through a counting proxy in front of php-fpm
// ---------------------------------------------------------------------------------------------

describe('fastcgiApp: keep-alive pool (php-fpm behind a counting proxy)', () => {
  let fpm: Peer;
  let keep: CountingProxy;
  let idle: CountingProxy;
  let noKeep: CountingProxy;
  let s: Started;
  let keepApp: FcgiApp;
  const apps: FcgiApp[] = [];

  beforeAll(async () => {
    fpm = await startPhpFpm(2);
    keep = await startCountingProxy(fpm.socketPath);
    idle = await startCountingProxy(fpm.socketPath);
    noKeep = await startCountingProxy(fpm.socketPath);
    keepApp = fastcgiApp({ socketPath: keep.socketPath }, { documentRoot: FIXTURES, keepAliveTimeout: 10_000 });
    const idleApp = fastcgiApp({ socketPath: idle.socketPath }, { documentRoot: FIXTURES, keepAliveTimeout: 300 });
    const noKeepApp = fastcgiApp({ socketPath: noKeep.socketPath }, { documentRoot: FIXTURES, keepAliveTimeout: 0 });
    apps.push(keepApp, idleApp, noKeepApp);
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [mountClass('keep', keepApp), mountClass('idle', idleApp), mountClass('nokeep', noKeepApp)],
    });
  });

  afterAll(async () => {
    await s?.close();
    for (const app of apps) app.close();
    await keep?.stop();
    await idle?.stop();
    await noKeep?.stop();
    await fpm?.stop();
  });

  it('reuses one connection for sequential requests when keepAliveTimeout > 0', async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const res = await request(s.url).post('/keep/info.php').type('form').send({ i: String(i) });
      expect(res.status).toBe(200);
      expect(res.body.post).toEqual({ i: String(i) });
      pids.add(res.body.pid);
    }
    expect(keep.accepted).toBe(1);
    expect(keep.open).toBe(1);
    expect(pids.size).toBe(1);
  });

  it('opens a new connection per request when keepAliveTimeout is 0', async () => {
    for (let i = 0; i < 4; i++) expect((await request(s.url).get('/nokeep/info.php')).status).toBe(200);
    expect(noKeep.accepted).toBe(4);
    await waitFor(() => noKeep.open === 0, 2000, 'every connection closed');
    expect(noKeep.closes).toHaveLength(4);
  });

  it('closes an idle connection after keepAliveTimeout, and opens a new one afterwards', async () => {
    expect((await request(s.url).get('/idle/info.php')).status).toBe(200);
    expect((await request(s.url).get('/idle/info.php')).status).toBe(200);
    expect(idle.accepted).toBe(1);
    expect(idle.open).toBe(1);
    await waitFor(() => idle.open === 0, 3000, 'the idle connection closed');
    expect(idle.closes).toEqual(['gateway']);
    expect((await request(s.url).get('/idle/info.php')).status).toBe(200);
    expect(idle.accepted).toBe(2);
  });

  it('keeps serving on a reused connection after a body the script did not read', async () => {
    const before = keep.accepted;
    const ignored = await request(s.url).post('/keep/headers.php').set('Content-Type', 'application/octet-stream').send(randomBytes(MiB));
    expect(ignored.status).toBe(201);
    for (let i = 0; i < 3; i++) {
      const res = await request(s.url).post('/keep/info.php').type('form').send({ after: String(i) });
      expect(res.status).toBe(200);
      expect(res.body.post).toEqual({ after: String(i) });
    }
    expect(keep.accepted - before).toBeLessThanOrEqual(1);
  });

  it('close() closes the idle pooled connections', async () => {
    expect((await request(s.url).get('/keep/info.php')).status).toBe(200);
    expect(keep.open).toBeGreaterThan(0);
    keepApp.close();
    await waitFor(() => keep.open === 0, 2000, 'the pooled connections closed');
    expect(keep.closes.every((c) => c === 'gateway')).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Responders with fewer workers than the pool has connections (a kept-alive connection holds
// its worker; without care, requests on further connections wait in the listen backlog)
// ---------------------------------------------------------------------------------------------

describe('fastcgiApp: responders with fewer workers than maxConnections', () => {
  let fpm: Peer;
  let wrap: Peer;
  let s: Started;
  const apps: FcgiApp[] = [];

  beforeAll(async () => {
    fpm = await startPhpFpm(2);
    wrap = await startFcgiwrap(1);
    // Default pool (16 connections, keep-alive); a request stuck in the backlog would get a 504.
    const php = fastcgiApp({ socketPath: fpm.socketPath }, { documentRoot: FIXTURES, headersTimeout: 5000 });
    const shell = fastcgiApp({ socketPath: wrap.socketPath }, { scriptFilename: join(FIXTURES, 'env.sh'), headersTimeout: 5000 });
    apps.push(php, shell);
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [mountClass('fpm2', php), mountClass('wrap1', shell)] });
  });

  afterAll(async () => {
    await s?.close();
    for (const app of apps) app.close();
    await stopFcgiwrap(wrap);
    await fpm?.stop();
  });

  const wave = (path: (n: number) => string, size: number) =>
    Promise.all(
      Array.from({ length: size }, async (_, n) => {
        const res = await fetch(`${s.url}${path(n)}`);
        return { n, status: res.status, text: await res.text() };
      }),
    );

  it('serves 12 clients in a row each through php-fpm with 2 workers, and says what it learned', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, async (_, client) => {
        const seen: Array<{ status: number; text: string; expected: string }> = [];
        for (let i = 0; i < 4; i++) {
          const res = await fetch(`${s.url}/fpm2/slow.php?ms=10&n=${client}-${i}`);
          seen.push({ status: res.status, text: await res.text(), expected: `done ${client}-${i}` });
        }
        return seen;
      }),
    );
    for (const r of results.flat()) expect(r).toEqual({ status: 200, text: r.expected, expected: r.expected });
    expect(s.logger.lines.map((l) => l.message)).toContainEqual(expect.stringMatching(/has fewer workers than maxConnections \(16\)/));
  });

  it('serves waves of concurrent requests through php-fpm with 2 workers', async () => {
    for (let round = 0; round < 3; round++) {
      const results = await wave((n) => `/fpm2/slow.php?ms=20&n=${round}-${n}`, 12);
      expect(results.filter((r) => r.status !== 200)).toEqual([]);
      for (const r of results) expect(r.text).toBe(`done ${round}-${r.n}`);
    }
  });

  it('serves concurrent requests through fcgiwrap with a single worker', async () => {
    for (let round = 0; round < 3; round++) {
      const results = await wave((n) => `/wrap1/r${round}/${n}`, 4);
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      for (const r of results) expect(r.text).toContain(`PATH_INFO=/r${round}/${r.n}`);
    }
  });
});

describe('fastcgiApp: php-fpm workers that retire (pm.max_requests)', () => {
  let fpm: Peer;
  let s: Started;
  let php: FcgiApp;

  beforeAll(async () => {
    // Each worker exits after 3 requests, closing the kept-alive connection it served.
    fpm = await startPhpFpm(2, ['pm.max_requests = 3']);
    php = fastcgiApp({ socketPath: fpm.socketPath }, { documentRoot: FIXTURES, maxConnections: 2, keepAliveTimeout: 10_000 });
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [mountClass('retiring', php)] });
  });

  afterAll(async () => {
    await s?.close();
    php?.close();
    await fpm?.stop();
  });

  it('answers every GET and POST although pooled connections close after every third request', async () => {
    const failures = await Promise.all(
      Array.from({ length: 4 }, async (_, client) => {
        const failed: string[] = [];
        for (let i = 0; i < 15; i++) {
          const body = i % 2 ? `body ${client}-${i}` : undefined;
          const res = await send(`${s.url}/retiring/info.php?n=${client}-${i}`, {
            method: body ? 'POST' : 'GET',
            headers: body ? { 'content-type': 'text/plain' } : {},
            body,
          });
          const seen = res.status === 200 ? res.json() : undefined;
          if (!seen || seen.body_length !== (body?.length ?? 0)) failed.push(`${client}-${i}: ${res.status}`);
        }
        return failed;
      }),
    );
    expect(failures.flat()).toEqual([]);
    expect(s.logger.errors()).toEqual([]);
  });
});

describe('fastcgiApp: a php-fpm worker that dies while it runs a request', () => {
  let fpm: Peer;
  let s: Started;
  let php: FcgiApp;
  let log: string;

  beforeAll(async () => {
    fpm = await startPhpFpm(1);
    log = join(fpm.dir, 'charges.log');
    php = fastcgiApp(
      { socketPath: fpm.socketPath },
      { documentRoot: FIXTURES, maxConnections: 1, keepAliveTimeout: 10_000, env: { CHARGE_LOG: log } },
    );
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [mountClass('fpm', php)] });
  });

  afterAll(async () => {
    await s?.close();
    php?.close();
    await fpm?.stop();
  });

  const runs = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);

  /** Sends `method` to charge.php on the pooled connection and kills the worker once it runs. */
  async function killedWhileRunning(method: 'GET' | 'POST', before: number) {
    const worker = Number((await send(`${s.url}/fpm/pid.php`)).body.toString());
    const reply = send(`${s.url}/fpm/charge.php?ms=3000`, {
      method,
      headers: method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded' } : {},
      body: method === 'POST' ? 'amount=5' : undefined,
    });
    await waitFor(async () => (await runs()).length > before, 5000, 'the script to run');
    process.kill(worker, 'SIGKILL');
    return reply;
  }

  it('never runs a POST twice: the client gets a 502 (the request was taken, then lost)', async () => {
    const res = await killedWhileRunning('POST', 0);
    expect(res.status).toBe(502);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await runs()).filter((line) => line.startsWith('POST'))).toHaveLength(1);
  });

  it('sends a GET again to a new worker (idempotent), which answers it', async () => {
    const before = (await runs()).length;
    const res = await killedWhileRunning('GET', before);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toMatch(/^charged by \d+$/);
    expect((await runs()).slice(before)).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------------
// fcgiwrap running a shell CGI script
// ---------------------------------------------------------------------------------------------

describe('fastcgiApp: fcgiwrap running a shell script', () => {
  let wrap: Peer;
  let s: Started;
  let app: FcgiApp;
  let untyped: FcgiApp;
  let streamed: FcgiApp;

  const envOf = (text: string) => {
    const [env, body] = text.split('--body--\n');
    const vars: Record<string, string> = {};
    for (const line of env.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return { vars, body };
  };

  beforeAll(async () => {
    wrap = await startFcgiwrap(2);
    app = fastcgiApp({ socketPath: wrap.socketPath }, { scriptFilename: join(FIXTURES, 'env.sh'), env: { APP_MODE: 'wrap' } });
    untyped = fastcgiApp({ socketPath: wrap.socketPath }, { scriptFilename: UNTYPED });
    streamed = fastcgiApp({ socketPath: wrap.socketPath }, { scriptFilename: join(FIXTURES, 'stdin-digest.sh'), unsizedBody: 'stream' });
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [
        mountClass('cgi', app, { remoteUser: 'dave' }),
        mountClass('cgi-anon', app),
        mountClass('cgi-streamed', streamed),
        mountClass('untyped', untyped),
      ],
    });
  });

  afterAll(async () => {
    await s?.close();
    app?.close();
    untyped?.close();
    streamed?.close();
    await stopFcgiwrap(wrap);
  });

  it('passes on a Status with no Content-Type and no body, and answers one with a body with 502', async () => {
    const bare = await send(`${s.url}/untyped/x`);
    expect(bare.status).toBe(403);
    expect(bare.headers['x-reason']).toBe('read-only');
    expect(bare.body.length).toBe(0);
    const withBody = await send(`${s.url}/untyped/x?body`);
    expect(withBody.status).toBe(502);
    expect(withBody.body.toString()).not.toContain('a body with no type');
    expect(s.logger.errors()).toEqual([expect.stringMatching(/body without Content-Type/)]);
  });

  it('runs the script with the CGI variables, the env params and REMOTE_USER', async () => {
    const res = await request(s.url).get('/cgi/some/where?q=1&r=two').set('X-Custom', 'yes');
    expect(res.status).toBe(200);
    expect(res.headers['x-script']).toBe('fcgiwrap-env');
    const { vars } = envOf(res.text);
    expect(vars).toMatchObject({
      REQUEST_METHOD: 'GET',
      SCRIPT_NAME: '/cgi',
      PATH_INFO: '/some/where',
      QUERY_STRING: 'q=1&r=two',
      SCRIPT_FILENAME: join(FIXTURES, 'env.sh'),
      REMOTE_USER: 'dave',
      AUTH_TYPE: 'Nest',
      APP_MODE: 'wrap',
      HTTP_X_CUSTOM: 'yes',
      GATEWAY_INTERFACE: 'CGI/1.1',
    });
  });

  it('sets no REMOTE_USER for an anonymous mount, even with a forged Remote-User', async () => {
    const res = await request(s.url).get('/cgi-anon/x').set('Remote-User', 'mallory');
    const { vars } = envOf(res.text);
    expect(vars.REMOTE_USER).toBeUndefined();
    expect(vars.AUTH_TYPE).toBeUndefined();
    expect(vars.HTTP_REMOTE_USER).toBeUndefined();
    expect(vars.SCRIPT_NAME).toBe('/cgi-anon');
  });

  it("streams a chunked body of any size to the script's stdin with unsizedBody: 'stream', with no CONTENT_LENGTH", async () => {
    const body = randomBytes(12 * 1024 * 1024);
    const chunked = () => Readable.from(Array.from({ length: 48 }, (_, i) => body.subarray(i * 256 * 1024, (i + 1) * 256 * 1024)));
    const headers = { 'Content-Type': 'application/octet-stream' };
    // A Readable goes out chunked, with no Content-Length.
    const res = await send(`${s.url}/cgi-streamed/post`, { method: 'POST', headers, body: chunked() });
    expect(res.status).toBe(200);
    const sha256 = createHash('sha256').update(body).digest('hex');
    expect(res.body.toString()).toBe(`none application/octet-stream ${sha256}\n`);
    // Buffered (the default), the same body is over maxBufferedBody (10 MiB).
    expect((await send(`${s.url}/cgi/post`, { method: 'POST', headers, body: chunked() })).status).toBe(413);
  });

  it("hands the request body to the script's stdin", async () => {
    const body = 'line one\nline two with ümlauts\n' + 'z'.repeat(100_000);
    const res = await request(s.url).post('/cgi/post').set('Content-Type', 'text/plain').send(body);
    expect(res.status).toBe(200);
    const { vars, body: echoed } = envOf(res.text);
    expect(vars.CONTENT_LENGTH).toBe(String(Buffer.byteLength(body)));
    expect(vars.CONTENT_TYPE).toBe('text/plain');
    expect(echoed).toBe(body);
  });
});

// ---------------------------------------------------------------------------------------------
// uWSGI in FastCGI mode serving a Flask app
// ---------------------------------------------------------------------------------------------

describe('fastcgiApp: uWSGI (FastCGI mode) serving a Flask app', () => {
  let uwsgi: Peer;
  let s: Started;
  let app: FcgiApp;

  beforeAll(async () => {
    uwsgi = await startUwsgiFastcgi(join(FIXTURES, 'wsgi_app.py'));
    app = fastcgiApp({ socketPath: uwsgi.socketPath }, { env: { APP_MODE: 'uwsgi' } });
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [mountClass('py', app, { remoteUser: 'erin' }), mountClass('py-anon', app)],
    });
  });

  afterAll(async () => {
    await s?.close();
    app?.close();
    await uwsgi?.stop();
  });

  it('sees SCRIPT_NAME, PATH_INFO and REMOTE_USER, and builds URLs under the prefix', async () => {
    const res = await request(s.url).get('/py/hello/world');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      name: 'world',
      script_name: '/py',
      path_info: '/hello/world',
      remote_user: 'erin',
      auth_type: 'Nest',
      app_mode: 'uwsgi',
      built_url: '/py/hello/again',
    });
    expect(res.body.external_url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/py\/hello\/again$/);
  });

  it('sets no REMOTE_USER for an anonymous mount', async () => {
    const res = await request(s.url).get('/py-anon/hello/x').set('Remote-User', 'mallory');
    expect(res.body).toMatchObject({ remote_user: null, script_name: '/py-anon', built_url: '/py-anon/hello/again' });
  });

  it('redirects to a URL under the prefix and receives a POST body', async () => {
    const redirect = await request(s.url).get('/py/go');
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toMatch(/\/py\/hello\/redirected$/);

    const post = await request(s.url).post('/py/echo').set('Content-Type', 'text/plain').send('hello flask');
    expect(post.body).toEqual({ body: 'hello flask', remote_user: 'erin' });
  });
});

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

describe('fastcgiApp: failures', () => {
  let fpm: Peer;
  let dir: string;
  let silent: FakeResponder;
  let overloaded: FakeResponder;
  let unknownRole: FakeResponder;
  let streaming: FakeResponder;
  let chatty: FakeResponder;
  let refusedPort: number;
  let s: Started;
  const apps: FcgiApp[] = [];
  const app = (address: Parameters<typeof fastcgiApp>[0], options: FastcgiAppOptions = {}) => {
    const a = fastcgiApp(address, options);
    apps.push(a);
    return a;
  };

  beforeAll(async () => {
    fpm = await startPhpFpm(2);
    dir = await mkdtemp(join(tmpdir(), 'nest-gateway-fcgi-failures-'));
    silent = await startFakeResponder(() => undefined);
    overloaded = await startFakeResponder((call) => call.end(0, 2));
    unknownRole = await startFakeResponder((call) => call.end(0, 3));
    streaming = await startFakeResponder((call) => {
      call.stdout('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n');
      const timer = setInterval(() => call.stdout('x'.repeat(1024)), 10);
      call.socket.once('close', () => clearInterval(timer));
    });
    chatty = await startFakeResponder((call) => {
      call.write(record(T.STDERR, Buffer.from(`fake-stderr ${'e'.repeat(10_000)}\n`)));
      call.write(record(T.STDERR, Buffer.from(`fake-stderr second record\n`)));
      call.stdout('Content-Type: text/plain\r\n\r\nfine');
      call.end();
    });
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    refusedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const php = { documentRoot: FIXTURES };
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [
        mountClass('nobody', app({ socketPath: join(dir, 'nobody.sock') }, php)),
        mountClass('failover', app([{ host: '127.0.0.1', port: refusedPort }, { socketPath: fpm.socketPath }], php)),
        mountClass('silent', app({ socketPath: silent.socketPath }, { scriptFilename: '/x', headersTimeout: 300 })),
        mountClass('overloaded', app({ socketPath: overloaded.socketPath }, { scriptFilename: '/x' })),
        mountClass('unknown-role', app({ socketPath: unknownRole.socketPath }, { scriptFilename: '/x' })),
        mountClass('streaming', app({ socketPath: streaming.socketPath }, { scriptFilename: '/x' })),
        mountClass('chatty', app({ socketPath: chatty.socketPath }, { scriptFilename: '/x', maxStderrBytes: 1000 })),
      ],
    });
  });

  afterAll(async () => {
    await s?.close();
    for (const a of apps) a.close();
    for (const fake of [silent, overloaded, unknownRole, streaming, chatty]) await fake?.stop();
    await fpm?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers 502 and logs it when nothing listens on the socket', async () => {
    const res = await request(s.url).get('/nobody/info.php');
    expect(res.status).toBe(502);
    expect(s.logger.errors().some((m) => m.includes('/nobody') && m.includes('nobody.sock'))).toBe(true);
  });

  it('serves every request from the second address when the first refuses connections', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await request(s.url).get(`/failover/info.php?i=${i}`);
      expect(res.status).toBe(200);
      expect(res.body.query).toEqual({ i: String(i) });
    }
  });

  it('answers 504 after headersTimeout when the responder stays silent, and closes its connection', async () => {
    const closedBefore = silent.closedCount();
    const res = await request(s.url).get('/silent/x');
    expect(res.status).toBe(504);
    expect(silent.connections).toBeGreaterThan(0);
    await waitFor(() => silent.closedCount() > closedBefore, 2000, 'the silent responder sees its connection close');
    expect(s.logger.lines.some((l) => l.message.includes('/silent') && /no headers within 300 ms/.test(l.message))).toBe(true);
  });

  it('answers 503 when the responder ends the request with OVERLOADED', async () => {
    const res = await request(s.url).get('/overloaded/x');
    expect(res.status).toBe(503);
  });

  it('answers 502 when the responder ends the request with UNKNOWN_ROLE', async () => {
    const res = await request(s.url).get('/unknown-role/x');
    expect(res.status).toBe(502);
  });

  it('destroys the FastCGI connection when the client disconnects mid-response', async () => {
    const closedBefore = streaming.closedCount();
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.get(`${s.url}/streaming/x`, { agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (bytes > 4096) {
            req.destroy();
            resolve(bytes);
          }
        });
      });
      req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    });
    expect(got).toBeGreaterThan(4096);
    await within(
      waitFor(() => streaming.closedCount() > closedBefore, 3000, 'the responder sees its connection close'),
      4000,
      'close',
    );
  });

  // BUG (lib/apps/fastcgi-app.ts, onStderr): a single 10 kB STDERR record is logged whole
  // although maxStderrBytes is 1000.
  it('logs STDERR records of a responder, capped at maxStderrBytes', async () => {
    const before = s.logger.lines.length;
    const res = await request(s.url).get('/chatty/x');
    expect(res.status).toBe(200);
    expect(res.text).toBe('fine');
    const mine = s.logger.lines.slice(before).map((l) => l.message);
    expect(mine.some((m) => m.includes('/chatty') && m.includes('stderr: fake-stderr'))).toBe(true);
    expect(mine.some((m) => /more than 1000 bytes/.test(m))).toBe(true);
    expect(mine.some((m) => m.includes('fake-stderr second record'))).toBe(false);
    const logged = mine
      .filter((m) => m.includes(' stderr: fake-stderr'))
      .map((m) => m.slice(m.indexOf(' stderr: ') + ' stderr: '.length))
      .join('');
    expect(logged.length).toBeLessThanOrEqual(1000);
  });
});
