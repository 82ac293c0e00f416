// CGI spawning throughput: cgiApp through the spawn helpers vs spawning from the Nest process,
// with Apache mod_cgid on the same script as the reference when Apache is installed.
// Usage: npm run build && node bench/cgi.mjs   (env: DURATION=5 ROUNDS=2 CONNECTIONS=8 BALLAST_MB=150)
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cgiApp, GatewayModule, MountGateway } from '../dist/index.js';
import { APACHE, prepareApacheCgi } from './apache.mjs';

const run = promisify(execFile);
const DURATION = Number(process.env.DURATION ?? 5);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 8);
const BALLAST_MB = Number(process.env.BALLAST_MB ?? 150);
const script = fileURLToPath(new URL('./fixtures/hello.cgi', import.meta.url));

// A real app holds caches, modules and data: fork() cost grows with that, so the bench carries some.
const ballast = [];
for (let i = 0; i < BALLAST_MB * 1024; i++) ballast.push({ i, s: 'x'.repeat(900) });

const options = { maxConcurrency: 64 };
// No decorator syntax in plain JavaScript: the decorators are applied as functions.
class Helpers {}
MountGateway('helpers', cgiApp(script, { ...options, spawner: 'helpers' }))(Helpers);
class Direct {}
MountGateway('direct', cgiApp(script, { ...options, spawner: 'direct' }))(Direct);
class BenchModule {}
Module({ imports: [GatewayModule.forRoot()], controllers: [Helpers, Direct] })(BenchModule);

async function wrk(url) {
  const { stdout } = await run('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${DURATION}s`, '--latency', url]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = /Socket errors: (.*)/.exec(stdout)?.[1];
  return { rps, non2xx, errors };
}

async function startApache() {
  const port = 18977;
  const prepared = prepareApacheCgi([script], port);
  if (!prepared) return undefined;
  const proc = spawn(APACHE, ['-f', prepared.config, '-DFOREGROUND'], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}/c/hello.cgi`;
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, stop: () => (proc.kill('SIGTERM'), rmSync(prepared.dir, { recursive: true, force: true })) };
}

const app = await NestFactory.create(BenchModule, { logger: ['error', 'warn'] });
await app.listen(0, '127.0.0.1');
const base = `http://127.0.0.1:${app.getHttpServer().address().port}`;
const apache = await startApache();
const targets = [
  ['cgiApp, spawn helpers', `${base}/helpers`],
  ['cgiApp, spawn from Node', `${base}/direct`],
  ...(apache ? [['Apache mod_cgid (reference)', apache.url]] : []),
];
const results = new Map(targets.map(([name]) => [name, []]));
for (const [, url] of targets) await wrk(url).catch(() => undefined); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, url] of targets) {
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const result = await wrk(url);
    delay.disable();
    results.get(name).push({ ...result, loopP99: delay.percentile(99) / 1e6 });
  }
}
console.log(`CGI spawn, /bin/sh script, wrk -c${CONNECTIONS} ${DURATION}s x ${ROUNDS} rounds, Nest heap ballast ${BALLAST_MB} MB`);
console.log('| setup | req/s (median of rounds) | event-loop p99 (ms) | errors |');
console.log('|---|---|---|---|');
for (const [name, rows] of results) {
  const rps = rows.map((r) => r.rps).sort((a, b) => a - b);
  const median = rps[Math.floor(rps.length / 2)];
  const loop = name.startsWith('Apache') ? '–' : Math.max(...rows.map((r) => r.loopP99)).toFixed(1);
  const errors = rows.reduce((n, r) => n + r.non2xx, 0) + (rows.some((r) => r.errors) ? ' + socket errors' : '');
  console.log(`| ${name} | ${median.toFixed(0)} | ${loop} | ${errors} |`);
}
apache?.stop();
await app.close();
process.exit(0);
