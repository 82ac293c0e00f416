/**
 * What a `callApp` leaves behind: an app may keep its request and response after answering
 * (in a cache, a log buffer, or as Express's `req.res`); the client's request and the call's
 * exchange must not live on with them.
 */
import { Controller, Get, Req } from '@nestjs/common';
import express from 'express';
import { GatewayModule, GatewayService, pathInfoOf } from 'nest-gateway';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startNest, type Started } from './fixtures/start.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** The last request and response the app saw, kept on purpose. */
let kept: { req: IncomingMessage; res: ServerResponse } | undefined;
const keepingApp = (req: IncomingMessage & { res?: ServerResponse }, res: ServerResponse) => {
  req.res = res;
  kept = { req, res };
  res.setHeader('content-type', 'text/plain');
  res.end('kept');
};

/** The same in Express, whose router leaves its way on (`req.next`) on every request. */
let keptByExpress: { req: IncomingMessage; res: ServerResponse } | undefined;
const keepingExpressApp = express().get('*path', (req, res) => {
  keptByExpress = { req, res };
  res.type('text/plain').send('kept');
});

/** An Express app that passes an error on after its response is over. */
const lateErrorApp = express().get('*path', (req, res) => {
  res.on('finish', () => setImmediate(() => req.next?.(new Error('late trouble'))));
  res.type('text/plain').send('answered');
});

/** The same, with an error handler of its own, which Express gives the late error to. */
const handledLate: string[] = [];
const lateErrorHandlingApp = express()
  .get('*path', (req, res) => {
    res.on('finish', () => setImmediate(() => req.next?.(new Error('late and handled'))));
    res.type('text/plain').send('answered');
  })
  .use((error: Error, _req: express.Request, _res: express.Response, _next: express.NextFunction) => {
    handledLate.push(error.message);
  });

/** An app that keeps its response and gives up on it after the head, with a body of 1 MiB unread. */
let keptDestroyed: ServerResponse | undefined;
const destroyingApp = (_req: IncomingMessage, res: ServerResponse) => {
  keptDestroyed = res;
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  res.write(Buffer.alloc(1024 * 1024, 1));
  setTimeout(() => res.destroy(), 5);
};
/** The bodies of its calls, watched without being held. */
const destroyedBodies: Array<WeakRef<object>> = [];

/** The client's requests, watched without being held. */
const clientRequests: Array<WeakRef<object>> = [];
const expressClientRequests: Array<WeakRef<object>> = [];

@Controller()
class CallingController {
  constructor(private readonly gateway: GatewayService) {}
  @Get('call/*path')
  call(@Req() req: IncomingMessage) {
    clientRequests.push(new WeakRef(req));
    return this.gateway.callApp(keepingApp, req, pathInfoOf(req));
  }
  @Get('express/*path')
  callExpress(@Req() req: IncomingMessage) {
    expressClientRequests.push(new WeakRef(req));
    return this.gateway.callApp(keepingExpressApp, req, pathInfoOf(req));
  }
  @Get('destroying/*path')
  async callDestroying(@Req() req: IncomingMessage) {
    const response = await this.gateway.callApp(destroyingApp, req, pathInfoOf(req));
    destroyedBodies.push(new WeakRef(response.body!));
    return response;
  }
  @Get('late-handled/*path')
  callLateHandled(@Req() req: IncomingMessage) {
    return this.gateway.callApp(lateErrorHandlingApp, req, pathInfoOf(req));
  }
  @Get('late-error/*path')
  callLateError(@Req() req: IncomingMessage) {
    return this.gateway.callApp(lateErrorApp, req, pathInfoOf(req));
  }
}

/** Collects until every watched object is gone, or gives up after a few turns. */
async function collectUntilGone(refs: Array<WeakRef<object>>): Promise<void> {
  // Timers and closing sockets let go within a few turns of the event loop.
  for (let i = 0; i < 20 && refs.some((ref) => ref.deref()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    collectGarbage();
  }
}

/** One request on a connection of its own, closed after the answer. */
function getOnce(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

describe('callApp of an app that keeps its request and response', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CallingController] });
  });
  afterAll(() => s?.close());

  it("lets the client's request go once the call is over", async () => {
    for (let i = 0; i < 3; i++) expect(await getOnce(`${s.url}/call/x`)).toBe('kept');
    expect(kept?.res.writableFinished).toBe(true);
    await collectUntilGone(clientRequests);
    expect(clientRequests.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });

  it("lets the client's request go when an Express app keeps its request", async () => {
    for (let i = 0; i < 3; i++) expect(await getOnce(`${s.url}/express/x`)).toBe('kept');
    expect(keptByExpress?.res.writableFinished).toBe(true);
    await collectUntilGone(expressClientRequests);
    expect(expressClientRequests.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });

  it('lets the body of a response the app destroyed go, though the app keeps the response', async () => {
    for (let i = 0; i < 3; i++) {
      // The client sees the response broken off.
      await new Promise<void>((resolve) => {
        http
          .get(`${s.url}/destroying/x`, { agent: false, headers: { connection: 'close' } }, (res) => {
            res.resume();
            res.on('error', () => undefined).on('close', resolve);
          })
          .on('error', () => resolve());
      });
    }
    expect(keptDestroyed?.destroyed).toBe(true);
    await collectUntilGone(destroyedBodies);
    expect(destroyedBodies).toHaveLength(3);
    expect(destroyedBodies.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });

  it("still logs an error an Express app passes to its request's next() after answering", async () => {
    expect(await getOnce(`${s.url}/late-error/x`)).toBe('answered');
    for (let i = 0; i < 20 && !s.logger.errors().some((line) => line.includes('late trouble')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(s.logger.errors()).toEqual([expect.stringMatching(/failed after sending headers: late trouble/)]);
  });

  it("gives an error passed to the request's next() after answering to the app's own error handler, as Express does", async () => {
    expect(await getOnce(`${s.url}/late-handled/x`)).toBe('answered');
    for (let i = 0; i < 20 && handledLate.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(handledLate).toEqual(['late and handled']);
  });
});
