/**
 * Hostile clients and hostile scripts against `cgiApp` and `fastcgiApp` (fcgiwrap running the
 * same shell scripts), over real HTTP against a real Nest app. The promise under test: no
 * child process or socket is left behind, and every request is answered or closed.
 *
 * The scripts are modes of test/fixtures/hostile/hostile.sh, picked by the path. Every run
 * appends the pids that could outlive it to $PID_DIR/<X-Test-Id>, so that a test can check
 * that they are gone. A CGI script leads its own process group: "gone" means no live
 * (non-zombie) process is left in that group. fcgiwrap runs scripts in its own group and
 * never kills them (its only kill() call has its arguments swapped), so for FastCGI the
 * library's part is to close its connection and free its slot; a test ends whatever fcgiwrap
 * leaves running itself, by pid.
 */
import { Module, type Type } from '@nestjs/common';
import { cgiApp, fastcgiApp, GatewayModule, MountGateway, type GatewayApp } from 'nest-gateway';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { authenticate, basic } from './fixtures/login.js';
import { FCGIWRAP, startFcgiwrap, tempDir, waitForSocket, type Peer } from './fixtures/peers.js';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor } from './fixtures/waiting.js';

const FIXTURE_DIR = fileURLToPath(new URL('./fixtures/hostile', import.meta.url));
const SCRIPT = join(FIXTURE_DIR, 'hostile.sh');
const PID_DIR = mkdtempSync(join(tmpdir(), 'nest-gateway-hostile-'));

const SHORT = { headersTimeout: 500, idleTimeout: 500, killGrace: 200 };
/** Limits that leave no doubt about which one answered (the test never waits for them). */
const PATIENT = { headersTimeout: 5000, idleTimeout: 5000, killGrace: 200 };
const MAX_STDERR = 4096;

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

interface ProcInfo {
  pid: number;
  state: string;
  ppid: number;
  pgrp: number;
}

function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, state, ppid: Number(ppid), pgrp: Number(pgrp) };
  } catch {
    return undefined;
  }
}

function allProcesses(): ProcInfo[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => procInfo(Number(name)))
    .filter((p): p is ProcInfo => p !== undefined);
}

/** Running: exists and is not a zombie (PID 1 of this machine does not reap orphans). */
function alive(pid: number): boolean {
  const info = procInfo(pid);
  return info !== undefined && info.state !== 'Z';
}

/** Live members of a process group. */
function groupMembers(pgid: number): number[] {
  return allProcesses()
    .filter((p) => p.pgrp === pgid && p.state !== 'Z')
    .map((p) => p.pid);
}

/** Pids a script run recorded under its test id (the script's own pid first). */
function recordedPids(id: string): number[] {
  try {
    return readFileSync(join(PID_DIR, id), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function allRecordedPids(): number[] {
  return readdirSync(PID_DIR).flatMap((id) => recordedPids(id));
}

/** Processes whose command line names the fixture directory (the scripts, whoever ran them). */
function fixtureProcesses(): string[] {
  const found: string[] = [];
  for (const p of allProcesses()) {
    if (p.pid === process.pid || p.state === 'Z') continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (cmdline.includes(FIXTURE_DIR)) found.push(`${p.pid}: ${cmdline}`);
  }
  return found;
}

/** Ends, by pid, what a run left behind under fcgiwrap (which never kills its scripts). */
function endRecorded(id: string): void {
  for (const pid of recordedPids(id)) {
    if (!alive(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** Kills, by process group, what a CGI run left behind (cleanup after a known bug). */
function endGroup(id: string): void {
  const [leader] = recordedPids(id);
  if (leader === undefined) return;
  try {
    process.kill(-leader, 'SIGKILL');
  } catch {
    // gone
  }
}


/** The script of run `id` has started: its pid is recorded. */
async function started(id: string, count = 1): Promise<number[]> {
  await waitFor(() => recordedPids(id).length >= count, 5000, `script of ${id} to start`);
  return recordedPids(id);
}

/** A CGI run is over: nothing of its process group (the script's pid) is left. */
async function groupGone(id: string, ms = 3000): Promise<void> {
  const [leader, ...children] = recordedPids(id);
  expect(leader).toBeDefined();
  await waitFor(() => groupMembers(leader).length === 0, ms, `process group ${leader} of ${id} to be gone`);
  for (const pid of children) expect(alive(pid)).toBe(false);
}

/** Every recorded process of a run is gone. */
async function pidsGone(id: string, ms = 3000): Promise<void> {
  const pids = recordedPids(id);
  expect(pids.length).toBeGreaterThan(0);
  await waitFor(() => pids.every((pid) => !alive(pid)), ms, `pids ${pids.join(', ')} of ${id} to be gone`);
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

function connectionsOf(server: Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
}

/**
 * Connections this process holds to a Unix socket: our socket inodes whose peer is one of
 * the sockets accepted on `socketPath` (as `ss -x` reports them).
 */
function ourConnectionsTo(socketPath: string): number {
  const ours = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match) ours.add(match[1]);
    } catch {
      // closed meanwhile
    }
  }
  const rows = execFileSync('ss', ['-xaH'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 8);
  const accepted = new Set(rows.filter((c) => c[4] === socketPath && c[1] === 'ESTAB').map((c) => c[5]));
  return rows.filter((c) => ours.has(c[5]) && accepted.has(c[7])).length;
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

interface Outcome {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The whole response arrived (false: the connection was cut in the body). */
  complete: boolean;
}

interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
}

let baseUrl = '';

/** One request on its own connection; resolves once the response is over, however it ends. */
function send(path: string, options: RequestOptions = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${baseUrl}${path}`, { method: options.method ?? 'GET', headers: options.headers, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', () => undefined);
      res.on('close', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('latin1'), complete: res.complete }),
      );
    });
    req.end(options.body);
  });
}

/** A request the test will break off: its response and first body chunk, as they come. */
function open(path: string, options: RequestOptions & { bodyLength?: number } = {}) {
  const headers: Record<string, string | string[]> = { ...options.headers };
  if (options.bodyLength !== undefined) headers['content-length'] = String(options.bodyLength);
  const req = http.request(`${baseUrl}${path}`, { method: options.method ?? 'GET', headers, agent: false });
  req.on('error', () => undefined);
  const response = new Promise<IncomingMessage>((resolve) => req.once('response', resolve));
  const firstChunk = response.then(
    (res) =>
      new Promise<Buffer>((resolve) => {
        res.on('error', () => undefined);
        res.once('data', resolve);
      }),
  );
  if (options.bodyLength === undefined) req.end();
  return { req, response, firstChunk };
}

/** A request whose only header of interest is its test id. */
function id(name: string): Record<string, string> {
  return { 'x-test-id': name };
}

let nextId = 0;
const idsOfTest: string[] = [];
function newId(label: string): string {
  const name = `${label}-${++nextId}`;
  idsOfTest.push(name);
  return name;
}

// fcgiwrap never kills its scripts: what a FastCGI test leaves running is ended here, by pid
// (CGI leftovers are not touched: the last test reports them).
afterEach(() => {
  for (const name of idsOfTest.splice(0)) if (name.startsWith('fastcgi')) endRecorded(name);
});

// ---------------------------------------------------------------------------------------------
// The Nest app
// ---------------------------------------------------------------------------------------------

function mount(path: string, app: GatewayApp): Type {
  const cls = class {};
  Object.defineProperty(cls, 'name', { value: `Mount_${path.replace(/\W/g, '_')}` });
  MountGateway(path, app)(cls);
  return cls;
}

type Kind = 'cgi' | 'fastcgi';
const KINDS: Kind[] = ['cgi', 'fastcgi'];

let s: Started;
let fcgiwrap: Peer;
/** A second fcgiwrap, single process, that forwards the scripts' stderr as FastCGI STDERR (-f). */
let fcgiwrapStderr: { dir: string; socketPath: string; process: ChildProcess };
const fastcgiApps: Array<{ close(): void }> = [];

async function startFcgiwrapForwardingStderr(): Promise<typeof fcgiwrapStderr> {
  const dir = await tempDir('hostile-fcgiwrap-f');
  const socketPath = join(dir, 'fcgiwrap.sock');
  const proc = spawn(FCGIWRAP!, ['-f', '-c', '1', '-s', `unix:${socketPath}`], { env: { PATH: process.env.PATH }, stdio: 'ignore' });
  await waitForSocket(socketPath, proc);
  return { dir, socketPath, process: proc };
}

beforeAll(async () => {
  fcgiwrap = await startFcgiwrap(16);
  fcgiwrapStderr = await startFcgiwrapForwardingStderr();
  const env = { PID_DIR };
  const fastcgi = (options: Parameters<typeof fastcgiApp>[1], socketPath = fcgiwrap.socketPath) => {
    const app = fastcgiApp({ socketPath }, { scriptFilename: SCRIPT, env, ...options });
    fastcgiApps.push(app);
    return app;
  };
  const mounts = [
    mount('cgi', cgiApp(SCRIPT, { env, ...SHORT, maxStderrBytes: MAX_STDERR })),
    mount('cgi-patient', cgiApp(SCRIPT, { env, ...PATIENT })),
    mount('cgi-one', cgiApp(SCRIPT, { env, headersTimeout: 3000, idleTimeout: 3000, killGrace: 200, maxConcurrency: 1, maxQueue: 1 })),
    mount('fastcgi', fastcgi({ ...SHORT, keepAliveTimeout: 1000, maxStderrBytes: MAX_STDERR })),
    mount('fastcgi-patient', fastcgi({ ...PATIENT, keepAliveTimeout: 0 })),
    mount('fastcgi-one', fastcgi({ headersTimeout: 3000, idleTimeout: 3000, maxConnections: 1, maxQueue: 1, keepAliveTimeout: 0 })),
    mount('fastcgi-stderr', fastcgi({ ...SHORT, keepAliveTimeout: 0, maxStderrBytes: MAX_STDERR }, fcgiwrapStderr.socketPath)),
  ];
  @Module({ imports: [GatewayModule.forRoot({})], controllers: mounts })
  class HostileModule {}
  s = await startNest({ imports: [HostileModule] }, (app) => app.use(authenticate));
  baseUrl = s.url;
}, 30_000);

afterAll(async () => {
  for (const app of fastcgiApps) app.close();
  await s?.close();
  for (const pid of allRecordedPids()) {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  await fcgiwrap?.stop();
  if (fcgiwrapStderr) {
    const exited = once(fcgiwrapStderr.process, 'exit');
    fcgiwrapStderr.process.kill('SIGKILL');
    await exited;
    rmSync(fcgiwrapStderr.dir, { recursive: true, force: true });
  }
  rmSync(PID_DIR, { recursive: true, force: true });
});

const prefix = (kind: Kind, variant = '') => `/${kind}${variant}`;

function parseEnv(body: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of body.split('--body--')[0].split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/**
 * The stderr lines logged since log line `before`: some, at most MAX_STDERR bytes of the
 * script's output in all (plus the split of a line at the cap), and one notice of the cut.
 */
function expectCappedStderrLog(before: number): void {
  const lines = s.logger.lines
    .slice(before)
    .map((l) => l.message)
    .filter((m) => m.includes('stderr: '));
  const logged = lines.filter((m) => !/the rest is not logged/.test(m)).map((m) => m.slice(m.indexOf('stderr: ') + 8));
  expect(logged.join('\n')).toContain('stderr noise');
  expect(logged.reduce((sum, line) => sum + line.length + 1, 0)).toBeLessThanOrEqual(MAX_STDERR + 1);
  expect(lines.filter((m) => /more than 4096 bytes, the rest is not logged/.test(m))).toHaveLength(1);
}

/** Log lines (any level) since line `since` that mention `text`. */
function logged(text: string | RegExp, since = 0): string[] {
  return s.logger.lines
    .slice(since)
    .map((l) => l.message)
    .filter((m) => (typeof text === 'string' ? m.includes(text) : text.test(m)));
}

// ---------------------------------------------------------------------------------------------
// Forged identity and header smuggling
// ---------------------------------------------------------------------------------------------

describe.each(KINDS)('%s: forged identity and smuggled variables', (kind) => {
  const FORGED = {
    'Remote-User': 'admin',
    remote_user: 'admin',
    'X-Remote-User': 'admin',
    'X-Forwarded-User': 'admin',
    'X-WebAuth-User': 'admin',
    Remote_Ident: 'admin',
  };

  it('an anonymous request reaches the script without REMOTE_USER or any forged copy', async () => {
    const res = await send(`${prefix(kind)}/env`, { headers: FORGED });
    expect(res.status).toBe(200);
    const env = parseEnv(res.body);
    expect(env.GATEWAY_INTERFACE).toBe('CGI/1.1');
    expect(env.REMOTE_USER).toBeUndefined();
    expect(env.AUTH_TYPE).toBeUndefined();
    expect(Object.keys(env).filter((name) => /USER/.test(name))).toEqual([]);
    expect(res.body).not.toContain('admin');
  });

  it('an authenticated request reaches the script with only the real principal', async () => {
    const res = await send(`${prefix(kind)}/env`, { headers: { ...FORGED, authorization: basic('alice') } });
    expect(res.status).toBe(200);
    const env = parseEnv(res.body);
    expect(env.REMOTE_USER).toBe('alice');
    expect(env.AUTH_TYPE).toBe('Nest');
    expect(env.HTTP_AUTHORIZATION).toBeUndefined();
    expect(Object.keys(env).filter((name) => /USER/.test(name))).toEqual(['REMOTE_USER']);
    expect(res.body).not.toContain('admin');
  });

  it('drops Proxy (httpoxy) and header names with `_`; no header sets a meta-variable', async () => {
    const res = await send(`${prefix(kind)}/env`, {
      headers: {
        Proxy: 'http://evil.example:3128',
        X_Foo: 'underscored',
        'X-Foo': 'dashed',
        Content_Length: '999',
        Content_Type: 'text/evil',
        Path: '/evil/bin',
        Https: 'on',
        'Auth-Type': 'Forged',
        Script_Filename: '/etc/passwd',
        'X-Forwarded-For': '203.0.113.9',
      },
    });
    expect(res.status).toBe(200);
    const env = parseEnv(res.body);
    expect(env.HTTP_PROXY).toBeUndefined();
    expect(res.body).not.toContain('evil.example');
    expect(env.HTTP_X_FOO).toBe('dashed');
    expect(res.body).not.toContain('underscored');
    expect(env.CONTENT_LENGTH ?? '').not.toBe('999');
    expect(env.HTTP_CONTENT_LENGTH).toBeUndefined();
    expect(env.CONTENT_TYPE).toBeUndefined();
    expect(res.body).not.toContain('text/evil');
    expect(env.SCRIPT_FILENAME).toBe(SCRIPT);
    expect(res.body).not.toContain('/etc/passwd');
    expect(env.PATH).toBeDefined();
    expect(env.PATH).not.toContain('/evil/bin');
    expect(env.HTTPS).toBeUndefined();
    expect(env.AUTH_TYPE).toBeUndefined();
    expect(env.REMOTE_ADDR).toBe('127.0.0.1');
  });
});

// ---------------------------------------------------------------------------------------------
// Invalid script output
// ---------------------------------------------------------------------------------------------

describe.each(KINDS)('%s: invalid output is a 502 and leaves nothing running', (kind) => {
  // fcgiwrap rewrites the head on its way (a lone CR becomes CRLF), so its reasons differ.
  const cases: Array<[mode: string, cgiReason: RegExp]> = [
    ['cr-value', /X-Bad contains a control character/],
    ['nul-value', /X-Bad contains a control character/],
    ['folded', /folded header/],
    ['bad-status', /invalid Status header/],
    ['bad-status/range', /invalid Status header/],
    ['bad-status/twice', /invalid Status header/],
    ['huge-head', /headers exceed 65536 bytes/],
    ['huge-head-blank', /headers exceed 65536 bytes/],
  ];

  for (const [mode, cgiReason] of cases) {
    // KNOWN BUG: when the library rejects a FastCGI head while the responder still streams,
    // the connection it drops emits 'error' on a stdout that nobody listens to any more: an
    // uncaught exception, i.e. a crashed server (here: "Test suite failed to run"). That
    // cannot be caught inside a test (so not `it.failing`): these cases run with
    // HOSTILE_KNOWN_BUGS=1 until the library is fixed.
    const knownBug = false;
    (knownBug ? it.skip : it)(mode, async () => {
      const test = newId(`${kind}-${mode.replace('/', '-')}`);
      const before = s.logger.lines.length;
      const res = await send(`${prefix(kind, '-patient')}/${mode}`, { headers: id(test) });
      expect(res.status).toBe(502);
      // Nothing of the script's output reaches the client.
      expect(res.body).not.toMatch(/X-Bad|X-Filler|X-Folded|body/);
      const reasons = logged('invalid CGI response', before);
      expect(reasons.length).toBeGreaterThan(0);
      if (kind === 'cgi') {
        expect(reasons.some((r) => cgiReason.test(r))).toBe(true);
        await groupGone(test);
      } else {
        // fcgiwrap's script ends by itself, or dies writing to the pipe fcgiwrap closed once
        // the library dropped the connection.
        await pidsGone(test, 5000);
        await waitFor(() => ourConnectionsTo(fcgiwrap.socketPath) === 0, 3000, 'no connection to fcgiwrap');
        // Give a late error of the dropped connection the time to surface within this test.
        await sleep(200);
      }
    });
  }
});

/** Sends pipelined requests on one connection; returns all it receives until it closes. */
function pipelined(paths: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1');
    let data = '';
    socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
    const last = paths.length - 1;
    socket.write(paths.map((path, i) => `GET ${path} HTTP/1.1\r\nHost: x\r\n${i === last ? 'Connection: close\r\n' : ''}\r\n`).join(''));
  });
}

/** HTTP/1.1 responses as a client reads them off one connection, by their framing. */
function readResponses(raw: string): Array<{ head: string; body: string }> {
  const responses: Array<{ head: string; body: string }> = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const head = rest.slice(0, end);
    rest = rest.slice(end + 4);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    let body = '';
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const lineEnd = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, lineEnd), 16);
        if (lineEnd === -1 || Number.isNaN(size)) return responses;
        body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
        rest = rest.slice(lineEnd + 2 + size + 2);
        if (size === 0) break;
      }
    } else if (length) {
      body = rest.slice(0, Number(length[1]));
      rest = rest.slice(Number(length[1]));
    } else {
      body = rest;
      rest = '';
    }
    responses.push({ head, body });
  }
  return responses;
}

describe.each(KINDS)('%s: framing of the script\'s response', (kind) => {
  async function nextRequestGetsItsOwnAnswer(mode: string): Promise<void> {
    const raw = await pipelined([`${prefix(kind)}/${mode}`, `${prefix(kind)}/env`]);
    const responses = readResponses(raw);
    expect(responses.length).toBeGreaterThanOrEqual(1);
    expect(responses[0].body).toContain('hello');
    // The next request gets its own answer, or none (the connection was closed): never the script's.
    expect(responses.map((r) => r.body)).not.toContain('smuggled');
    if (responses.length > 1) expect(responses[1].body).toContain('GATEWAY_INTERFACE=CGI/1.1');
  }

  it('Transfer-Encoding of its own: the chunked-looking body stays a body', () => nextRequestGetsItsOwnAnswer('smuggle-chunked'));

  // KNOWN BUG (response desync, this one and the next): the script's Content-Length is sent on
  // as is and the body streamed whatever its length. Shorter: the client reads the next
  // response into this body (or waits for the missing bytes until the keep-alive timeout).
  // Longer: the bytes past it answer the next request on the connection.
  it('a body shorter than its Content-Length: the response is cut, the next request is not read into it', async () => {
    const raw = await pipelined([`${prefix(kind)}/short-body`, `${prefix(kind)}/env`]);
    const responses = readResponses(raw);
    expect(responses.length).toBeGreaterThanOrEqual(1);
    expect(responses[0].body.startsWith('hello')).toBe(true);
    expect(responses[0].body).not.toContain('GATEWAY_INTERFACE');
  });

  it('a body longer than its Content-Length cannot answer the next request on the connection', () =>
    nextRequestGetsItsOwnAnswer('smuggle'),
  );
});

// ---------------------------------------------------------------------------------------------
// Time limits and error output
// ---------------------------------------------------------------------------------------------

describe('cgi: time limits and error output', () => {
  it('a script that never answers gets a 504 after headersTimeout and is killed', async () => {
    const test = newId('cgi-silent');
    const res = await send('/cgi/silent', { headers: id(test) });
    expect(res.status).toBe(504);
    expect(logged(/sent no headers within 500 ms/).length).toBeGreaterThan(0);
    await groupGone(test);
  });

  it('a script that ignores SIGTERM is killed after killGrace', async () => {
    const test = newId('cgi-stubborn');
    const res = await send('/cgi/stubborn', { headers: id(test) });
    expect(res.status).toBe(504);
    await groupGone(test);
  });

  it('a script that sends its headers then hangs is cut after idleTimeout and killed', async () => {
    const test = newId('cgi-hang');
    const res = await send('/cgi/hang-after-headers', { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body.startsWith('first\n')).toBe(true);
    expect(res.complete).toBe(false);
    expect(logged(/sent no output for 500 ms/).length).toBeGreaterThan(0);
    await groupGone(test);
  });

  it('a script that keeps printing for longer than idleTimeout in all is not cut', async () => {
    const res = await send('/cgi/drip');
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.body.split('\n').filter(Boolean)).toHaveLength(30);
  });

  it('a script killed by a signal mid-body: the client sees the response broken off, not complete', async () => {
    const res = await send('/cgi/die-mid-body');
    expect(res.status).toBe(200);
    expect(res.body).toBe('first half\n');
    expect(res.complete).toBe(false);
    expect(logged(/exited with signal SIGKILL/).length).toBeGreaterThan(0);
  });

  // KNOWN BUG: for HEAD, respondFromOutput resumes the output with no idle timer; the script
  // lives on (holding its concurrency slot) until it ends by itself.
  it('HEAD: a script that sends its headers then hangs is stopped after idleTimeout', async () => {
    const test = newId('cgi-head-hang');
    try {
      const res = await send('/cgi/hang-after-headers', { method: 'HEAD', headers: id(test) });
      expect(res.status).toBe(200);
      expect(res.body).toBe('');
      await groupGone(test);
    } finally {
      endGroup(test); // what the bug leaves running
    }
  });

  it.each([1024 * 1024, 10 * 1024 * 1024])('a script that writes %d bytes to stderr first still answers; the log is capped', async (bytes) => {
    const test = newId('cgi-stderr');
    const before = s.logger.lines.length;
    const res = await send(`/cgi/stderr-flood/${bytes}`, { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body).toBe('survived\n');
    expect(res.complete).toBe(true);
    await groupGone(test);
    expectCappedStderrLog(before);
  });
});

describe('fastcgi: time limits and error output', () => {
  it('a script that never answers gets a 504 after headersTimeout; the connection is closed', async () => {
    const test = newId('fastcgi-silent');
    const res = await send('/fastcgi/silent', { headers: id(test) });
    expect(res.status).toBe(504);
    expect(logged(/sent no headers within 500 ms/).length).toBeGreaterThan(0);
    await waitFor(() => ourConnectionsTo(fcgiwrap.socketPath) === 0, 3000, 'no connection to fcgiwrap');
    endRecorded(test);
  });

  it('a script that sends its headers then hangs is cut after idleTimeout; the connection is closed', async () => {
    const test = newId('fastcgi-hang');
    const res = await send('/fastcgi/hang-after-headers', { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body.startsWith('first\n')).toBe(true);
    expect(res.complete).toBe(false);
    expect(logged(/sent no output for 500 ms/).length).toBeGreaterThan(0);
    await waitFor(() => ourConnectionsTo(fcgiwrap.socketPath) === 0, 3000, 'no connection to fcgiwrap');
    endRecorded(test);
  });

  // KNOWN BUG: as for CGI, the connection (and its slot) stays until the responder ends.
  it('HEAD: a script that sends its headers then hangs: the connection is closed after idleTimeout', async () => {
    const test = newId('fastcgi-head-hang');
    const res = await send('/fastcgi/hang-after-headers', { method: 'HEAD', headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    await waitFor(() => ourConnectionsTo(fcgiwrap.socketPath) === 0, 3000, 'no connection to fcgiwrap');
  });

  it('a script that writes 1 MiB to stderr first still answers (fcgiwrap keeps stderr to itself)', async () => {
    const test = newId('fastcgi-stderr');
    const res = await send('/fastcgi/stderr-flood/1048576', { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body).toBe('survived\n');
    await pidsGone(test);
  });

  it.each([1024 * 1024, 10 * 1024 * 1024])('%d bytes of FastCGI STDERR (fcgiwrap -f): the response arrives, the log says it is cut', async (bytes) => {
    const test = newId('fastcgi-stderr-f');
    const before = s.logger.lines.length;
    const res = await send(`/fastcgi-stderr/stderr-flood/${bytes}`, { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body).toBe('survived\n');
    expect(res.complete).toBe(true);
    await pidsGone(test);
    const notices = s.logger.lines.slice(before).filter((l) => /stderr: more than 4096 bytes, the rest is not logged/.test(l.message));
    expect(notices).toHaveLength(1);
  });

  it('FastCGI STDERR (fcgiwrap -f): no more than maxStderrBytes of it is logged', async () => {
    const test = newId('fastcgi-stderr-f');
    const before = s.logger.lines.length;
    const res = await send('/fastcgi-stderr/stderr-flood/1048576', { headers: id(test) });
    expect(res.status).toBe(200);
    await pidsGone(test);
    expectCappedStderrLog(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Fork and exit
// ---------------------------------------------------------------------------------------------

describe('cgi: a script that forks and exits', () => {
  it.each(['fork-detached', 'fork-holding'])('%s: the response completes and the background child is killed', async (mode) => {
    const test = newId(`cgi-${mode}`);
    // A long idleTimeout: the response must end because the group is stopped killGrace after
    // the script's exit, not because the output went idle.
    const res = await send(`/cgi-patient/${mode}`, { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body).toBe('done\n');
    expect(res.complete).toBe(true);
    const sleeper = Number(res.headers['x-sleeper']);
    expect(recordedPids(test)).toContain(sleeper);
    await groupGone(test);
    expect(alive(sleeper)).toBe(false);
  });
});

describe('fastcgi: a script that forks and exits', () => {
  it('fork-detached: the response completes', async () => {
    const test = newId('fastcgi-fork-detached');
    const res = await send('/fastcgi/fork-detached', { headers: id(test) });
    expect(res.status).toBe(200);
    expect(res.body).toBe('done\n');
    expect(res.complete).toBe(true);
    endRecorded(test);
  });

  it('fork-holding: answered (504) although fcgiwrap never ends the request; the connection is closed', async () => {
    // fcgiwrap buffers the small response until the script's output closes, which the
    // background child prevents: the library sees no headers and answers 504 in time.
    const test = newId('fastcgi-fork-holding');
    const res = await send('/fastcgi/fork-holding', { headers: id(test) });
    expect(res.status).toBe(504);
    await waitFor(() => ourConnectionsTo(fcgiwrap.socketPath) === 0, 3000, 'no connection to fcgiwrap');
  });
});

// ---------------------------------------------------------------------------------------------
// Client disconnects at every phase
// ---------------------------------------------------------------------------------------------

describe.each(KINDS)('%s: client disconnects (one slot)', (kind) => {
  const base = prefix(kind, '-one');
  const server = () => s.app.getHttpServer() as Server;

  /** The slot is free again: a following request is served. */
  async function followUpServed(): Promise<void> {
    const res = await send(`${base}/env`, { headers: id(newId(`${kind}-follow-up`)) });
    expect(res.status).toBe(200);
    expect(res.body).toContain('GATEWAY_INTERFACE=CGI/1.1');
  }

  async function noSocketsLeft(): Promise<void> {
    await waitFor(async () => (await connectionsOf(server())) === 0, 3000, 'the Nest server to have no connections');
    if (kind === 'fastcgi') {
      await waitFor(() => ourConnectionsTo(fcgiwrap.socketPath) === 0, 3000, 'no connection to fcgiwrap');
    }
  }

  it('while queued: the waiting request leaves the queue and never runs', async () => {
    const holder = newId(`${kind}-holder`);
    const queued = newId(`${kind}-queued`);
    const third = newId(`${kind}-third`);
    // The holder keeps the only slot without sending headers.
    const a = open(`${base}/silent`, { headers: id(holder) });
    await started(holder);
    const b = open(`${base}/env`, { headers: id(queued) });
    await waitFor(async () => (await connectionsOf(server())) === 2, 3000, 'the queued request to arrive');
    await sleep(100);
    b.req.destroy();
    await waitFor(async () => (await connectionsOf(server())) === 1, 3000, 'the queued request to be gone');
    // maxQueue is 1: had the gone request kept its place, this one would get a 503.
    const c = send(`${base}/env`, { headers: id(third) });
    await waitFor(async () => (await connectionsOf(server())) === 2, 3000, 'the third request to arrive');
    await sleep(100);
    a.req.destroy();
    const res = await c;
    expect(res.status).toBe(200);
    expect(recordedPids(queued)).toEqual([]);
    if (kind === 'cgi') await groupGone(holder);
    else endRecorded(holder);
    await noSocketsLeft();
  });

  it('before the headers: the script (sleeping) is stopped', async () => {
    const test = newId(`${kind}-before-headers`);
    const a = open(`${base}/silent`, { headers: id(test) });
    await started(test, 2);
    a.req.destroy();
    if (kind === 'cgi') await groupGone(test);
    await followUpServed();
    await noSocketsLeft();
    endRecorded(test);
  });

  it('mid-body: the script (printing slowly) is stopped', async () => {
    const test = newId(`${kind}-mid-body`);
    const a = open(`${base}/slow-body`, { headers: id(test) });
    const res = await a.response;
    expect(res.statusCode).toBe(200);
    await a.firstChunk;
    a.req.destroy();
    if (kind === 'cgi') await groupGone(test);
    // fcgiwrap closes the script's pipes once writing to the dropped connection fails;
    // the script dies of SIGPIPE at its next write.
    else await pidsGone(test, 5000);
    await followUpServed();
    await noSocketsLeft();
  });

  it('during a large upload that the script reads slowly: the script is stopped', async () => {
    const test = newId(`${kind}-upload`);
    const size = 64 * 1024 * 1024;
    const a = open(`${base}/slow-read`, { method: 'POST', headers: { ...id(test), 'content-type': 'application/octet-stream' }, bodyLength: size });
    const chunk = Buffer.alloc(256 * 1024, 'u');
    let sent = 0;
    let stop = false;
    const pump = (async () => {
      while (!stop && sent < size) {
        sent += chunk.length;
        if (!a.req.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              a.req.off('drain', done).off('close', done);
              resolve();
            };
            a.req.on('drain', done).on('close', done);
          });
        }
      }
    })();
    await started(test);
    await sleep(300);
    stop = true;
    // An abortive close (RST): with a plain close (FIN) the server only learns that the client
    // is gone once the script has read the megabytes still buffered on the way to it.
    a.req.socket!.resetAndDestroy();
    a.req.destroy();
    await pump;
    expect(sent).toBeLessThan(size);
    if (kind === 'cgi') await groupGone(test);
    // fcgiwrap sees the end of the request, closes the script's stdin; the script answers and exits.
    else await pidsGone(test, 10_000);
    await followUpServed();
    await noSocketsLeft();
  });
});

// ---------------------------------------------------------------------------------------------
// Nothing left behind
// ---------------------------------------------------------------------------------------------

describe('at the end', () => {
  it('no process of the fixture directory nor any recorded pid is running', async () => {
    await waitFor(() => fixtureProcesses().length === 0, 3000, 'fixture processes to end').catch(() => undefined);
    expect(fixtureProcesses()).toEqual([]);
    expect(allRecordedPids().filter(alive)).toEqual([]);
  });
});
