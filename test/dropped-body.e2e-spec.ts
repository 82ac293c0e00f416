/**
 * The body of a `callApp` response that its caller holds on to, reads late, or drops. A body
 * bigger than its buffers pauses whatever produces it (an app's response, a CGI script, a
 * FastCGI request, an upstream request) until it is read:
 *  - dropped unread (the caller returns something else), nothing would ever read it: once V8
 *    collects the body, its producer is let go;
 *  - kept, or read by a caller that waits for its bytes, it must never be collected, however
 *    long its producer pauses.
 * Real Nest app, real CGI scripts, real fcgiwrap, a real upstream server.
 */
import { All, Controller, Inject, Req } from '@nestjs/common';
import {
  cgiApp,
  fastcgiApp,
  GatewayModule,
  type GatewayResponse,
  GatewayService,
  nodeApp,
  PathInfo,
  proxyApp,
} from 'nest-gateway';
import express from 'express';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http, { type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startFcgiwrap, type Peer } from './fixtures/peers.js';
import { startNest, type Started } from './fixtures/start.js';
import { within } from './fixtures/waiting.js';

const MiB = 1024 * 1024;
/** a=N&s=S&b=M: N bytes, a pause of S seconds, M bytes. */
const OUTPUT_SCRIPT = fileURLToPath(new URL('./fixtures/cgi/output.sh', import.meta.url));

/** V8's full collection, callable from a test (the flag takes effect for new contexts). */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Collects garbage every 50 ms until `done` holds (or 5 s pass). */
async function collectUntil(done: () => boolean): Promise<void> {
  const collect = collector();
  for (let i = 0; i < 100 && !done(); i++) {
    collect();
    await sleep(50);
  }
}

/** The same output as the CGI fixture, from a Node listener: a=N&s=S&b=M. */
function pausingListener(onClose?: (how: string) => void): http.RequestListener {
  return (req, res) => {
    const query = new URL(req.url!, 'http://x').searchParams;
    const [a, s, b] = ['a', 's', 'b'].map((name) => Number(query.get(name) ?? 0));
    res.on('close', () => onClose?.(res.writableFinished ? 'finished' : 'closed'));
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const rest = () => res.end(Buffer.alloc(b));
    // As an app that respects backpressure does: the pause starts once the first part is taken.
    if (res.write(Buffer.alloc(a))) setTimeout(rest, s * 1000);
    else res.once('drain', () => setTimeout(rest, s * 1000));
  };
}

type Kind = 'node' | 'cgi' | 'fcgi' | 'proxy' | 'cgiMarked';

describe('a callApp response body its caller keeps, reads late or drops', () => {
  let s: Started;
  let wrap: Peer;
  let upstream: Server;
  let apps: Record<Kind, ReturnType<typeof nodeApp>>;
  const kept = new Map<string, GatewayResponse>();
  const work = mkdtempSync(join(tmpdir(), 'dropped-body-'));
  const doneFile = join(work, 'done');
  /** How the Node app's responses closed, in order. */
  const nodeResponses: string[] = [];

  beforeAll(async () => {
    const sub = express();
    sub.use(pausingListener((how) => nodeResponses.push(how)));
    upstream = http.createServer(pausingListener());
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    wrap = await startFcgiwrap(1);
    apps = {
      node: nodeApp(sub),
      cgi: cgiApp(OUTPUT_SCRIPT, { maxConcurrency: 1 }),
      cgiMarked: cgiApp(OUTPUT_SCRIPT, { env: { DONE_FILE: doneFile } }),
      fcgi: fastcgiApp({ socketPath: wrap.socketPath }, { scriptFilename: OUTPUT_SCRIPT, maxConnections: 1 }),
      proxy: proxyApp(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, { connections: 1 }),
    };

    @Controller()
    class CallingController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

      /** Returns something else: the response is dropped unread. */
      @All('drop/:kind/*path')
      async drop(@Req() req: { params: { kind: Kind } }, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(apps[req.params.kind], req, pathInfo);
        return { status: response.status };
      }

      /** Keeps the response unread for a later request, which sends it. */
      @All('keep/:kind/*path')
      async keep(@Req() req: { params: { kind: Kind } }, @PathInfo() pathInfo: string) {
        kept.set(req.params.kind, await this.gateway.callApp(apps[req.params.kind], req, pathInfo));
        return { kept: true };
      }
      @All('kept/:kind')
      sendKept(@Req() req: { params: { kind: Kind } }) {
        const response = kept.get(req.params.kind);
        kept.delete(req.params.kind);
        return response;
      }

      /** Does something else first (the body fills meanwhile), then reads the whole body. */
      @All('read/:kind/*path')
      async readLate(@Req() req: { params: { kind: Kind } }, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(apps[req.params.kind], req, pathInfo);
        await sleep(100);
        return { length: (await response.bytes({ limit: 64 * MiB })).length };
      }
    }
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CallingController] });
  });

  afterAll(async () => {
    await s?.close();
    (apps?.fcgi as { close?(): void } | undefined)?.close?.();
    await (apps?.proxy as { close?(): Promise<void> } | undefined)?.close?.();
    await wrap?.stop();
    await new Promise((resolve) => upstream?.close(resolve));
    rmSync(work, { recursive: true, force: true });
  });

  it("node: closes the app's response once its dropped body is collected", async () => {
    const first = await within(fetch(`${s.url}/drop/node/x?a=${8 * MiB}`), 3000, 'the answer of a dropped 8 MiB body');
    expect(await first.json()).toEqual({ status: 200 });
    await collectUntil(() => nodeResponses.length > 0);
    expect(nodeResponses).toEqual(['closed']);
  });

  it.each([
    ['cgi', 'stops the CGI script and frees its only slot'],
    ['fcgi', "frees fcgiwrap's only worker and the pool's only connection"],
    ['proxy', "frees the pool's only upstream connection"],
  ])('%s: %s once the dropped body is collected', async (kind) => {
    const first = await within(fetch(`${s.url}/drop/${kind}/x?a=${8 * MiB}`), 3000, 'the answer of a dropped 8 MiB body');
    expect(await first.json()).toEqual({ status: 200 });
    // Held by the paused producer until V8 collects its body.
    let answered = false;
    const next = fetch(`${s.url}/drop/${kind}/x`).then(async (res) => ((answered = true), res.json()));
    await collectUntil(() => answered);
    expect(await within(next, 1000, 'the next answer')).toEqual({ status: 200 });
  });

  it.each(['node', 'cgi', 'fcgi', 'proxy'])('%s: a body its caller keeps unread is not collected, and is sent whole later', async (kind) => {
    expect(await (await within(fetch(`${s.url}/keep/${kind}/x?a=${8 * MiB}`), 3000, 'the call')).json()).toEqual({ kept: true });
    const collect = collector();
    for (let i = 0; i < 10; i++) {
      collect();
      await sleep(20);
    }
    const res = await within(fetch(`${s.url}/kept/${kind}`), 3000, 'the kept response');
    expect(res.status).toBe(200);
    expect((await within(res.arrayBuffer(), 5000, 'the kept body')).byteLength).toBe(8 * MiB);
  });

  it.each(['node', 'cgi', 'fcgi', 'proxy'])(
    '%s: a caller that reads the body after it filled gets every byte, though the app pauses through collections',
    async (kind) => {
      let answered = false;
      const answer = fetch(`${s.url}/read/${kind}/x?a=300000&s=1&b=300000`).then(async (res) => ((answered = true), res.json()));
      await collectUntil(() => answered);
      expect(await within(answer, 3000, 'the answer')).toEqual({ length: 600_000 });
    },
  );

  it('cgi: a HEAD answer, whose body the gateway drains itself, lets its script run to its end through collections', async () => {
    const res = await within(fetch(`${s.url}/drop/cgiMarked/x?a=${MiB}&s=1&b=1000`, { method: 'HEAD' }), 3000, 'the HEAD answer');
    expect(res.status).toBe(200);
    await collectUntil(() => existsSync(doneFile));
    expect(existsSync(doneFile)).toBe(true);
  });
});
