// `npm run bench:instructions`: CPU instructions per request of each bench server, counted by
// valgrind (callgrind). Seconds on a shared VM move by a quarter from one run to the next;
// these counts repeat within about 1%, which is what it takes to see a change of a few percent.
// Each server runs under callgrind with instrumentation off, gets `--warm` requests, then is
// counted over `--requests` requests on one keep-alive connection.
//
// Usage: npm run build && node bench/instructions.mjs [server ...] [--warm N] [--requests N]
// Needs valgrind (Debian: valgrind); the FastCGI row also php-fpm. Slow: about a minute per server.
// KEEP=1 keeps each server's callgrind output (its directory is printed) for callgrind_annotate.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PHP_FPM = ['/usr/sbin/php-fpm8.2', '/usr/sbin/php-fpm'].find((p) => existsSync(p));

/**
 * name → [server file, path]; `fpm` servers get the php-fpm socket and document root, `cgi` the
 * scripts, `upstream` the URL of a Node upstream (the scripts, the spawn helpers and the
 * upstream are not counted: only the gateway's Node process is).
 */
const SERVERS = {
  express: ['express-mount.mjs', '/x/hello'],
  consumer: ['nest-consumer.mjs', '/x/hello'],
  floor: ['nest-floor.mjs', '/x/hello'],
  mount: ['nest-mount.mjs', '/x/hello'],
  callapp: ['nest-callapp.mjs', '/y/hello'],
  honoConsumer: ['nest-hono-consumer.mjs', '/h/hello'],
  hono: ['nest-hono.mjs', '/h/hello'],
  native: ['nest-native.mjs', '/n/hello.php'],
  fastcgi: ['nest-fastcgi.mjs', '/f/hello.php', 'fpm'],
  cgi: ['nest-cgi.mjs', '/c/hello.cgi', 'cgi'],
  proxy: ['nest-proxy.mjs', '/p/hello', 'upstream'],
};

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at === -1 ? fallback : Number(args.splice(at, 2)[1]);
};
const warm = option('warm', 6000);
const requests = option('requests', 2000);
const chosen = args.length > 0 ? args : Object.keys(SERVERS);

/** Exactly `count` GETs, one after the other on one keep-alive connection. */
async function requestMany(port, path, count) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < count; i++) {
    await new Promise((resolve, reject) => {
      get({ host: '127.0.0.1', port, path, agent }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`${path}: status ${res.statusCode}`));
        res.resume().once('end', resolve);
      }).once('error', reject);
    });
  }
  agent.destroy();
}

async function startPhpFpm() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-fpm-'));
  const socketPath = join(dir, 'fpm.sock');
  const config = join(dir, 'php-fpm.conf');
  const lines = ['[global]', `pid = ${dir}/fpm.pid`, `error_log = ${dir}/fpm.log`, 'daemonize = no', '[bench]'];
  lines.push(`listen = ${socketPath}`, 'pm = static', 'pm.max_children = 4', 'clear_env = yes', '');
  writeFileSync(config, lines.join('\n'));
  const child = spawn(PHP_FPM, ['-F', '-R', '-n', '-y', config], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !existsSync(socketPath); i++) await sleep(50);
  return { socketPath, stop: () => (child.kill(), rmSync(dir, { recursive: true, force: true })) };
}

/** The port a bench server announces on its first line of output (`{"port":…}`). */
async function portOf(child) {
  let text = '';
  for await (const chunk of child.stdout) {
    text += chunk;
    if (text.includes('\n')) break;
  }
  return JSON.parse(text.split('\n')[0]).port;
}

/** The proxy rows' Node upstream, in a process of its own. */
async function startUpstream() {
  const child = spawn(process.execPath, [join(root, 'bench/servers/upstream.mjs')], { stdio: ['ignore', 'pipe', 'ignore'] });
  return { url: `http://127.0.0.1:${await portOf(child)}`, stop: () => child.kill() };
}

async function count(name, fpm) {
  const [file, path, needs] = SERVERS[name];
  const out = mkdtempSync(join(tmpdir(), 'bench-callgrind-'));
  const fixtures = join(root, 'bench/fixtures');
  const upstream = needs === 'upstream' ? await startUpstream() : undefined;
  const serverArgs =
    needs === 'fpm'
      ? [fpm.socketPath, fixtures]
      : needs === 'cgi'
        ? [join(fixtures, 'hello.cgi'), join(fixtures, 'stream.cgi')]
        : upstream
          ? [upstream.url]
          : [];
  const child = spawn(
    'valgrind',
    ['--tool=callgrind', `--callgrind-out-file=${out}/cg.%p`, '--instr-atstart=no', '--smc-check=all-non-file', 'node', join(root, 'bench/servers', file), ...serverArgs],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  try {
    const port = await portOf(child);
    await requestMany(port, path, warm);
    await run('callgrind_control', ['-i', 'on', String(child.pid)]);
    await requestMany(port, path, requests);
    await run('callgrind_control', ['-i', 'off', String(child.pid)]);
    await run('callgrind_control', ['-d', String(child.pid)]);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill();
    await exited;
    let total = 0;
    for (const dump of readdirSync(out)) {
      const totals = /^totals: (\d+)/m.exec(readFileSync(join(out, dump), 'utf8'));
      total += totals ? Number(totals[1]) : 0;
    }
    return total / requests;
  } finally {
    child.kill();
    upstream?.stop();
    if (process.env.KEEP) console.error('kept', out); else rmSync(out, { recursive: true, force: true });
  }
}

const fpm = chosen.some((name) => SERVERS[name]?.[2] === 'fpm') && PHP_FPM ? await startPhpFpm() : undefined;
try {
  console.log(`| server | instructions per request (${warm} warm-up, ${requests} counted) |`);
  console.log('|---|---:|');
  for (const name of chosen) {
    if (!SERVERS[name]) throw new Error(`unknown server ${name}; known: ${Object.keys(SERVERS).join(', ')}`);
    if (SERVERS[name][2] === 'fpm' && !fpm) {
      console.log(`| ${name} | skipped: php-fpm is not installed |`);
      continue;
    }
    console.log(`| ${name} | ${Math.round((await count(name, fpm)) / 1000)} k |`);
  }
} finally {
  fpm?.stop();
}
