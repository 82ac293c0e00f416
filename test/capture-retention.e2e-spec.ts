/**
 * What a `callApp` leaves behind: an app may keep its request and response after answering
 * (in a cache, a log buffer, or as Express's `req.res`); the client's request and the call's
 * exchange must not live on with them.
 */
import { Controller, Get, Req } from '@nestjs/common';
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

/** The client's requests, watched without being held. */
const clientRequests: Array<WeakRef<object>> = [];

@Controller('call')
class CallingController {
  constructor(private readonly gateway: GatewayService) {}
  @Get('*path')
  call(@Req() req: IncomingMessage) {
    clientRequests.push(new WeakRef(req));
    return this.gateway.callApp(keepingApp, req, pathInfoOf(req));
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
    // Timers and closing sockets let go within a few turns of the event loop.
    for (let i = 0; i < 20 && clientRequests.some((ref) => ref.deref()); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      collectGarbage();
    }
    expect(clientRequests.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });
});
