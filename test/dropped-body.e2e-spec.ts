/**
 * A `callApp` caller that drops the GatewayResponse, neither sending nor reading nor destroying
 * its body (it returns something else), must not hold the app back for good: a body bigger
 * than its buffers has paused whatever produces it (an app's response, a CGI script, a FastCGI
 * request), and nothing else ends it. Once V8 collects the dropped body, its producer is let go.
 * Real Nest app, real CGI scripts, real fcgiwrap.
 */
import { All, Controller, Inject, Req } from '@nestjs/common';
import { cgiApp, fastcgiApp, GatewayModule, type GatewayResponse, GatewayService, nodeApp, PathInfo } from 'nest-gateway';
import express from 'express';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startFcgiwrap, type Peer } from './fixtures/peers.js';
import { startNest, type Started } from './fixtures/start.js';
import { within } from './fixtures/waiting.js';

const MiB = 1024 * 1024;
const BIG_SCRIPT = fileURLToPath(new URL('./fixtures/cgi/big.sh', import.meta.url));

/** V8's full collection, callable from a test (the flag takes effect for new contexts). */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Collects garbage until `done` holds (or 5 s pass). */
async function collectUntil(done: () => boolean): Promise<void> {
  const collect = collector();
  for (let i = 0; i < 100 && !done(); i++) {
    collect();
    await sleep(50);
  }
}

describe('a callApp response its caller drops unread', () => {
  let s: Started;
  let wrap: Peer;
  let fcgi: ReturnType<typeof fastcgiApp>;
  const kept = new Map<string, GatewayResponse>();
  /** Settles when the Express app's streamed response closes (the app sees the call end). */
  const closedResponses: Array<Promise<string>> = [];

  beforeAll(async () => {
    const sub = express();
    sub.get('/stream', (_req, res) => {
      let sent = 0;
      const source = new Readable({
        read() {
          sent += 64 * 1024;
          this.push(sent > 8 * MiB ? null : Buffer.alloc(64 * 1024, 'x'));
        },
      });
      closedResponses.push(new Promise((resolve) => res.on('close', () => resolve(res.writableFinished ? 'finished' : 'closed'))));
      res.type('application/octet-stream');
      source.pipe(res);
    });
    sub.get('/small', (_req, res) => void res.send('small'));
    const node = nodeApp(sub);
    const cgi = cgiApp(BIG_SCRIPT, { maxConcurrency: 1 });
    wrap = await startFcgiwrap(1);
    fcgi = fastcgiApp({ socketPath: wrap.socketPath }, { scriptFilename: BIG_SCRIPT, maxConnections: 1 });
    const apps = { node, cgi, fcgi };

    @Controller()
    class DroppingController {
      constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}
      @All('drop/:kind/*path')
      async drop(@Req() req: { params: { kind: keyof typeof apps } }, @PathInfo() pathInfo: string) {
        const response = await this.gateway.callApp(apps[req.params.kind], req, pathInfo);
        return { status: response.status };
      }
      /** Keeps the response unread for a later request, which sends it. */
      @All('keep/:kind/*path')
      async keep(@Req() req: { params: { kind: keyof typeof apps } }, @PathInfo() pathInfo: string) {
        kept.set(req.params.kind, await this.gateway.callApp(apps[req.params.kind], req, pathInfo));
        return { kept: true };
      }
      @All('kept/:kind')
      sendKept(@Req() req: { params: { kind: keyof typeof apps } }) {
        const response = kept.get(req.params.kind);
        kept.delete(req.params.kind);
        return response;
      }
    }
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [DroppingController] });
  });

  afterAll(async () => {
    await s?.close();
    fcgi?.close();
    await wrap?.stop();
  });

  it("closes a Node app's response once its dropped body is collected", async () => {
    const first = await within(fetch(`${s.url}/drop/node/stream`), 3000, 'the answer of a dropped 8 MiB body');
    expect(await first.json()).toEqual({ status: 200 });
    let closed: string | undefined;
    void closedResponses[0].then((how) => (closed = how));
    await collectUntil(() => closed !== undefined);
    expect(closed).toBe('closed');
  });

  it.each([
    ['cgi', 'stops the CGI script and frees its only slot'],
    ['fcgi', "frees fcgiwrap's only worker and the pool's only connection"],
  ])('%s: %s once the dropped body is collected', async (kind) => {
    const first = await within(fetch(`${s.url}/drop/${kind}/x?mib=8`), 3000, 'the answer of a dropped 8 MiB body');
    expect(await first.json()).toEqual({ status: 200 });
    // Held by the paused script until V8 collects its body.
    let answered = false;
    const next = fetch(`${s.url}/drop/${kind}/x?mib=0`).then(async (res) => ((answered = true), res.json()));
    await collectUntil(() => answered);
    expect(await within(next, 1000, 'the next answer')).toEqual({ status: 200 });
  });

  it.each([
    ['node', '/stream'],
    ['cgi', '/x?mib=8'],
    ['fcgi', '/x?mib=8'],
  ])('%s: a body its caller keeps unread is not collected, and is sent whole later', async (kind, path) => {
    expect(await (await within(fetch(`${s.url}/keep/${kind}${path}`), 3000, 'the call')).json()).toEqual({ kept: true });
    const collect = collector();
    for (let i = 0; i < 10; i++) {
      collect();
      await sleep(20);
    }
    const res = await within(fetch(`${s.url}/kept/${kind}`), 3000, 'the kept response');
    expect(res.status).toBe(200);
    expect((await within(res.arrayBuffer(), 5000, 'the kept body')).byteLength).toBe(8 * MiB);
  });
});
