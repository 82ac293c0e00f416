// `npm run bench` / `npm run bench:quick`: each gateway path beside its alternatives, on the same
// workload, in one run on one machine; writes docs/benchmarks.md.
// Every server under test runs in a process of its own (bench/servers/*.mjs); the load comes
// from wrk; rounds are interleaved (A, B, C, A, B, C, …) and medians are reported.
// Usage: npm run build && node bench/run.mjs [--quick]
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { APACHE, prepareApacheCgi } from './apache.mjs';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const QUICK = process.argv.includes('--quick');
const CFG = QUICK
  ? { rounds: 1, duration: 2, warmup: 1, connections: 32, streamMiB: 128, streamRounds: 1, floodSeconds: 2, slowClients: 500, slowSpreadMs: 1000 }
  : { rounds: 5, duration: 8, warmup: 3, connections: 32, streamMiB: 1024, streamRounds: 3, floodSeconds: 5, slowClients: 500, slowSpreadMs: 2000 };
const WRK = '/usr/bin/wrk';
const NGINX = ['/usr/sbin/nginx'].find((p) => existsSync(p));
const PHP_FPM = ['/usr/sbin/php-fpm8.2', '/usr/sbin/php-fpm'].find((p) => existsSync(p));
const FCGIWRAP = ['/usr/sbin/fcgiwrap'].find((p) => existsSync(p));
const HPM = existsSync(join(root, 'node_modules/http-proxy-middleware/package.json'));
const MIB = 1024 * 1024;
/**
 * Row 7's context: a first old-generation limit that a booted Nest app does not outgrow, so that
 * the socket buffers of a big upload do not start a full collection every few megabytes.
 */
const BIG_FIRST_OLD_SPACE = '--initial-old-space-size=64';
const log = (...args) => console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(0)}s]`, ...args);
const t0 = performance.now();

// ---------------------------------------------------------------------------------------------
// Processes: every server is a child of ours, in its own process group; all are stopped at exit.
const started = [];

async function startProcess(name, command, args, { ready, env } = {}) {
  const proc = spawn(command, args, { cwd: here, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: env ?? process.env });
  started.push(proc);
  let output = '';
  proc.stderr.on('data', (c) => (output += c));
  const server = { name, proc, pid: proc.pid, output: () => output };
  server.stop = () => stopProcess(proc);
  if (ready) await ready(server);
  return server;
}

/** A Node server from bench/servers/: waits for its `{"port":N}` line. */
async function startServer(name, file, args = [], nodeArgs = []) {
  return startProcess(name, process.execPath, [...nodeArgs, join(here, 'servers', file), ...args], {
    ready: async (server) => {
      let line = '';
      const port = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${server.output()}`)), 20_000);
        server.proc.stdout.on('data', (c) => {
          line += c;
          if (line.includes('\n')) {
            clearTimeout(timer);
            resolve(JSON.parse(line.split('\n')[0]).port);
          }
        });
        server.proc.once('exit', (code) => reject(new Error(`${name} exited (${code}):\n${server.output()}`)));
      });
      server.port = port;
      server.base = `http://127.0.0.1:${port}`;
    },
  });
}

async function stopProcess(proc) {
  const group = (signal) => {
    try {
      process.kill(-proc.pid, signal);
    } catch {
      // gone
    }
  };
  if (proc.exitCode === null && proc.signalCode === null) {
    const exited = once(proc, 'exit');
    group('SIGTERM');
    const timer = setTimeout(() => group('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  group('SIGKILL');
}

async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function waitFor(check, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(50);
  }
  return false;
}

const socketAccepts = (path) =>
  new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

// ---------------------------------------------------------------------------------------------
// /proc: the process tree of a server, its resident memory, children and connections.
function children(pid) {
  const out = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}
function tree(pid) {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...children(all[i]));
  return all;
}
function statusField(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
const treeRss = (pid) => tree(pid).reduce((n, p) => n + statusField(p, 'VmRSS'), 0);
const fdCount = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
};

/** Samples the resident memory of a process tree every `ms` until stopped; returns the peak. */
function rssSampler(pid, ms = 50) {
  let peak = treeRss(pid);
  const timer = setInterval(() => (peak = Math.max(peak, treeRss(pid))), ms);
  return () => (clearInterval(timer), (peak = Math.max(peak, treeRss(pid))), peak);
}

async function establishedOn(port) {
  const { stdout } = await run('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`]);
  return stdout.split('\n').filter(Boolean).length;
}

// ---------------------------------------------------------------------------------------------
// wrk
function seconds(value, unit) {
  return Number(value) * { us: 1e-6, ms: 1e-3, s: 1, m: 60 }[unit];
}
/** The machine's CPU times (/proc/stat, all CPUs): total and stolen by the hypervisor. */
function cpuTimes() {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}
async function wrk(url, { connections = CFG.connections, duration = CFG.duration, threads = 1, timeout = 10 } = {}) {
  const before = cpuTimes();
  const { stdout } = await run(WRK, [`-t${threads}`, `-c${connections}`, `-d${duration}s`, `--timeout`, `${timeout}s`, '--latency', url], {
    maxBuffer: 1 << 20,
  });
  const after = cpuTimes();
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(stdout);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? 0),
    requests: Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0),
    p99ms: p99 ? seconds(p99[1], p99[2]) * 1000 : NaN,
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0),
    socketErrors: socket ? socket.slice(1).reduce((n, x) => n + Number(x), 0) : 0,
    socketDetail: socket?.[0],
    // On a shared VM the host takes CPU time away under load: the share it took while this ran.
    stealPct: after.total > before.total ? (100 * (after.steal - before.steal)) / (after.total - before.total) : 0,
  };
}

const median = (xs) => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ---------------------------------------------------------------------------------------------
// Peers that are not Node: Apache mod_cgid, php-fpm.
async function startApache(scripts) {
  const port = await freePort();
  const prepared = prepareApacheCgi(scripts, port);
  if (!prepared) return undefined;
  const server = await startProcess('apache', APACHE, ['-f', prepared.config, '-DFOREGROUND']);
  server.port = port;
  server.base = `http://127.0.0.1:${port}`;
  const ok = await waitFor(() => fetch(`${server.base}/c/hello.cgi`).then((r) => r.ok));
  const stop = server.stop;
  server.stop = async () => (await stop(), rmSync(prepared.dir, { recursive: true, force: true }));
  if (!ok) {
    await server.stop();
    return undefined;
  }
  return server;
}

async function startPhpFpm(children = 4) {
  if (!PHP_FPM) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'bench-fpm-'));
  const socketPath = join(dir, 'fpm.sock');
  const config = join(dir, 'php-fpm.conf');
  writeFileSync(
    config,
    [
      '[global]',
      `pid = ${join(dir, 'fpm.pid')}`,
      `error_log = ${join(dir, 'fpm.log')}`,
      'daemonize = no',
      '[bench]',
      `listen = ${socketPath}`,
      'listen.mode = 0666',
      'listen.backlog = 1024',
      'pm = static',
      `pm.max_children = ${children}`,
      'clear_env = yes',
      '',
    ].join('\n'),
  );
  const server = await startProcess('php-fpm', PHP_FPM, ['-F', '-R', '-n', '-y', config], { env: { PATH: process.env.PATH } });
  server.socketPath = socketPath;
  const stop = server.stop;
  server.stop = async () => (await stop(), rmSync(dir, { recursive: true, force: true }));
  if (!(await waitFor(() => socketAccepts(socketPath)))) {
    await server.stop();
    return undefined;
  }
  return server;
}

/**
 * nginx as a user would configure it in front of the same peers: proxy_pass with keep-alive
 * connections to the Node upstream (/p/), fcgiwrap for the CGI script (/c/), php-fpm (/f/).
 */
async function startNginx({ upstream, fpm, cgiScript, docRoot }) {
  if (!NGINX) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
  const fcgiwrapSocket = join(dir, 'fcgiwrap.sock');
  const fcgiwrap = FCGIWRAP
    ? await startProcess('fcgiwrap', FCGIWRAP, ['-c', String(CFG.connections), '-s', `unix:${fcgiwrapSocket}`])
    : undefined;
  if (fcgiwrap && !(await waitFor(() => socketAccepts(fcgiwrapSocket)))) throw new Error(`fcgiwrap did not start: ${fcgiwrap.output()}`);
  const port = await freePort();
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `  ${name}_temp_path ${dir}/${name};`);
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'master_process on;',
      'worker_processes auto;',
      'user root;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      ...temp,
      `  upstream node { server 127.0.0.1:${upstream.port}; keepalive 64; }`,
      '  server {',
      `    listen 127.0.0.1:${port};`,
      '    location /p/ {',
      '      proxy_pass http://node/;',
      '      proxy_http_version 1.1;',
      '      proxy_set_header Connection "";',
      '      proxy_set_header Host $host;',
      '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
      '    }',
      ...(fcgiwrap
        ? ['    location /c/ {', '      include /etc/nginx/fastcgi_params;', `      fastcgi_param SCRIPT_FILENAME ${cgiScript};`, `      fastcgi_pass unix:${fcgiwrapSocket};`, '    }']
        : []),
      ...(fpm
        ? ['    location ~ ^/f(/.+\\.php)$ {', '      include /etc/nginx/fastcgi_params;', `      fastcgi_param SCRIPT_FILENAME ${docRoot}$1;`, `      fastcgi_pass unix:${fpm.socketPath};`, '    }']
        : []),
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const server = await startProcess('nginx', NGINX, ['-c', join(dir, 'nginx.conf'), '-p', dir]);
  server.port = port;
  server.base = `http://127.0.0.1:${port}`;
  server.hasCgi = Boolean(fcgiwrap);
  const stop = server.stop;
  server.stop = async () => (await stop(), await fcgiwrap?.stop(), rmSync(dir, { recursive: true, force: true }));
  if (!(await waitFor(() => fetch(`${server.base}/p/hello`).then((r) => r.ok)))) {
    const log = readFileSync(join(dir, 'error.log'), 'utf8');
    await server.stop();
    throw new Error(`nginx did not start: ${server.output()} ${log}`);
  }
  return server;
}

// ---------------------------------------------------------------------------------------------
// Versions and machine
function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return { cpus: cpus().length, model, memGiB: (totalmem() / 1024 ** 3).toFixed(1), kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() };
}
const pkgVersion = (name) => {
  try {
    return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return 'not installed';
  }
};
async function toolVersion(command, args, pattern) {
  try {
    const { stdout, stderr } = await run(command, args).catch((e) => e);
    return (pattern.exec(`${stdout}${stderr}`)?.[1] ?? 'unknown').trim();
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------
async function main() {
  log(`mode: ${QUICK ? 'quick' : 'full'}`, CFG);
  const cgiScript = join(here, 'fixtures/hello.cgi');
  const docRoot = join(here, 'fixtures');
  const notes = [];

  // Peers and servers, all started up front (idle servers cost no CPU).
  const upstream = await startServer('upstream', 'upstream.mjs');
  const fpm = await startPhpFpm();
  // nginx gets php-fpm workers of its own: a FastCGI connection that is kept alive holds its
  // worker, so the gateway's idle pool would otherwise keep nginx waiting (and the other way).
  const nginxFpm = fpm && NGINX ? await startPhpFpm() : null;
  const streamScript = join(here, 'fixtures/stream.cgi');
  const apache = await startApache([cgiScript, streamScript]);
  const nginx = await startNginx({ upstream, fpm: nginxFpm, cgiScript, docRoot });
  const S = {
    mount: await startServer('nest-mount', 'nest-mount.mjs'),
    express: await startServer('express-mount', 'express-mount.mjs'),
    consumer: await startServer('nest-consumer', 'nest-consumer.mjs'),
    floor: await startServer('nest-floor', 'nest-floor.mjs'),
    callapp: await startServer('nest-callapp', 'nest-callapp.mjs'),
    hono: await startServer('nest-hono', 'nest-hono.mjs'),
    honoNode: await startServer('hono-node', 'hono-node.mjs'),
    honoConsumer: await startServer('nest-hono-consumer', 'nest-hono-consumer.mjs'),
    proxy: await startServer('nest-proxy', 'nest-proxy.mjs', [upstream.base]),
    ...(HPM ? { hpm: await startServer('nest-hpm', 'nest-hpm.mjs', [upstream.base]) } : {}),
    cgi: await startServer('nest-cgi', 'nest-cgi.mjs', [cgiScript, streamScript]),
    native: await startServer('nest-native', 'nest-native.mjs'),
    nativeGateway: await startServer('nest-native-gateway', 'nest-native.mjs', ['--with-gateway']),
    streamMount: await startServer('nest-stream-mount', 'nest-stream-mount.mjs'),
    streamCallapp: await startServer('nest-stream-callapp', 'nest-stream-callapp.mjs'),
    streamFloor: await startServer('nest-stream-floor', 'nest-stream-floor.mjs'),
    // Row 7's context: V8 sizing, not the gateway, is what slows big uploads in a Nest process.
    besideNest: await startServer('upstream-beside-nest', 'upstream.mjs', ['--beside-nest']),
    // The same gateways in Node started with a larger first old-generation limit (bench/findings.md, tenth round).
    streamMountHeap: await startServer('nest-stream-mount-heap', 'nest-stream-mount.mjs', [], [BIG_FIRST_OLD_SPACE]),
    streamCallappHeap: await startServer('nest-stream-callapp-heap', 'nest-stream-callapp.mjs', [], [BIG_FIRST_OLD_SPACE]),
    proxyHeap: await startServer('nest-proxy-heap', 'nest-proxy.mjs', [upstream.base], [BIG_FIRST_OLD_SPACE]),
    cgiHeap: await startServer('nest-cgi-heap', 'nest-cgi.mjs', [cgiScript, streamScript], [BIG_FIRST_OLD_SPACE]),
    ...(fpm ? { fastcgi: await startServer('nest-fastcgi', 'nest-fastcgi.mjs', [fpm.socketPath, docRoot]) } : {}),
  };
  if (!HPM) notes.push('http-proxy-middleware is not in node_modules: the "http-proxy-middleware 3 in Nest" reference of row 4 is skipped.');
  if (!NGINX) notes.push('nginx is not installed (/usr/sbin/nginx missing): the nginx proxy_pass (row 4), nginx + fcgiwrap (row 5) and nginx + php-fpm (row 6) references are skipped.');
  if (!apache) notes.push('Apache with mod_cgid could not be started: the Apache reference of row 5 is skipped.');
  if (!fpm) notes.push('php-fpm is not installed: row 6 is skipped.');

  // Throughput targets. `who` is the process whose tree's RSS is measured.
  const T = {
    // Each row's path runs next to its reference in every round: this VM's speed drifts over
    // tens of seconds (bench/findings.md, eleventh round).
    mount: { label: '`@MountGateway` of an Express app', url: `${S.mount.base}/x/hello`, who: S.mount },
    callapp: { label: '`callApp` with capture, response returned', url: `${S.callapp.base}/y/hello`, who: S.callapp },
    express: { label: "Express `app.use('/x', sub)`", url: `${S.express.base}/x/hello`, who: S.express },
    consumer: { label: 'Nest `MiddlewareConsumer` mounting the same app', url: `${S.consumer.base}/x/hello`, who: S.consumer },
    floor: { label: 'a Nest controller calling the same app by hand (`@Res()`, no gateway; context only)', url: `${S.floor.base}/x/hello`, who: S.floor },
    hono: { label: 'Hono via `@MountGateway(fetchApp)`', url: `${S.hono.base}/h/hello`, who: S.hono },
    honoConsumer: { label: "Hono on `@hono/node-server`'s listener, mounted in Nest (`MiddlewareConsumer`)", url: `${S.honoConsumer.base}/h/hello`, who: S.honoConsumer },
    honoNode: { label: 'Hono on `@hono/node-server` alone (no Nest; context only)', url: `${S.honoNode.base}/h/hello`, who: S.honoNode },
    proxy: { label: '`proxyApp` to a Node upstream', url: `${S.proxy.base}/p/hello`, who: S.proxy },
    ...(HPM ? { hpm: { label: 'http-proxy-middleware 3 in Nest (`MiddlewareConsumer`)', url: `${S.hpm.base}/p/hello`, who: S.hpm } } : {}),
    ...(nginx ? { nginxProxy: { label: 'nginx proxy_pass (keep-alive upstream, `worker_processes auto`)', url: `${nginx.base}/p/hello`, who: nginx } } : {}),
    upstream: { label: 'the Node upstream, direct (no proxy; context only)', url: `${upstream.base}/hello`, who: upstream },
    cgi: { label: '`cgiApp` on a shell script', url: `${S.cgi.base}/c/hello.cgi`, who: S.cgi },
    ...(apache ? { apache: { label: 'Apache 2.4 mod_cgid (event MPM), same script', url: `${apache.base}/c/hello.cgi`, who: apache } } : {}),
    ...(nginx?.hasCgi ? { nginxCgi: { label: `nginx + fcgiwrap (${CFG.connections} preforked), same script`, url: `${nginx.base}/c/hello.cgi`, who: nginx } } : {}),
    ...(fpm
      ? {
          fastcgi: { label: '`fastcgiApp` to php-fpm (4 static workers)', url: `${S.fastcgi.base}/f/hello.php`, who: S.fastcgi },
          native: { label: 'Nest native controller, same text', url: `${S.native.base}/n/hello.php`, who: S.native },
          nativeGateway: { label: 'the same native controller in an app that imports GatewayModule (context only)', url: `${S.nativeGateway.base}/n/hello.php`, who: S.nativeGateway },
          ...(nginx ? { nginxFpm: { label: 'nginx + php-fpm (the same, 4 workers of its own)', url: `${nginx.base}/f/hello.php`, who: nginx } } : {}),
        }
      : {}),
  };
  for (const [key, t] of Object.entries(T)) {
    const r = await fetch(t.url);
    const body = await r.text();
    if (r.status !== 200 || body !== 'hello\n') throw new Error(`${key}: ${t.url} answered ${r.status} ${JSON.stringify(body)}`);
    t.runs = [];
    t.peakRss = 0;
  }

  // Warm-up, then interleaved rounds over every target.
  const order = Object.keys(T);
  for (const key of order) {
    log(`warm-up ${key}`);
    await wrk(T[key].url, { duration: CFG.warmup });
  }
  for (let round = 1; round <= CFG.rounds; round++) {
    for (const key of order) {
      const t = T[key];
      const stopSampling = rssSampler(t.who.pid);
      const result = await wrk(t.url);
      t.peakRss = Math.max(t.peakRss, stopSampling());
      t.runs.push(result);
      log(`round ${round} ${key}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99ms.toFixed(2)} ms, errors ${result.non2xx + result.socketErrors}, steal ${result.stealPct.toFixed(0)}%`);
    }
  }
  for (const t of Object.values(T)) {
    t.rps = median(t.runs.map((r) => r.rps));
    t.p99 = median(t.runs.map((r) => r.p99ms));
    t.errors = t.runs.reduce((n, r) => n + r.non2xx + r.socketErrors, 0);
  }

  // Comparisons: path, reference, goal (minimum ratio; null: context only).
  const comparisons = [
    { row: 1, path: 'mount', ref: 'express', goal: 0.95 },
    { row: 1, path: 'mount', ref: 'consumer', goal: null },
    { row: 1, path: 'mount', ref: 'floor', goal: null },
    { row: 2, path: 'callapp', ref: 'mount', goal: 0.9 },
    { row: 3, path: 'hono', ref: 'honoConsumer', goal: 0.9 },
    { row: 3, path: 'hono', ref: 'honoNode', goal: null },
    { row: 4, path: 'proxy', ref: HPM ? 'hpm' : null, refLabel: 'http-proxy-middleware 3 in Nest', goal: 1.5 },
    { row: 4, path: 'proxy', ref: nginx ? 'nginxProxy' : null, refLabel: 'nginx proxy_pass', goal: 0.8 },
    { row: 4, path: 'proxy', ref: 'upstream', goal: null },
    // What nginx's rate asks of any proxy inside a Nest app: this one sends no upstream request at all.
    ...(fpm && nginx
      ? [{ row: 4, path: 'nativeGateway', pathLabel: 'a Nest controller answering the text itself, no upstream: the most any proxy inside a Nest app could reach (context only)', ref: 'nginxProxy', goal: null }]
      : []),
    { row: 5, path: 'cgi', ref: apache ? 'apache' : null, refLabel: 'Apache mod_cgid', goal: 1.0 },
    { row: 5, path: 'cgi', ref: nginx?.hasCgi ? 'nginxCgi' : null, refLabel: 'nginx + fcgiwrap', goal: null },
    ...(fpm
      ? [
          { row: 6, path: 'fastcgi', ref: 'native', goal: 0.8 },
          { row: 6, path: 'fastcgi', ref: 'nativeGateway', goal: null },
          { row: 6, path: 'fastcgi', ref: nginx ? 'nginxFpm' : null, refLabel: 'nginx + php-fpm', goal: null },
        ]
      : []),
  ];

  // Row 7: big bodies through each kind, beside the same transfer without the gateway; the
  // gateway's own RSS growth must stay small.
  const streamTargets = [
    { key: 'direct', label: 'the Node listener, direct (no Nest)', url: `${upstream.base}/stream`, who: upstream },
    { key: 'besideNest', label: 'the same Node listener, direct, in a process that has also booted a Nest app it does not use (context only)', url: `${S.besideNest.base}/stream`, who: S.besideNest, ref: 'direct', context: true },
    { key: 'nestFloor', label: 'the same listener in a Nest controller by hand (`@Res()`, no gateway; context only)', url: `${S.streamFloor.base}/s/stream`, who: S.streamFloor, ref: 'direct', context: true },
    { key: 'mount', label: '`@MountGateway` of the same Node listener', url: `${S.streamMount.base}/s/stream`, who: S.streamMount, ref: 'direct' },
    { key: 'mountHeap', label: `\`@MountGateway\` as above, Node started with \`${BIG_FIRST_OLD_SPACE}\` (context only)`, url: `${S.streamMountHeap.base}/s/stream`, who: S.streamMountHeap, ref: 'direct', context: true },
    { key: 'callapp', label: '`callApp` of the same Node listener, response returned', url: `${S.streamCallapp.base}/s/stream`, who: S.streamCallapp, ref: 'direct' },
    { key: 'callappHeap', label: `\`callApp\` as above, Node started with \`${BIG_FIRST_OLD_SPACE}\` (context only)`, url: `${S.streamCallappHeap.base}/s/stream`, who: S.streamCallappHeap, ref: 'direct', context: true },
    { key: 'proxy', label: '`proxyApp` to the same Node listener (upstream process)', url: `${S.proxy.base}/p/stream`, who: S.proxy, ref: 'direct' },
    { key: 'proxyHeap', label: `\`proxyApp\` as above, Node started with \`${BIG_FIRST_OLD_SPACE}\` (context only)`, url: `${S.proxyHeap.base}/p/stream`, who: S.proxyHeap, ref: 'direct', context: true },
    ...(apache ? [{ key: 'apacheCgi', label: 'Apache mod_cgid running `bench/fixtures/stream.cgi`', url: `${apache.base}/c/stream.cgi`, who: apache }] : []),
    { key: 'cgi', label: '`cgiApp` running the same script', url: `${S.cgi.base}/cs/stream.cgi`, who: S.cgi, ref: apache ? 'apacheCgi' : undefined },
    { key: 'cgiHeap', label: `\`cgiApp\` as above, Node started with \`${BIG_FIRST_OLD_SPACE}\` (context only)`, url: `${S.cgiHeap.base}/cs/stream.cgi`, who: S.cgiHeap, ref: apache ? 'apacheCgi' : undefined, context: true },
  ];
  const streams = [];
  for (const target of streamTargets) {
    const client = async (mib) => {
      const c = await startProcess(`stream-client ${target.key}`, process.execPath, [join(here, 'stream-client.mjs'), target.url, String(mib)]);
      let out = '';
      c.proc.stdout.on('data', (d) => (out += d));
      const [code] = await once(c.proc, 'exit');
      if (code !== 0) throw new Error(`stream client failed (${code}): ${c.output()}`);
      return JSON.parse(out);
    };
    await client(16); // warm-up: what the first transfer allocates once is not buffering
    // The gateway process alone: a CGI script's own memory is not the gateway buffering.
    const baseline = statusField(target.who.pid, 'VmRSS');
    let peak = baseline;
    const timer = setInterval(() => (peak = Math.max(peak, statusField(target.who.pid, 'VmRSS'))), 20);
    log(`stream ${CFG.streamMiB} MiB through ${target.key}, ${CFG.streamRounds} time(s)`);
    // A transfer takes a second or two: the median of several, every one of them checked.
    const transfers = [];
    for (let i = 0; i < CFG.streamRounds; i++) transfers.push(await client(CFG.streamMiB));
    clearInterval(timer);
    const growth = Math.max(peak, statusField(target.who.pid, 'VmRSS')) - baseline;
    const r = {
      ...transfers[0],
      downSeconds: median(transfers.map((t) => t.downSeconds)),
      upSeconds: median(transfers.map((t) => t.upSeconds)),
      downStatus: transfers.every((t) => t.downStatus === 200) ? 200 : transfers.find((t) => t.downStatus !== 200).downStatus,
      upStatus: transfers.every((t) => t.upStatus === 200) ? 200 : transfers.find((t) => t.upStatus !== 200).upStatus,
    };
    const hashesEqual = transfers.every((t) => t.down.sha256 === t.expected.sha256 && t.up.sha256 === t.expected.sha256 && t.down.bytes === CFG.streamMiB * MIB);
    const ref = streams.find((x) => x.key === target.ref);
    const ratio = ref ? Math.min(ref.downSeconds / r.downSeconds, ref.upSeconds / r.upSeconds) : undefined;
    const sound = hashesEqual && r.downStatus === 200 && r.upStatus === 200 && r.down.bytes === CFG.streamMiB * MIB;
    const ok = !target.ref || target.context ? sound : sound && growth < 64 * MIB && (ratio === undefined || ratio >= 0.8);
    streams.push({ ...target, ...r, growth, hashesEqual, ratio, ok });
    log(`stream ${target.key}: down ${r.downSeconds.toFixed(1)} s, up ${r.upSeconds.toFixed(1)} s, RSS growth ${(growth / MIB).toFixed(1)} MiB${ratio === undefined ? '' : `, ${ratio.toFixed(2)}x of ${target.ref}`}, ${ok ? 'OK' : 'FAILED'}`);
  }

  // Row 8: 500 concurrent clients through each kind; then children and connections back to baseline.
  const floods = [];
  for (const key of ['mount', 'callapp', 'hono', 'proxy', 'cgi', ...(fpm ? ['fastcgi'] : [])]) {
    const t = T[key];
    const pid = t.who.pid;
    const port = t.who.port;
    const before = { children: tree(pid).length - 1, conns: await establishedOn(port), fds: fdCount(pid) };
    const stopSampling = rssSampler(pid);
    log(`flood ${key}: wrk -c${CFG.slowClients} ${CFG.floodSeconds}s`);
    const w = await wrk(t.url, { connections: CFG.slowClients, duration: CFG.floodSeconds, threads: 2, timeout: 10 });
    log(`flood ${key}: ${CFG.slowClients} slow clients`);
    const slowProc = await startProcess(`slow-client ${key}`, process.execPath, [join(here, 'slow-client.mjs'), t.url, String(CFG.slowClients), String(CFG.slowSpreadMs)]);
    let out = '';
    slowProc.proc.stdout.on('data', (d) => (out += d));
    await once(slowProc.proc, 'exit');
    const slow = JSON.parse(out || '{"statuses":{},"errors":{"client crashed":1}}');
    const peak = stopSampling();
    let after;
    const settled = await waitFor(async () => {
      after = { children: tree(pid).length - 1, conns: await establishedOn(port), fds: fdCount(pid) };
      return after.children <= before.children && after.conns <= before.conns;
    }, 10_000);
    const slowOk = Object.keys(slow.errors).length === 0 && Object.keys(slow.statuses).every((s) => s === '200');
    const ok = w.non2xx === 0 && w.socketErrors === 0 && slowOk && settled;
    floods.push({ key, label: t.label, wrk: w, slow, before, after, settled, peak, ok });
    log(`flood ${key}: wrk ${w.requests} requests, non-2xx ${w.non2xx}, ${w.socketDetail ?? 'no socket errors'}; slow ${JSON.stringify(slow)}; children ${before.children}->${after.children}, conns ${before.conns}->${after.conns}, fds ${before.fds}->${after.fds}; ${ok ? 'OK' : 'FAILED'}`);
  }

  // Versions
  const versions = {
    node: process.version,
    nest: pkgVersion('@nestjs/core'),
    platformExpress: pkgVersion('@nestjs/platform-express'),
    express: pkgVersion('express'),
    undici: pkgVersion('undici'),
    hono: pkgVersion('hono'),
    honoNode: pkgVersion('@hono/node-server'),
    gateway: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version,
    wrk: await toolVersion(WRK, ['-v'], /^wrk (\S+)/m),
    apache: apache ? await toolVersion(APACHE, ['-v'], /Server version: (.*)/) : 'not used',
    phpFpm: fpm ? await toolVersion(PHP_FPM, ['-v'], /^(PHP \S+)/m) : 'not used',
    nginx: nginx ? await toolVersion(NGINX, ['-v'], /nginx version: (.*)/) : 'not used',
    hpm: pkgVersion('http-proxy-middleware'),
  };

  const withoutProcess = ({ who, ...rest }) => rest;
  const results = {
    generatedAt: new Date().toISOString(),
    quick: QUICK,
    cfg: CFG,
    machine: machine(),
    T: Object.fromEntries(Object.entries(T).map(([key, t]) => [key, withoutProcess(t)])),
    comparisons,
    streams: streams.map(withoutProcess),
    floods,
    versions,
    notes,
  };
  writeFileSync(join(root, 'docs/benchmarks.json'), `${JSON.stringify(results, null, 1)}\n`);
  writeFileSync(join(root, 'docs/benchmarks.md'), report(results));
  log('wrote docs/benchmarks.md');
  const failed = comparisons.filter((c) => c.ref && T[c.ref] && c.goal && T[c.path].rps / T[c.ref].rps < c.goal);
  for (const c of failed) log(`goal missed: row ${c.row} ${c.path} vs ${c.ref}: ${(T[c.path].rps / T[c.ref].rps).toFixed(2)}x < ${c.goal}x`);
}

// ---------------------------------------------------------------------------------------------
function report(R) {
  const { T, comparisons, streams, floods, versions, notes } = R;
  const m = R.machine;
  const CFG = R.cfg;
  const QUICK = R.quick;
  const mib = (n) => (n / MIB).toFixed(0);
  const rps = (n) => (Number.isFinite(n) ? n.toFixed(0) : '–');
  const ms = (n) => (Number.isFinite(n) ? n.toFixed(2) : '–');
  const lines = [];
  const L = (s = '') => lines.push(s);
  L('# Benchmarks');
  L();
  L(`Generated by \`npm run bench${QUICK ? ':quick' : ''}\` (\`bench/run.mjs${QUICK ? ' --quick' : ''}\`) on ${R.generatedAt}. Do not edit by hand: run it again (raw results: \`docs/benchmarks.json\`; \`node bench/run.mjs --report\` renders them again).`);
  L();
  L('## Machine and versions');
  L();
  L(`- Machine: ${m.cpus} CPUs (${m.model}), ${m.memGiB} GiB memory, Linux ${m.kernel}`);
  L(`- Node ${versions.node}; @nestjs/core ${versions.nest} with @nestjs/platform-express ${versions.platformExpress} (Express ${versions.express}); undici ${versions.undici}; Hono ${versions.hono}, @hono/node-server ${versions.honoNode}; nest-gateway ${versions.gateway} (built \`dist/\`)`);
  L(`- Load generator: wrk ${versions.wrk} (${WRK}); ${versions.apache}; ${versions.phpFpm} (php-fpm); ${versions.nginx}; http-proxy-middleware ${versions.hpm}`);
  L();
  L('## Method');
  L();
  L(`- Every server under test runs in a child process of its own (\`bench/servers/*.mjs\`), started once and kept for the whole run; wrk, the server and the reference never share a heap. The load generator shares the ${m.cpus} CPUs with the servers, so absolute numbers are modest; the ratios are what matter.`);
  L(`- Same workload everywhere: \`GET\` of a short path answered with \`hello\\n\` (text/plain): the same Express sub-app for rows 1–2, the same Hono app for row 3, a plain Node \`http\` upstream for row 4, \`bench/fixtures/hello.cgi\` (\`/bin/sh\` printf) for row 5, \`bench/fixtures/hello.php\` for row 6.`);
  L(`- wrk \`-t1 -c${CFG.connections} -d${CFG.duration}s --latency\` (keep-alive). Each target gets a ${CFG.warmup} s warm-up first; then ${CFG.rounds} round(s) in which every target runs once, interleaved (A, B, C, …, A, B, C, …). Each row's path runs next to its reference. Reported: the median over rounds of req/s and of p99 latency, the ratio of the medians (which decides the goal) and the range of the ratios of single rounds; peak RSS is the highest resident memory of the server's process tree (the process plus its children, e.g. CGI scripts or Apache workers) sampled every 50 ms while it was under load. This machine is a VM: the share of CPU time its host took away during each run (steal, from \`/proc/stat\`) is listed beside the req/s; rounds with much of it are slower for reasons outside the servers.`);
  L(`- Ratio = path req/s ÷ reference req/s, both from this run. Gateway apps use their default options (\`cgiApp\`: default spawner and concurrency; \`fastcgiApp\`: default pool) and \`GatewayModule.forRoot()\`.`);
  L(`- Row 7 streams ${CFG.streamMiB} MiB down and ${CFG.streamMiB} MiB up through each kind (client in a process of its own, sha256 checked on both ends) after a 16 MiB warm-up, ${R.cfg.streamRounds ?? 1} time(s) (median time per direction), and the same transfers without the gateway: to the Node listener directly (for the mount, \`callApp\` and \`proxyApp\`, whose listener runs inside the gateway process for the first two), and to Apache running the same CGI script (for \`cgiApp\`). RSS growth = the gateway process's peak resident memory, sampled every 20 ms, minus its RSS before the transfer (a CGI script's own memory is not counted). Throughput ratio = reference time ÷ path time, in the slower of the two directions.`);
  L(`- Row 8: \`wrk -t2 -c${CFG.slowClients} -d${CFG.floodSeconds}s --timeout 10s\`, then ${CFG.slowClients} slow clients at once (each sends its request head in 8 pieces over ${CFG.slowSpreadMs} ms, \`Connection: close\`); afterwards the server's child processes and established connections on its port must return to where they were before (10 s allowed).`);
  L();
  L('## Throughput (rows 1–6)');
  L();
  L('| # | path | reference (same run) | path req/s | ref req/s | ratio | ratio per round | goal | met | path p99 ms | ref p99 ms | path peak RSS MiB | ref peak RSS MiB |');
  L('|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|');
  for (const c of comparisons) {
    const p = T[c.path];
    const r = c.ref ? T[c.ref] : undefined;
    if (!r) {
      L(`| ${c.row} | ${c.pathLabel ?? p.label} | ${c.refLabel} — **skipped** (see notes) | ${rps(p.rps)} | – | – | – | ${c.goal == null ? "–" : `≥ ${c.goal}x`} | n/a | ${ms(p.p99)} | – | ${mib(p.peakRss)} | – |`);
      continue;
    }
    const ratio = p.rps / r.rps;
    const met = c.goal == null ? 'context' : ratio >= c.goal ? 'met' : '**missed**';
    const perRound = p.runs.map((run, i) => run.rps / r.runs[i].rps);
    const spread = `${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}x`;
    L(`| ${c.row} | ${c.pathLabel ?? p.label} | ${r.label} | ${rps(p.rps)} | ${rps(r.rps)} | ${ratio.toFixed(2)}x | ${spread} | ${c.goal == null ? '–' : `≥ ${c.goal}x`} | ${met} | ${ms(p.p99)} | ${ms(r.p99)} | ${mib(p.peakRss)} | ${mib(r.peakRss)} |`);
  }
  L();
  L('All measurements (req/s per round; errors = non-2xx + socket errors over all rounds):');
  L();
  L('| target | req/s per round | median req/s | median p99 ms | peak RSS MiB | errors | CPU time stolen by the host, % per round |');
  L('|---|---|---:|---:|---:|---:|---|');
  const steal = (t) => (t.runs.every((r) => r.stealPct !== undefined) ? t.runs.map((r) => r.stealPct.toFixed(0)).join(', ') : '–');
  for (const t of Object.values(T)) L(`| ${t.label} | ${t.runs.map((r) => r.rps.toFixed(0)).join(', ')} | ${rps(t.rps)} | ${ms(t.p99)} | ${mib(t.peakRss)} | ${t.errors} | ${steal(t)} |`);
  L();
  L(`## Big bodies (row 7): ${CFG.streamMiB} MiB down and up; gateway RSS growth < 64 MiB, throughput ≥ 0.8x the same transfer without the gateway`);
  L();
  L('| through | down | up | sha256 both ways | gateway RSS growth MiB | throughput vs reference (slower direction) | result |');
  L('|---|---:|---:|---|---:|---|---|');
  for (const s of streams) {
    const rate = (secs) => `${secs.toFixed(1)} s (${(CFG.streamMiB / secs).toFixed(0)} MiB/s)`;
    const vs = s.ratio === undefined ? (s.ref ? 'no reference' : 'reference') : `${s.ratio.toFixed(2)}x of ${streams.find((x) => x.key === s.ref).label}`;
    const result = !s.ok && (s.context || !s.ref) ? '**failed**' : s.context ? 'context' : s.ref ? (s.ok ? 'met' : '**missed**') : 'reference';
    L(`| ${s.label} | ${rate(s.downSeconds)} | ${rate(s.upSeconds)} | ${s.hashesEqual ? 'equal' : '**different**'} | ${(s.growth / MIB).toFixed(1)} | ${vs} | ${result} |`);
  }
  L();
  L(`## ${CFG.slowClients} concurrent clients (row 8): 0 errors, no leaked sockets or children`);
  L();
  L('| kind | wrk requests | wrk non-2xx | wrk socket errors | slow clients: statuses / errors | children before → after | established conns before → after | fds before → after | peak RSS MiB | result |');
  L('|---|---:|---:|---:|---|---|---|---|---:|---|');
  for (const f of floods) {
    L(`| ${f.label} | ${f.wrk.requests} | ${f.wrk.non2xx} | ${f.wrk.socketErrors} | ${JSON.stringify(f.slow.statuses)} / ${JSON.stringify(f.slow.errors)} | ${f.before.children} → ${f.after.children} | ${f.before.conns} → ${f.after.conns} | ${f.before.fds} → ${f.after.fds} | ${mib(f.peak)} | ${f.ok ? 'met' : '**missed**'} |`);
  }
  L();
  const before = existsSync(join(here, 'before.json')) ? JSON.parse(readFileSync(join(here, 'before.json'), 'utf8')) : undefined;
  if (before) {
    L('## Before and after the profiling work');
    L();
    L(`Before: ${before.source}. After: this run.`);
    L();
    L('| # | path | reference | before req/s | before ratio | after req/s | after ratio |');
    L('|---|---|---|---:|---:|---:|---:|');
    for (const b of before.rows) {
      const p = T[b.path];
      const r = T[b.ref];
      const after = p && r ? `${rps(p.rps)} | ${(p.rps / r.rps).toFixed(2)}x` : '– | –';
      L(`| ${b.row} | ${p?.label ?? b.path} | ${r?.label ?? b.ref} | ${b.rps} | ${(b.rps / b.refRps).toFixed(2)}x | ${after} |`);
    }
    for (const [key, growth] of Object.entries(before.streamGrowthMiB ?? {})) {
      const s = streams.find((x) => x.key === key);
      L(`| 7 | ${s?.label ?? key}: RSS growth for ${R.cfg.streamMiB} MiB each way | – | ${growth} MiB | – | ${s ? `${(s.growth / MIB).toFixed(1)} MiB` : '–'} | – |`);
    }
    L();
  }
  // The hand-written part: what profiling found and what changed, with before/after numbers.
  const findings = join(here, 'findings.md');
  if (existsSync(findings)) {
    L(readFileSync(findings, 'utf8').trimEnd());
    L();
  }
  L('## Notes');
  L();
  for (const n of notes) L(`- ${n}`);
  L(`- ${QUICK ? 'Quick mode: 1 round of short runs, so treat the ratios as rough; `npm run bench` runs more and longer rounds.' : 'Full mode.'}`);
  L('- fds after row 8 may stay above the baseline for `proxyApp` and `fastcgiApp`: their keep-alive pools to the upstream / php-fpm are kept on purpose; the check is on the server port and on child processes.');
  L();
  return lines.join('\n');
}

process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
async function cleanup() {
  await Promise.all(started.map((p) => stopProcess(p).catch(() => undefined)));
}
if (process.argv.includes('--report')) {
  // Renders docs/benchmarks.md again from the last run's raw results (e.g. after editing bench/findings.md).
  writeFileSync(join(root, 'docs/benchmarks.md'), report(JSON.parse(readFileSync(join(root, 'docs/benchmarks.json'), 'utf8'))));
} else {
  try {
    await main();
  } finally {
    await cleanup();
  }
}
