/**
 * `cgiApp` end to end: real CGI scripts (test/fixtures/cgi) run behind `@MountGateway` and
 * `GatewayService.callApp` in a real Nest app, asserted over real HTTP as a user sees them.
 *
 * Fixtures: vars.py (JSON of its exec'd environment, argv, cwd, body), respond.py (a valid or
 * broken response picked by PATH_INFO), lifecycle.sh (records its pid and a background child's
 * pid, then hangs, idles, chatters or finishes), queue.sh (waits for a go file), args.sh,
 * stderr.sh, untyped.sh (a Status without Content-Type), interpreted.sh (not executable).
 *
 * Each describe block boots its own Nest app; Nest routes every `Logger` to the most recently
 * created app's logger, so the blocks must not overlap (they don't: jest runs them in order).
 */
import { All, Body, Controller, Inject, Post, Req } from '@nestjs/common';
import { cgiApp, GatewayModule, GatewayService, MountGateway, PathInfo } from 'nest-gateway';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { authenticate, basic } from './fixtures/login.js';
import { startNest, type Started } from './fixtures/start.js';
import { expectGone, isAlive, recordedPids, waitFor, within } from './fixtures/waiting.js';

// A secret of the Nest process that no script may see. Set before any cgiApp is created.
process.env.SECRET_TOKEN = 'do-not-leak';

const FIXTURES = realpathSync(fileURLToPath(new URL('./fixtures/cgi', import.meta.url)));
const VARS = join(FIXTURES, 'vars.py');
const RESPOND = join(FIXTURES, 'respond.py');
const LIFECYCLE = join(FIXTURES, 'lifecycle.sh');
const QUEUE = join(FIXTURES, 'queue.sh');
const ARGS = join(FIXTURES, 'args.sh');
const STDERR = join(FIXTURES, 'stderr.sh');
const INTERPRETED = join(FIXTURES, 'interpreted.sh');
const UNTYPED = join(FIXTURES, 'untyped.sh');

/** Scratch directory shared with the scripts (FIXTURE_DIR): pid files, go files, logs. */
const WORK = realpathSync(mkdtempSync(join(tmpdir(), 'nest-gateway-cgi-spec-')));
const FIXTURE_ENV = { FIXTURE_DIR: WORK };

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface Reply {
  status: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
  /** False when the connection broke before the body was complete. */
  complete: boolean;
  /** The client's port, as the server saw it (REMOTE_PORT). */
  localPort: number | undefined;
}

interface SendOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  /** A Buffer/string is sent with Content-Length; an array is sent chunked, one write each. */
  body?: Buffer | string | Array<Buffer | string>;
  /** Called with every body chunk as it arrives. */
  onData?: (chunk: Buffer, req: http.ClientRequest) => void;
  /** Called once the request is sent and its socket known. */
  onRequest?: (req: http.ClientRequest) => void;
}

/** One request on its own connection; resolves when the response ends or breaks. */
function send(url: string, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...options.headers };
    const body = options.body;
    if (body !== undefined && !Array.isArray(body)) headers['content-length'] = String(Buffer.byteLength(body));
    // The path goes out exactly as written (http.request(url) would normalise `..` away).
    const { host, port, path } = /^http:\/\/(?<host>[^/:]+):(?<port>\d+)(?<path>.*)$/.exec(url)!.groups!;
    const req = http.request({ host, port, path: path || '/', method: options.method ?? 'GET', headers, agent: false });
    let localPort: number | undefined;
    let responded = false;
    req.on('socket', (socket) => {
      const remember = () => (localPort = socket.localPort);
      if (socket.localPort) remember();
      else socket.once('connect', remember);
    });
    req.on('error', (error) => {
      if (!responded) reject(error);
    });
    req.on('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        options.onData?.(chunk, req);
      });
      res.on('error', () => undefined); // 'aborted': reported as complete === false
      res.on('close', () => {
        const all = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          rawHeaders: res.rawHeaders,
          statusMessage: res.statusMessage ?? '',
          headers: res.headers,
          body: all,
          text: all.toString('utf8'),
          complete: res.complete,
          localPort,
        });
      });
    });
    options.onRequest?.(req);
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

interface VarsReport {
  env: Record<string, string>;
  argv: string[];
  cwd: string;
  pid: number;
  bodyLength: number;
  bodySha256: string;
  body: string | null;
}

async function vars(url: string, options?: SendOptions): Promise<VarsReport> {
  const reply = await send(url, options);
  if (reply.status !== 200) throw new Error(`expected 200 from ${url}, got ${reply.status}: ${reply.text}`);
  return JSON.parse(reply.text) as VarsReport;
}

/**
 * Sends a request byte for byte (every header line exactly as given) on a raw socket, with
 * `Connection: close` unless the lines set Connection; returns status and de-chunked body.
 */
function rawRequest(url: string, lines: string[]): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const all = Buffer.concat(chunks).toString('latin1');
      const end = all.indexOf('\r\n\r\n');
      const head = all.slice(0, end);
      let body = all.slice(end + 4);
      if (/^transfer-encoding:\s*chunked/im.test(head)) {
        let decoded = '';
        for (;;) {
          const eol = body.indexOf('\r\n');
          const size = parseInt(body.slice(0, eol), 16);
          if (!size) break;
          decoded += body.slice(eol + 2, eol + 2 + size);
          body = body.slice(eol + 2 + size + 2);
        }
        body = decoded;
      }
      resolve({ status: Number(head.split(' ')[1]), body: Buffer.from(body, 'latin1').toString('utf8') });
    });
    const hasConnection = lines.some((l) => /^connection:/i.test(l));
    socket.write([...lines, ...(hasConnection ? [] : ['Connection: close']), '', ''].join('\r\n'));
  });
}




/** The pids lifecycle.sh recorded for a test id: [script, background child]. */
const pidsOf = (id: string) => recordedPids(WORK, id);

let nextId = 0;
const newId = (label: string) => `${label}-${++nextId}`;
const go = (id: string) => writeFileSync(join(WORK, `${id}.go`), '');
const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

/** Log lines after `from`, of a level. */
function linesSince(s: Started, from: number, level?: string): string[] {
  return s.logger.lines.slice(from).filter((l) => !level || l.level === level).map((l) => l.message);
}

afterAll(() => {
  // Safety net only (tests assert the groups are gone): no child outlives the suite.
  for (const file of readdirSync(WORK).filter((f) => f.endsWith('.pids'))) {
    for (const pid of readFileSync(join(WORK, file), 'utf8').trim().split(' ').map(Number)) {
      if (isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
  }
  rmSync(WORK, { recursive: true, force: true });
  delete process.env.SECRET_TOKEN;
});

/** Variables a script may get besides HTTP_*: the RFC 3875 set, a few common extras, the inherited ones. */
const KNOWN_VARIABLES = new Set([
  'AUTH_TYPE', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'GATEWAY_INTERFACE', 'PATH_INFO', 'PATH_TRANSLATED',
  'QUERY_STRING', 'REMOTE_ADDR', 'REMOTE_HOST', 'REMOTE_IDENT', 'REMOTE_USER', 'REQUEST_METHOD',
  'SCRIPT_NAME', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'SERVER_SOFTWARE',
  'SCRIPT_FILENAME', 'REQUEST_URI', 'REMOTE_PORT', 'DOCUMENT_ROOT', 'DOCUMENT_URI', 'SERVER_ADDR',
  'REQUEST_SCHEME', 'HTTPS', 'REDIRECT_STATUS',
  'PATH', 'LANG', 'LC_ALL', 'TZ',
]);

// ---------------------------------------------------------------------------------------------
// Meta-variables and environment
// ---------------------------------------------------------------------------------------------

@MountGateway('cgi', cgiApp(VARS, { documentRoot: '/srv/docs' }))
class VarsMount {}

@MountGateway('tenants/:tenant/cgi', cgiApp(VARS))
class TenantMount {}

@MountGateway('service', cgiApp(VARS), { remoteUser: 'svc-account' })
class ServiceMount {}

@MountGateway('with-auth', cgiApp(VARS, { passAuthorization: true }))
class PassAuthorizationMount {}

@MountGateway('inherit', cgiApp(VARS, { inheritEnv: ['SECRET_TOKEN'] }))
class InheritMount {}

@MountGateway(
  'fixed',
  cgiApp(VARS, {
    env: { SERVER_NAME: 'wiki.example.org', APP_MODE: 'app', APP_ONLY: 'yes', HTTP_USER_AGENT: undefined, SCRIPT_FILENAME: undefined },
  }),
  { env: { APP_MODE: 'mount', MOUNT_ONLY: 1 } },
)
class FixedEnvMount {}

describe('cgiApp: meta-variables', () => {
  let s: Started;
  let port: string;
  beforeAll(async () => {
    s = await startNest(
      {
        imports: [GatewayModule.forRoot()],
        controllers: [VarsMount, TenantMount, ServiceMount, PassAuthorizationMount, InheritMount, FixedEnvMount],
      },
      (app) => app.use(authenticate),
    );
    port = new URL(s.url).port;
  });
  afterAll(() => s.close());

  it('sets the RFC 3875 meta-variables from the request and the real server', async () => {
    const reply = await send(`${s.url}/cgi/docs/a%20b?x=1&y=%20z`, { headers: { 'user-agent': 'cgi-test' } });
    expect(reply.status).toBe(200);
    const { env } = JSON.parse(reply.text) as VarsReport;
    expect(env).toMatchObject({
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_NAME: '127.0.0.1',
      SERVER_PORT: port,
      SERVER_PROTOCOL: 'HTTP/1.1',
      REQUEST_METHOD: 'GET',
      QUERY_STRING: 'x=1&y=%20z',
      SCRIPT_NAME: '/cgi',
      PATH_INFO: '/docs/a b',
      PATH_TRANSLATED: '/srv/docs/docs/a b',
      SCRIPT_FILENAME: VARS,
      REQUEST_URI: '/cgi/docs/a%20b?x=1&y=%20z',
      REMOTE_ADDR: '127.0.0.1',
      REMOTE_PORT: String(reply.localPort),
      HTTP_USER_AGENT: 'cgi-test',
      HTTP_HOST: `127.0.0.1:${port}`,
    });
    expect(env.SERVER_SOFTWARE).toMatch(/^nest-gateway/);
    expect(env).not.toHaveProperty('CONTENT_LENGTH');
    expect(env).not.toHaveProperty('CONTENT_TYPE');
    expect(env).not.toHaveProperty('REMOTE_USER');
    expect(env).not.toHaveProperty('AUTH_TYPE');
  });

  it.each([
    ['/cgi', '/cgi', ''],
    ['/cgi/', '/cgi', '/'],
    ['/cgi?', '/cgi', ''],
    ['/cgi/page', '/cgi', '/page'],
    ['/tenants/acme/cgi', '/tenants/acme/cgi', ''],
    ['/tenants/acme/cgi/', '/tenants/acme/cgi', '/'],
    ['/tenants/acme/cgi/page/2', '/tenants/acme/cgi', '/page/2'],
  ])('GET %s: SCRIPT_NAME %s (no trailing slash), PATH_INFO %j, QUERY_STRING always set', async (path, scriptName, pathInfo) => {
    const { env } = await vars(s.url + path);
    expect(env.SCRIPT_NAME).toBe(scriptName);
    expect(env.PATH_INFO).toBe(pathInfo);
    expect(env.QUERY_STRING).toBe('');
  });

  it('leaves PATH_TRANSLATED unset when PATH_INFO is empty', async () => {
    const { env } = await vars(`${s.url}/cgi`);
    expect(env).not.toHaveProperty('PATH_TRANSLATED');
  });

  it('decodes PATH_INFO', async () => {
    const { env } = await vars(`${s.url}/cgi/caf%C3%A9/x%3By%20z`);
    expect(env.PATH_INFO).toBe('/café/x;y z');
    expect(env.REQUEST_URI).toBe('/cgi/caf%C3%A9/x%3By%20z');
  });

  it('decodes SCRIPT_NAME too: a parameterised prefix holds what the client encoded', async () => {
    const { env } = await vars(`${s.url}/tenants/caf%C3%A9%20bar/cgi/x%20y`);
    expect(env.SCRIPT_NAME).toBe('/tenants/café bar/cgi');
    expect(env.PATH_INFO).toBe('/x y');
    expect(env.DOCUMENT_URI).toBe('/tenants/café bar/cgi/x y');
    expect(env.REQUEST_URI).toBe('/tenants/caf%C3%A9%20bar/cgi/x%20y');
  });

  it('takes the path of an absolute-form request target (GET http://host/path), as the router does', async () => {
    const reply = await rawRequest(s.url, [`GET ${s.url}/tenants/acme/cgi/x%20y?q=1 HTTP/1.1`, `Host: 127.0.0.1:${port}`]);
    expect(reply.status).toBe(200);
    const { env } = JSON.parse(reply.body) as VarsReport;
    expect(env).toMatchObject({
      SCRIPT_NAME: '/tenants/acme/cgi',
      PATH_INFO: '/x y',
      QUERY_STRING: 'q=1',
      REQUEST_URI: '/tenants/acme/cgi/x%20y?q=1',
    });
  });

  it.each(['/tenants/a%2Fb/cgi/x', '/tenants/%2e%2e/cgi/x', '/tenants/../cgi/x'])('rejects a prefix of %s with 400, as PATH_INFO', async (path) => {
    const reply = await send(s.url + path);
    expect(reply.status).toBe(400);
    expect(reply.text).not.toContain('SCRIPT_NAME');
  });

  it.each(['/cgi/a%2Fb', '/cgi/a%2fb', '/cgi/a%00b', '/cgi/a/../b', '/cgi/a/%2e%2e/b', '/cgi/..'])(
    'rejects %s with 400 (encoded slash, NUL, dot-dot segment)',
    async (path) => {
      const reply = await send(s.url + path);
      expect(reply.status).toBe(400);
      expect(reply.text).not.toContain('SCRIPT_NAME');
    },
  );

  it('sets CONTENT_LENGTH and CONTENT_TYPE for a request with a body, and passes the body', async () => {
    const report = await vars(`${s.url}/cgi/upload`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: 'héllo world',
    });
    expect(report.env.CONTENT_LENGTH).toBe(String(Buffer.byteLength('héllo world')));
    expect(report.env.CONTENT_TYPE).toBe('text/plain; charset=utf-8');
    expect(report.env.REQUEST_METHOD).toBe('POST');
    expect(report.body).toBe('héllo world');
    expect(report.env).not.toHaveProperty('HTTP_CONTENT_LENGTH');
    expect(report.env).not.toHaveProperty('HTTP_CONTENT_TYPE');
  });

  it('sets REMOTE_USER and AUTH_TYPE from the principal, never from the Authorization header', async () => {
    const { env } = await vars(`${s.url}/cgi/x`, { headers: { authorization: basic('alice') } });
    expect(env.REMOTE_USER).toBe('alice');
    expect(env.AUTH_TYPE).toBe('Nest');
    expect(env).not.toHaveProperty('HTTP_AUTHORIZATION');
  });

  it('leaves REMOTE_USER and AUTH_TYPE unset for anonymous requests, whatever headers the client forges', async () => {
    const { env } = await vars(`${s.url}/cgi/x`, {
      headers: { 'remote-user': 'mallory', 'x-remote-user': 'mallory', authorization: basic('alice', 'wrong') },
    });
    expect(env).not.toHaveProperty('REMOTE_USER');
    expect(env).not.toHaveProperty('AUTH_TYPE');
    expect(Object.values(env)).not.toContain('mallory');
  });

  it('uses the mount remoteUser option', async () => {
    const { env } = await vars(`${s.url}/service/x`);
    expect(env.REMOTE_USER).toBe('svc-account');
    expect(env.AUTH_TYPE).toBe('Nest');
  });

  it('passes Authorization and Proxy-Authorization on only with passAuthorization: true', async () => {
    const headers = { authorization: basic('alice'), 'proxy-authorization': 'Basic cHJveHk6c2VjcmV0' };
    const passed = await vars(`${s.url}/with-auth/x`, { headers });
    expect(passed.env.HTTP_AUTHORIZATION).toBe(basic('alice'));
    expect(passed.env.HTTP_PROXY_AUTHORIZATION).toBe('Basic cHJveHk6c2VjcmV0');
    expect(passed.env.REMOTE_USER).toBe('alice');
    const withheld = await vars(`${s.url}/cgi/x`, { headers });
    expect(withheld.env).not.toHaveProperty('HTTP_AUTHORIZATION');
    expect(withheld.env).not.toHaveProperty('HTTP_PROXY_AUTHORIZATION');
  });

  it('joins repeated headers with ", " and Cookie headers with "; "', async () => {
    const { status, body } = await rawRequest(s.url, [
      'GET /cgi/headers HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'X-Multi: a',
      'X-Multi: b',
      'Accept: text/html',
      'Accept: text/plain',
      'Cookie: a=1',
      'Cookie: b=2',
    ]);
    expect(status).toBe(200);
    const { env } = JSON.parse(body) as VarsReport;
    expect(env.HTTP_X_MULTI).toBe('a, b');
    expect(env.HTTP_ACCEPT).toBe('text/html, text/plain');
    expect(env.HTTP_COOKIE).toBe('a=1; b=2');
  });

  it('drops Proxy (httpoxy), credentials, hop-by-hop headers and names that do not map cleanly', async () => {
    const { status, body } = await rawRequest(s.url, [
      'GET /cgi/headers HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Proxy: http://evil.example:8080',
      'Authorization: Bearer abc',
      'Proxy-Authorization: Basic abc',
      'Connection: close, X-Hop-Listed',
      'X-Hop-Listed: listed',
      'Keep-Alive: timeout=5',
      'TE: trailers',
      'Upgrade: websocket',
      'X_Under: underscore',
      'X.Dot: dot',
      'X-Kept: kept',
    ]);
    expect(status).toBe(200);
    const { env } = JSON.parse(body) as VarsReport;
    expect(env.HTTP_X_KEPT).toBe('kept');
    for (const name of [
      'HTTP_PROXY',
      'HTTP_AUTHORIZATION',
      'HTTP_PROXY_AUTHORIZATION',
      'HTTP_CONNECTION',
      'HTTP_X_HOP_LISTED',
      'HTTP_KEEP_ALIVE',
      'HTTP_TE',
      'HTTP_UPGRADE',
      'HTTP_X_UNDER',
    ]) {
      expect(env).not.toHaveProperty(name);
    }
    expect(Object.keys(env).filter((name) => /UNDER|DOT/.test(name))).toEqual([]);
    expect(Object.values(env)).not.toContain('underscore');
    expect(Object.values(env)).not.toContain('dot');
  });

  it('never lets a header create a variable outside HTTP_*', async () => {
    const { status, body } = await rawRequest(s.url, [
      'GET /cgi/headers HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Path: /evil/bin',
      'Ld-Preload: /tmp/evil.so',
      'Remote-User: mallory',
      'Script-Name: /evil',
      'Content-Type: text/evil',
    ]);
    expect(status).toBe(200);
    const { env } = JSON.parse(body) as VarsReport;
    expect(env.PATH).toBe(process.env.PATH);
    expect(env.HTTP_PATH).toBe('/evil/bin');
    expect(env.HTTP_LD_PRELOAD).toBe('/tmp/evil.so');
    expect(env).not.toHaveProperty('LD_PRELOAD');
    expect(env.SCRIPT_NAME).toBe('/cgi');
    expect(env).not.toHaveProperty('REMOTE_USER');
    expect(Object.keys(env).filter((name) => !name.startsWith('HTTP_') && !KNOWN_VARIABLES.has(name))).toEqual([]);
  });

  it('builds the environment from scratch: PATH is inherited, secrets of the Nest process are not', async () => {
    const { env } = await vars(`${s.url}/cgi/x`);
    expect(env.PATH).toBe(process.env.PATH);
    expect(env).not.toHaveProperty('SECRET_TOKEN');
    expect(Object.values(env)).not.toContain('do-not-leak');
    expect(Object.keys(env).filter((name) => !name.startsWith('HTTP_') && !KNOWN_VARIABLES.has(name))).toEqual([]);
  });

  it('inherits exactly the inheritEnv allow-list', async () => {
    const { env } = await vars(`${s.url}/inherit/x`);
    expect(env.SECRET_TOKEN).toBe('do-not-leak');
    expect(env).not.toHaveProperty('PATH');
    expect(env.GATEWAY_INTERFACE).toBe('CGI/1.1');
  });

  it('lets the env option override request-derived values, a mount env override the app env, and undefined remove', async () => {
    const { env } = await vars(`${s.url}/fixed/x`, { headers: { 'user-agent': 'cgi-test' } });
    expect(env.SERVER_NAME).toBe('wiki.example.org');
    expect(env.APP_MODE).toBe('mount');
    expect(env.APP_ONLY).toBe('yes');
    expect(env.MOUNT_ONLY).toBe('1');
    expect(env).not.toHaveProperty('HTTP_USER_AGENT');
    expect(env).not.toHaveProperty('SCRIPT_FILENAME');
    expect(env.SERVER_PORT).toBe(port);
  });
});

describe('cgiApp: SCRIPT_NAME under a Nest global prefix', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [VarsMount] }, (app) => app.setGlobalPrefix('api'));
  });
  afterAll(() => s.close());

  it.each([
    ['/api/cgi/x?q=1', '/x', 'q=1'],
    ['/api/cgi', '', ''],
    ['/api/cgi/', '/', ''],
  ])('GET %s: SCRIPT_NAME /api/cgi, PATH_INFO %j', async (path, pathInfo, query) => {
    const { env } = await vars(s.url + path);
    expect(env.SCRIPT_NAME).toBe('/api/cgi');
    expect(env.PATH_INFO).toBe(pathInfo);
    expect(env.QUERY_STRING).toBe(query);
    expect(env.REQUEST_URI).toBe(path);
  });
});

// ---------------------------------------------------------------------------------------------
// Script output
// ---------------------------------------------------------------------------------------------

const respondApp = cgiApp(RESPOND, { maxHeaderBytes: 1024, env: FIXTURE_ENV });

@MountGateway('cgi', respondApp)
class RespondMount {}

@MountGateway('follow', cgiApp(RESPOND, { localRedirects: 'follow', env: FIXTURE_ENV }))
class FollowMount {}

@MountGateway('untyped', cgiApp(UNTYPED))
class UntypedMount {}

@MountGateway('untyped-hasty', cgiApp(UNTYPED, { headersTimeout: 100 }))
class HastyUntypedMount {}

describe('cgiApp: script output', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [RespondMount, FollowMount, UntypedMount, HastyUntypedMount] });
  });
  afterAll(() => s.close());

  it('reads a header block ended by LF', async () => {
    const reply = await send(`${s.url}/cgi/lf`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain');
    expect(reply.headers['x-block']).toBe('lf');
    expect(reply.text).toBe('lf body\n');
  });

  it('reads a header block ended by CRLF', async () => {
    const reply = await send(`${s.url}/cgi/crlf`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain');
    expect(reply.headers['x-block']).toBe('crlf');
    expect(reply.text).toBe('crlf body\r\n');
  });

  it('treats header names case-insensitively', async () => {
    const reply = await send(`${s.url}/cgi/mixed-case`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/x-mixed');
    expect(reply.headers['x-custom-header']).toBe('yes');
    expect(reply.text).toBe('mixed');
  });

  it('sends the Status code and reason phrase to the client', async () => {
    const reply = await send(`${s.url}/cgi/status`);
    expect(reply.status).toBe(404);
    expect(reply.statusMessage).toBe('Not Here');
    expect(reply.headers).not.toHaveProperty('status');
    expect(reply.text).toBe('not here');
  });

  it('answers a Location without Status with a 302', async () => {
    const reply = await send(`${s.url}/cgi/location`);
    expect(reply.status).toBe(302);
    expect(reply.headers.location).toBe('https://example.org/elsewhere');
  });

  it("sends a local redirect to the client as a 302 with localRedirects 'client' (the default)", async () => {
    const reply = await send(`${s.url}/cgi/local`);
    expect(reply.status).toBe(302);
    expect(reply.headers.location).toBe('/cgi/other?from=local');
  });

  it("follows a local redirect with localRedirects 'follow': the same script serves the new path as a GET", async () => {
    const reply = await send(`${s.url}/follow/local?orig=1`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'posted',
    });
    expect(reply.status).toBe(200);
    expect(reply.headers).not.toHaveProperty('location');
    expect(reply.text).toBe(
      'REQUEST_METHOD=GET SCRIPT_NAME=/follow PATH_INFO=/other QUERY_STRING=from=local CONTENT_LENGTH=<unset>',
    );
  });

  it("keeps a local redirect outside the mount prefix a 302 with localRedirects 'follow'", async () => {
    const reply = await send(`${s.url}/follow/local-outside`);
    expect(reply.status).toBe(302);
    expect(reply.headers.location).toBe('/elsewhere?x=1');
  });

  it.each([
    ['/no-type', /none of Content-Type, Location or Status/],
    ['/no-colon', /malformed header line/],
    ['/cr-in-value', /control character/],
    ['/nul-in-value', /control character/],
    ['/folded', /folded/],
    ['/truncated', /before the blank line|before the headers ended/],
    ['/empty', /no output/],
    ['/big-headers', /exceed 1024 bytes/],
    ['/informational', /invalid Status header "103 Early Hints"/],
  ])('answers %s with 502 and logs the reason', async (path, reason) => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/cgi${path}`);
    expect(reply.status).toBe(502);
    expect(reply.text).not.toContain('body');
    await waitFor(() => linesSince(s, from, 'error').some((l) => reason.test(l)), 2000, `an error line matching ${reason}`);
    const line = linesSince(s, from, 'error').find((l) => reason.test(l))!;
    expect(line).toContain('/cgi');
    expect(line).toMatch(/pid \d+/);
  });

  it.each(['', '?late'])('passes on a Status with no Content-Type and no body (RFC 3875 6.3.1) %j', async (query) => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/untyped${query}`);
    expect(reply.status).toBe(403);
    expect(reply.statusMessage).toBe('Forbidden');
    expect(reply.headers['x-reason']).toBe('read-only');
    expect(reply.text).toBe('');
    expect(linesSince(s, from, 'error')).toEqual([]);
  });

  it('gives a Status with no Content-Type whose output does not end within headersTimeout a 504', async () => {
    const reply = await send(`${s.url}/untyped-hasty?late`);
    expect(reply.status).toBe(504);
  });

  it.each(['?body', '?late-body'])('answers a body without Content-Type with 502 and logs why %j', async (query) => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/untyped${query}`);
    expect(reply.status).toBe(502);
    expect(reply.text).not.toContain('a body with no type');
    await waitFor(() => linesSince(s, from, 'error').some((l) => /body without Content-Type/.test(l)), 2000, 'the logged reason');
  });

  it('sends every Set-Cookie line', async () => {
    const reply = await send(`${s.url}/cgi/cookies`);
    expect(reply.status).toBe(200);
    expect(reply.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; HttpOnly', 'c=3']);
  });

  it("keeps the script's header order and joins a repeated header, whatever its case", async () => {
    const reply = await send(`${s.url}/cgi/ordered`);
    const names = reply.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    expect(names.filter((name) => ['z-named-late', 'x-repeated', 'content-type', 'a-named-early'].includes(name))).toEqual(['z-named-late', 'x-repeated', 'content-type', 'a-named-early']);
    expect(reply.headers['x-repeated']).toBe('a, b');
    expect(reply.text).toBe('ordered');
  });

  it('streams the body: the client gets the first part before the script writes the rest', async () => {
    const id = newId('stream');
    const events: string[] = [];
    const reply = await within(
      send(`${s.url}/cgi/stream`, {
        headers: { 'x-test-id': id },
        onData: (chunk) => {
          events.push(`client got ${JSON.stringify(chunk.toString())}`);
          if (events.length === 1) {
            events.push('client lets the script go on');
            go(id);
          }
        },
      }),
      8000,
      'the streamed response',
    );
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('first\nsecond\n');
    expect(events).toEqual(['client got "first\\n"', 'client lets the script go on', 'client got "second\\n"']);
  });

  it('sends a short answer that came whole with its head in one piece, with a Content-Length; a large one streams', async () => {
    const short = await send(`${s.url}/cgi/cookies`);
    expect(short.text).toBe('cookies');
    expect(short.headers['content-length']).toBe('7');
    expect(short.headers['transfer-encoding']).toBeUndefined();
    // Only 64 KiB are read ahead to see whether the output ends: 1 MiB is not held back.
    const large = await send(`${s.url}/cgi/big-body`);
    expect(large.body.length).toBe(1024 * 1024);
    expect(large.headers['transfer-encoding']).toBe('chunked');
    expect(large.headers['content-length']).toBeUndefined();
  });

  // A keep-alive client reads the next response as the 5 bytes it still waits for: the
  // connection must be broken off instead, as for a body shorter than its Content-Length.
  it('breaks the connection off when a complete answer has a Content-Length but no body', async () => {
    const { hostname, port } = new URL(s.url);
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c)).on('error', () => undefined);
    socket.write('GET /cgi/length-no-body HTTP/1.1\r\nHost: x\r\n\r\nGET /cgi/lf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await within(new Promise((resolve) => socket.once('close', resolve)), 5000, 'the connection to close');
    const wire = Buffer.concat(chunks).toString('latin1');
    // Cut before or after its head: either way no second response follows on this connection.
    expect(wire.match(/HTTP\/1\.1 /g)?.length ?? 0).toBeLessThanOrEqual(1);
    expect(wire).not.toContain('lf body');
  });

  it('answers HEAD with the headers and no body', async () => {
    const reply = await send(`${s.url}/cgi/head`, { method: 'HEAD' });
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain');
    expect(reply.headers['x-thing']).toBe('head-test');
    expect(reply.headers['content-length']).toBe('9');
    expect(reply.body.length).toBe(0);
  });

  it('answers HEAD for a script with a large body (the output is drained, the request completes)', async () => {
    const reply = await within(send(`${s.url}/cgi/big-body`, { method: 'HEAD' }), 5000, 'HEAD of a 1 MiB body');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    expect(reply.body.length).toBe(0);
    // The server is still fine afterwards.
    expect((await send(`${s.url}/cgi/lf`)).text).toBe('lf body\n');
  });
});

// ---------------------------------------------------------------------------------------------
// The process
// ---------------------------------------------------------------------------------------------

@MountGateway('vars', cgiApp(VARS))
class PlainVarsMount {}

@MountGateway('vars-cwd', cgiApp(VARS, { cwd: WORK }))
class CwdMount {}

@MountGateway('args', cgiApp(ARGS))
class ArgsMount {}

@MountGateway('buffered', cgiApp(VARS, { maxBufferedBody: 4096 }))
class BufferedMount {}

@MountGateway('unbuffered', cgiApp(VARS, { maxBufferedBody: 0 }))
class UnbufferedMount {}

@MountGateway('noisy', cgiApp(STDERR), { name: 'noisy-app' })
class NoisyMount {}

@MountGateway('capped', cgiApp(STDERR, { maxStderrBytes: 100 }), { name: 'capped-app' })
class CappedMount {}

@MountGateway('interpreted', cgiApp(INTERPRETED, { interpreter: ['/bin/sh'] }))
class InterpretedMount {}

@MountGateway('uncapped', cgiApp(STDERR, { maxStderrBytes: Infinity }), { name: 'uncapped-app' })
class UncappedMount {}

/** An interpreter named without a path, found on the PATH of the app's env only. */
const ownPath = { PATH: `${join(FIXTURES, 'bin')}:/usr/bin:/bin` };

@MountGateway('own-path', cgiApp(INTERPRETED, { interpreter: 'fixture-interpreter', env: ownPath }))
class OwnPathMount {}

@MountGateway('own-path-direct', cgiApp(INTERPRETED, { interpreter: 'fixture-interpreter', env: ownPath, spawner: 'direct' }))
class OwnPathDirectMount {}

describe('cgiApp: the process', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [PlainVarsMount, CwdMount, ArgsMount, BufferedMount, UnbufferedMount, NoisyMount, CappedMount, InterpretedMount, UncappedMount, OwnPathMount, OwnPathDirectMount],
    });
  });
  afterAll(() => s.close());

  it("runs in the script's directory by default", async () => {
    const report = await vars(`${s.url}/vars/x`);
    expect(report.cwd).toBe(FIXTURES);
  });

  it('runs in the cwd option when given', async () => {
    const report = await vars(`${s.url}/vars-cwd/x`);
    expect(report.cwd).toBe(WORK);
  });

  it.each(['?foo', '?foo+bar', '?-n+--help', '?a=1', ''])('never takes argv from the query (%s)', async (query) => {
    const reply = await send(`${s.url}/args/x${query}`);
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('0\n\n');
  });

  it('streams a POST body to stdin intact (3 MiB)', async () => {
    const body = randomBytes(3 * 1024 * 1024);
    const report = await vars(`${s.url}/vars/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body,
    });
    expect(report.env.CONTENT_LENGTH).toBe(String(body.length));
    expect(report.bodyLength).toBe(body.length);
    expect(report.bodySha256).toBe(sha256(body));
  });

  it('buffers a chunked body (no Content-Length) and sets CONTENT_LENGTH', async () => {
    const chunks = [randomBytes(1000), randomBytes(1500), randomBytes(500)];
    const whole = Buffer.concat(chunks);
    const report = await vars(`${s.url}/buffered/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: chunks,
    });
    expect(report.env.CONTENT_LENGTH).toBe(String(whole.length));
    expect(report.bodyLength).toBe(whole.length);
    expect(report.bodySha256).toBe(sha256(whole));
  });

  // BUG (lib/cgi/sized-request-body.ts:35 and lib/http/read-body.ts:19): the client's request
  // stream is destroyed, which destroys the socket, so the 411/413 never reaches the client
  // ("socket hang up" / curl: "Empty reply from server").
  it('answers a chunked body over maxBufferedBody with 413', async () => {
    const reply = await send(`${s.url}/buffered/upload`, { method: 'POST', body: [randomBytes(3000), randomBytes(3000)] });
    expect(reply.status).toBe(413);
  });

  it('answers a chunked body with 411 when maxBufferedBody is 0', async () => {
    const chunked = await send(`${s.url}/unbuffered/upload`, { method: 'POST', body: ['abc', 'def'] });
    expect(chunked.status).toBe(411);
  });

  it('takes a body with Content-Length when maxBufferedBody is 0', async () => {
    const sized = await vars(`${s.url}/unbuffered/upload`, { method: 'POST', body: 'abcdef' });
    expect(sized.env.CONTENT_LENGTH).toBe('6');
    expect(sized.body).toBe('abcdef');
  });

  it('logs stderr lines as warnings tagged with the mount name and pid', async () => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/noisy/lines`);
    expect(reply.status).toBe(200);
    const pid = reply.text.trim();
    await waitFor(
      () => linesSince(s, from, 'warn').filter((l) => /complaint/.test(l)).length === 2,
      3000,
      'both stderr lines logged',
    );
    const logged = linesSince(s, from, 'warn').filter((l) => /complaint/.test(l));
    expect(logged[0]).toContain('first complaint');
    expect(logged[1]).toContain('second complaint');
    for (const line of logged) {
      expect(line).toContain('noisy-app');
      expect(line).toContain(`pid ${pid}`);
    }
  });

  it('caps the logged stderr at maxStderrBytes', async () => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/capped/flood`);
    expect(reply.status).toBe(200);
    await waitFor(() => linesSince(s, from, 'warn').some((l) => l.includes('flood line 0')), 3000, 'stderr logged');
    await sleep(300); // let whatever else would be logged arrive
    const flood = linesSince(s, from, 'warn').filter((l) => l.includes('flood line'));
    const loggedBytes = flood.reduce((n, l) => n + Buffer.byteLength(l.slice(l.indexOf('flood line'))) + 1, 0);
    expect(flood.length).toBeGreaterThan(0);
    expect(flood.length).toBeLessThan(100);
    expect(loggedBytes).toBeLessThanOrEqual(100 + 1);
    for (const line of flood) expect(line).toContain('capped-app');
  });

  // "Log it all": the limit reaches the spawn helper, which must not take it for a bad request.
  it('runs the script and logs all of its stderr with maxStderrBytes: Infinity', async () => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/uncapped/flood`);
    expect(reply.status).toBe(200);
    await waitFor(() => linesSince(s, from, 'warn').filter((l) => l.includes('flood line')).length === 100, 3000, 'all 100 stderr lines logged');
    expect(linesSince(s, from).filter((l) => /spawn|the rest is not logged/.test(l))).toEqual([]);
  });

  it('logs a non-zero exit code', async () => {
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/noisy/exit`);
    expect(reply.status).toBe(200);
    const pid = reply.text.trim();
    await waitFor(() => linesSince(s, from).some((l) => /exit\w* with code 3/.test(l)), 3000, 'the exit code logged');
    const line = linesSince(s, from).find((l) => /exit\w* with code 3/.test(l))!;
    expect(line).toContain('noisy-app');
    expect(line).toContain(`pid ${pid}`);
    // Its last stderr line is logged before its exit.
    const lines = linesSince(s, from);
    expect(lines.findIndex((l) => l.includes('about to fail'))).toBeGreaterThanOrEqual(0);
    expect(lines.findIndex((l) => l.includes('about to fail'))).toBeLessThan(lines.indexOf(line));
  });

  it('runs a non-executable script through the interpreter option', async () => {
    const reply = await send(`${s.url}/interpreted/x?foo`);
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('interpreted interpreted.sh args=0\n');
  });

  it.each(['own-path', 'own-path-direct'])("looks an interpreter without a path up on the PATH of the app's env (/%s)", async (mount) => {
    const reply = await send(`${s.url}/${mount}/x`);
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('interpreted interpreted.sh args=0\n');
  });
});

// ---------------------------------------------------------------------------------------------
// Limits: time, concurrency, aborts; the whole process group always ends
// ---------------------------------------------------------------------------------------------

@MountGateway('headers', cgiApp(LIFECYCLE, { headersTimeout: 500, killGrace: 200, env: FIXTURE_ENV }))
class HeadersTimeoutMount {}

@MountGateway('idle', cgiApp(LIFECYCLE, { idleTimeout: 500, killGrace: 200, env: FIXTURE_ENV }))
class IdleTimeoutMount {}

@MountGateway('total', cgiApp(LIFECYCLE, { totalTimeout: 800, killGrace: 200, env: FIXTURE_ENV }))
class TotalTimeoutMount {}

@MountGateway('life', cgiApp(LIFECYCLE, { killGrace: 200, env: FIXTURE_ENV }))
class LifecycleMount {}

@MountGateway('life-grace', cgiApp(LIFECYCLE, { env: FIXTURE_ENV }))
class DefaultGraceMount {}

@MountGateway('queue', cgiApp(QUEUE, { maxConcurrency: 1, maxQueue: 1, headersTimeout: 10_000, env: FIXTURE_ENV }))
class QueueMount {}

@MountGateway('queue-default', cgiApp(QUEUE, { headersTimeout: 10_000, env: FIXTURE_ENV }))
class DefaultQueueMount {}

const lifecycleApp = cgiApp(LIFECYCLE, { killGrace: 200, env: FIXTURE_ENV });

/** callApp with a signal of the caller's: aborted after `ms`, or before the call when 0. */
@Controller('caller-signal')
class CallerSignalController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All(':ms/*path')
  call(@Req() req: { params: { ms: string } }, @PathInfo() pathInfo: string) {
    const ms = Number(req.params.ms);
    return this.gateway.callApp(lifecycleApp, req, pathInfo, { signal: ms === 0 ? AbortSignal.abort() : AbortSignal.timeout(ms) });
  }
}

describe('cgiApp: limits and process groups', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({
      imports: [GatewayModule.forRoot()],
      controllers: [
        HeadersTimeoutMount,
        IdleTimeoutMount,
        TotalTimeoutMount,
        LifecycleMount,
        DefaultGraceMount,
        QueueMount,
        DefaultQueueMount,
        CallerSignalController,
      ],
    });
  });
  afterAll(() => s.close());

  const queueLog = (ids: string[]) =>
    (existsSync(join(WORK, 'queue.log')) ? readFileSync(join(WORK, 'queue.log'), 'utf8') : '')
      .split('\n')
      .filter((line) => ids.some((id) => line.endsWith(` ${id}`)));

  it('answers 504 when the script sends no headers within headersTimeout, and ends its process group', async () => {
    const id = newId('headers');
    const from = s.logger.lines.length;
    const reply = await send(`${s.url}/headers/no-headers`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(504);
    const pids = await pidsOf(id);
    await expectGone(pids);
    expect(linesSince(s, from).some((l) => /no headers within 500 ms/.test(l))).toBe(true);
  });

  it('follows SIGTERM with SIGKILL when the script ignores SIGTERM', async () => {
    const id = newId('stubborn');
    const reply = await send(`${s.url}/headers/stubborn`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(504);
    await expectGone(await pidsOf(id));
  });

  it('cuts the response when the script is idle for idleTimeout after its headers, and ends its group', async () => {
    const id = newId('idle');
    const reply = await within(send(`${s.url}/idle/idle`, { headers: { 'x-test-id': id } }), 5000, 'the idle response');
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('partial\n');
    expect(reply.complete).toBe(false);
    await expectGone(await pidsOf(id));
  });

  it('answers 504 when totalTimeout passes before the headers, and ends the group', async () => {
    const id = newId('total-head');
    const reply = await send(`${s.url}/total/no-headers`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(504);
    await expectGone(await pidsOf(id));
  });

  it('cuts a still-talking script at totalTimeout, and ends the group', async () => {
    const id = newId('total-body');
    const reply = await within(send(`${s.url}/total/chatty`, { headers: { 'x-test-id': id } }), 5000, 'the cut response');
    expect(reply.status).toBe(200);
    expect(reply.text).toMatch(/^tick\n/);
    expect(reply.complete).toBe(false);
    await expectGone(await pidsOf(id));
  });

  it('ends what the script left running (a background child) once the response is done', async () => {
    const id = newId('done');
    const reply = await send(`${s.url}/life/done`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('done\n');
    expect(reply.complete).toBe(true);
    await expectGone(await pidsOf(id));
  });

  // The answer is complete when the output ends; the exit, still to come, must not hold it back.
  it('answers as soon as the script closes its output, though it runs on (killGrace is not waited)', async () => {
    const id = newId('answer-then-work');
    const started = Date.now();
    const reply = await send(`${s.url}/life-grace/answer-then-work`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('answer\n');
    expect(reply.complete).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    await expectGone(await pidsOf(id));
  });

  it('ends a script that answered and runs on at totalTimeout (its slot is held until it exits)', async () => {
    const id = newId('answer-then-hang');
    const reply = await send(`${s.url}/total/answer-then-hang`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('answer\n');
    expect(reply.complete).toBe(true);
    await expectGone(await pidsOf(id));
  });

  it("ends the group when the caller's signal aborts the call, and fails the call", async () => {
    const id = newId('caller-abort');
    const started = Date.now();
    const reply = await within(send(`${s.url}/caller-signal/300/no-headers`, { headers: { 'x-test-id': id } }), 5000, 'the failed call');
    expect(reply.status).toBe(500);
    expect(Date.now() - started).toBeLessThan(3000);
    await expectGone(await pidsOf(id));
  });

  it("does not start the script when the caller's signal is aborted already", async () => {
    const id = newId('caller-aborted');
    const reply = await send(`${s.url}/caller-signal/0/done`, { headers: { 'x-test-id': id } });
    expect(reply.status).toBe(500);
    await sleep(300);
    expect(existsSync(join(WORK, `${id}.pids`))).toBe(false);
  });

  it('ends the group when the client goes away before the headers', async () => {
    const id = newId('abort-head');
    let request: http.ClientRequest | undefined;
    const reply = send(`${s.url}/life/no-headers`, { headers: { 'x-test-id': id }, onRequest: (r) => (request = r) });
    reply.catch(() => undefined);
    const pids = await pidsOf(id);
    expect(pids.every(isAlive)).toBe(true);
    request!.destroy();
    await expectGone(pids);
  });

  it('ends the group when the client goes away while sending the request body', async () => {
    const id = newId('abort-upload');
    const { port } = new URL(s.url);
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/life/read-body',
      method: 'POST',
      headers: { 'x-test-id': id, 'content-length': '100000' },
      agent: false,
    });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(1000, 'x'));
    const pids = await pidsOf(id);
    expect(pids.every(isAlive)).toBe(true);
    req.destroy();
    await expectGone(pids);
  });

  it('ends the group when the client goes away while the body streams', async () => {
    const id = newId('abort-body');
    const reply = await send(`${s.url}/life/chatty`, {
      headers: { 'x-test-id': id },
      onData: (_chunk, req) => req.destroy(),
    });
    expect(reply.complete).toBe(false);
    await expectGone(await pidsOf(id));
  });

  /** Resolves to the reply if it comes within `ms` (a 503 comes at once), else undefined (queued). */
  const settlesWithin = (reply: Promise<Reply>, ms: number) =>
    Promise.race([reply, sleep(ms).then(() => undefined)]);

  it('runs at most maxConcurrency scripts, queues maxQueue more, answers 503 beyond', async () => {
    const [a, b, c] = [newId('qa'), newId('qb'), newId('qc')];
    try {
      const first = send(`${s.url}/queue/x`, { headers: { 'x-test-id': a } });
      await waitFor(() => queueLog([a]).length === 1, 5000, 'the first script to start');
      // Two more while the first runs: one waits in the queue, the other is refused at once.
      const others = new Map([b, c].map((id) => [id, send(`${s.url}/queue/x`, { headers: { 'x-test-id': id } })]));
      const refused = await within(
        Promise.race([...others].map(([id, reply]) => reply.then((r) => ({ id, status: r.status })))),
        5000,
        'one of the two extra requests to be refused',
      );
      expect(refused.status).toBe(503);
      const waiting = refused.id === b ? c : b;
      expect(queueLog([waiting])).toEqual([]); // queued, not running
      go(a);
      expect((await first).text).toBe(`served ${a}\n`);
      await waitFor(() => queueLog([waiting]).length === 1, 5000, 'the queued script to start');
      go(waiting);
      const served = await others.get(waiting)!;
      expect(served.status).toBe(200);
      expect(served.text).toBe(`served ${waiting}\n`);
      expect(queueLog([a, b, c])).toEqual([`start ${a}`, `end ${a}`, `start ${waiting}`, `end ${waiting}`]);
    } finally {
      [a, b, c].forEach(go);
    }
  });

  // Scripts waiting on slow clients (git clones) hold their slots: the default must not be a
  // small multiple of the CPUs (it was 8 per CPU, 16 here).
  it('runs 64 scripts at once by default, and queues the 65th', async () => {
    const ids = Array.from({ length: 65 }, (_, i) => newId(`qd${i}`));
    try {
      const replies = ids.map((id) => send(`${s.url}/queue-default/x`, { headers: { 'x-test-id': id } }));
      await waitFor(() => queueLog(ids).length === 64, 10_000, '64 scripts to start');
      await sleep(300);
      expect(queueLog(ids)).toHaveLength(64);
      const waiting = ids.find((id) => queueLog([id]).length === 0)!;
      ids.filter((id) => id !== waiting).forEach(go);
      await waitFor(() => queueLog([waiting]).length === 1, 10_000, 'the queued script to start once slots are free');
      go(waiting);
      const served = await Promise.all(replies);
      served.forEach((reply, i) => expect({ status: reply.status, text: reply.text }).toEqual({ status: 200, text: `served ${ids[i]}\n` }));
    } finally {
      ids.forEach(go);
    }
  });

  it('removes a queued request from the queue when its client goes away', async () => {
    const [a, b, c, probe] = [newId('qa'), newId('qb'), newId('qc'), newId('qprobe')];
    try {
      const first = send(`${s.url}/queue/x`, { headers: { 'x-test-id': a } });
      await waitFor(() => queueLog([a]).length === 1, 5000, 'the first script to start');
      let queued: http.ClientRequest | undefined;
      const second = send(`${s.url}/queue/x`, { headers: { 'x-test-id': b }, onRequest: (r) => (queued = r) });
      second.catch(() => undefined);
      await sleep(100); // let it reach the queue
      // The queue (size 1) is full now.
      const full = await settlesWithin(send(`${s.url}/queue/x`, { headers: { 'x-test-id': probe } }), 2000);
      expect(full?.status).toBe(503);
      queued!.destroy();
      // Once the server has seen the client leave, the queue has room again: a new request
      // waits instead of getting 503.
      let third: Promise<Reply> | undefined;
      const deadline = Date.now() + 3000;
      while (!third) {
        const attempt = send(`${s.url}/queue/x`, { headers: { 'x-test-id': c } });
        const outcome = await settlesWithin(attempt, 300);
        if (outcome === undefined) third = attempt;
        else if (outcome.status !== 503) throw new Error(`unexpected status ${outcome.status}`);
        else if (Date.now() > deadline) throw new Error('the queue stayed full after the queued client left');
      }
      go(a);
      expect((await first).text).toBe(`served ${a}\n`);
      await waitFor(() => queueLog([c]).length === 1, 5000, 'the new request to run');
      go(c);
      expect((await third).text).toBe(`served ${c}\n`);
      expect(queueLog([a, b, c, probe])).toEqual([`start ${a}`, `end ${a}`, `start ${c}`, `end ${c}`]);
    } finally {
      [a, b, c, probe].forEach(go);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// callApp
// ---------------------------------------------------------------------------------------------

const callVarsApp = cgiApp(VARS, { env: { APP_MODE: 'app', SERVER_NAME: 'app.example' } });

@Controller('calls')
class CgiCallsController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  /** Filters a CGI response: upper-cases the text, changes headers. */
  @All('shout/*path')
  async shout(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(respondApp, req, pathInfo);
    const text = await response.text();
    response.headers.set('x-filtered', 'yes');
    response.headers.delete('x-block');
    return response.setBody(text.toUpperCase());
  }

  @All('vars/*path')
  vars(@Req() req: unknown, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(callVarsApp, req, pathInfo, {
      env: { APP_MODE: 'call', SERVER_NAME: undefined },
      remoteUser: 'carol',
    });
  }

  /** Nest's json parser has read the body already; the script still gets it byte for byte. */
  @Post('json')
  json(@Body() body: Record<string, unknown>, @Req() req: unknown) {
    return this.gateway.callApp(callVarsApp, req, '', { env: { PARSED_KEYS: Object.keys(body).join(',') } });
  }
}

describe('cgiApp: callApp', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CgiCallsController] }, (app) => app.use(authenticate));
  });
  afterAll(() => s.close());

  it('lets a controller filter the response of a CGI script', async () => {
    const reply = await send(`${s.url}/calls/shout/lf`);
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('LF BODY\n');
    expect(reply.headers['x-filtered']).toBe('yes');
    expect(reply.headers).not.toHaveProperty('x-block');
    expect(reply.headers['content-type']).toBe('text/plain');
  });

  it('gives the script the pathInfo it was called with and the rest of the path as SCRIPT_NAME', async () => {
    const reply = await send(`${s.url}/calls/shout/other?q=1`);
    expect(reply.text).toBe('REQUEST_METHOD=GET SCRIPT_NAME=/CALLS/SHOUT PATH_INFO=/OTHER QUERY_STRING=Q=1 CONTENT_LENGTH=<UNSET>');
  });

  it('applies the call env over the app env and the call remoteUser over the resolved principal', async () => {
    const { env } = await vars(`${s.url}/calls/vars/x`, { headers: { authorization: basic('alice') } });
    expect(env.APP_MODE).toBe('call');
    expect(env).not.toHaveProperty('SERVER_NAME');
    expect(env.REMOTE_USER).toBe('carol');
    expect(env.AUTH_TYPE).toBe('Nest');
    expect(env.SCRIPT_NAME).toBe('/calls/vars');
    expect(env.PATH_INFO).toBe('/x');
  });

  it("replays a POST body that Nest's json parser already read, byte-identical", async () => {
    const raw = '{ "a" : 1,\n  "b": "\u00e9t\u00e9",   "c": [1, 2.50] }';
    const report = await vars(`${s.url}/calls/json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: raw,
    });
    expect(report.env.PARSED_KEYS).toBe('a,b,c');
    expect(report.env.CONTENT_TYPE).toBe('application/json');
    expect(report.env.CONTENT_LENGTH).toBe(String(Buffer.byteLength(raw)));
    expect(report.bodySha256).toBe(sha256(raw));
    expect(report.body).toBe(raw);
    expect(report.env.SCRIPT_NAME).toBe('/calls/json');
    expect(report.env.PATH_INFO).toBe('');
  });
});
