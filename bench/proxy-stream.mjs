// Streams 1 GiB down and 1 GiB up through proxyApp (Nest in front of a Node upstream) and
// checks that the gateway never buffers: peak RSS growth must stay under 64 MiB.
// Usage: npm run build && node bench/proxy-stream.mjs [MiB]   (exit code 1 when the check fails)
// Upstream and client run in processes of their own, so the RSS measured is the gateway's.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { createServer, request } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GatewayModule, MountGateway, proxyApp } from '../dist/index.js';
import { counter, MIB, source } from './servers/shared.mjs';

const SIZE = Number(process.argv.at(-1)?.match(/^\d+$/) ? process.argv.at(-1) : 1024) * MIB;
const LIMIT = 64 * MIB;

const role = process.argv[2];

if (role === '--upstream') {
  // Its own process: only the gateway's memory is measured.
  const upstream = createServer(async (req, res) => {
    if (req.method === 'POST') {
      const c = counter();
      await pipeline(req, c.sink);
      res.end(JSON.stringify(c.result()));
    } else {
      res.setHeader('content-type', 'application/octet-stream');
      await pipeline(source(Number(new URL(req.url, 'http://x').searchParams.get('mib')) * MIB), res);
    }
  });
  upstream.listen(0, '127.0.0.1', () => process.stdout.write(`${upstream.address().port}\n`));
} else if (role === '--client') {
  const port = Number(process.argv[3]);
  const call = (method, body) =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: `/stream/data?mib=${SIZE / MIB}`, method }, resolve);
      req.on('error', reject);
      if (body) pipeline(body, req).catch(reject);
      else req.end();
    });
  const started = Date.now();
  const down = counter();
  await pipeline(await call('GET'), down.sink);
  const downSeconds = (Date.now() - started) / 1000;
  const upStarted = Date.now();
  const upResponse = await call('POST', source(SIZE));
  const up = JSON.parse(await new Response(Readable.toWeb(upResponse)).text());
  const want = counter();
  await pipeline(source(SIZE), want.sink);
  process.stdout.write(JSON.stringify({ down: down.result(), downSeconds, up, upSeconds: (Date.now() - upStarted) / 1000, want: want.result() }));
} else {
  const self = new URL(import.meta.url).pathname;
  const sizeArg = String(SIZE / MIB);
  const upstream = spawn(process.execPath, [self, '--upstream', sizeArg], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [portLine] = await once(upstream.stdout, 'data');
  const app = proxyApp(`http://127.0.0.1:${Number(String(portLine))}`);
  class Stream {}
  MountGateway('stream', app)(Stream);
  class StreamModule {}
  Module({ imports: [GatewayModule.forRoot()], controllers: [Stream] })(StreamModule);
  const nest = await NestFactory.create(StreamModule, { logger: ['error', 'warn'] });
  await nest.listen(0, '127.0.0.1');
  const port = nest.getHttpServer().address().port;

  const runClient = async (mib) => {
    const client = spawn(process.execPath, [self, '--client', String(port), String(mib)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    client.stdout.on('data', (data) => (output += data));
    await once(client, 'exit');
    return output;
  };
  // A warm-up transfer first: what the first requests allocate once (compiled code, pools,
  // socket buffers) is not buffering.
  await runClient(16);
  let peak = 0;
  const baseline = process.memoryUsage().rss;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss - baseline)), 20);
  const output = await runClient(sizeArg);
  clearInterval(sampler);
  upstream.kill();

  const r = JSON.parse(output);
  const ok = r.down.sha256 === r.want.sha256 && r.up.sha256 === r.want.sha256 && peak < LIMIT;
  const mb = (n) => (n / MIB).toFixed(1);
  console.log(`down: ${mb(r.down.bytes)} MiB in ${r.downSeconds.toFixed(1)} s, sha256 ${r.down.sha256 === r.want.sha256 ? 'equal' : 'DIFFERENT'}`);
  console.log(`up:   ${mb(r.up.bytes)} MiB in ${r.upSeconds.toFixed(1)} s, sha256 ${r.up.sha256 === r.want.sha256 ? 'equal' : 'DIFFERENT'}`);
  console.log(`peak RSS growth of the gateway process: ${mb(peak)} MiB (limit ${mb(LIMIT)})`);
  console.log(ok ? 'OK' : 'FAILED');
  await nest.close();
  await app.close();
  process.exit(ok ? 0 : 1);
}
