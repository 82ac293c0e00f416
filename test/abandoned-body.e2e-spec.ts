/**
 * A call that is abandoned (timeout, the caller's signal) before its app read the client's
 * request body: the client still gets its answer on the same connection.
 */
import { All, Controller, Inject, Req } from '@nestjs/common';
import { GatewayModule, GatewayService, MountGateway, PathInfo } from 'nest-gateway';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { send } from './fixtures/http-client.js';
import { startNest, type Started } from './fixtures/start.js';

const BODY = Buffer.alloc(100 * 1024, 'x');
const UPLOAD = { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: BODY };

/** A slow backend: it reads the body and answers only after the caller has given up. */
function readsTooLate(req: IncomingMessage, res: ServerResponse) {
  setTimeout(() => {
    req.resume();
    req.on('end', () => res.end('late'));
  }, 1500);
}

/** Starts reading the body, then stalls (a lock, a slow disk). */
function stallsAfterFirstChunk(req: IncomingMessage, _res: ServerResponse) {
  req.once('data', () => req.pause());
}

@MountGateway('mount-timeout', readsTooLate, { timeout: 200 })
class TimeoutMount {}

@Controller()
class CallController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All('timeout/*path')
  timeout(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(readsTooLate, req, pathInfo, { timeout: 200 });
  }

  @All('stalled/*path')
  stalled(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    return this.gateway.callApp(stallsAfterFirstChunk, req, pathInfo, { timeout: 200 });
  }

  @All('signal/*path')
  async signal(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    try {
      return await this.gateway.callApp(readsTooLate, req, pathInfo, { signal: AbortSignal.timeout(200) });
    } catch {
      return { fallback: true };
    }
  }
}

describe('a call abandoned before its app read the request body', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [TimeoutMount, CallController] });
  });
  afterAll(() => s.close());

  it('callApp with a timeout: the client gets the 504, not a reset connection', async () => {
    const reply = await send(`${s.url}/timeout/x`, UPLOAD);
    expect(reply.status).toBe(504);
  });

  it('a mount with a timeout: the client gets the 504, not a reset connection', async () => {
    const reply = await send(`${s.url}/mount-timeout/x`, UPLOAD);
    expect(reply.status).toBe(504);
  });

  it("callApp aborted by the caller's signal: the handler's own answer reaches the client", async () => {
    const reply = await send(`${s.url}/signal/x`, UPLOAD);
    expect(reply.status).toBe(200);
    expect(reply.json()).toEqual({ fallback: true });
  });

  it('callApp with a timeout, the app having read part of the body: the client gets the 504', async () => {
    const reply = await send(`${s.url}/stalled/x`, UPLOAD);
    expect(reply.status).toBe(504);
  });
});
