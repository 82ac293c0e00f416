/**
 * A call that is abandoned (timeout, the caller's signal) or done with before its app read the
 * client's request body: the client still gets its answer on the same connection, and the
 * next app called on the request gets the body whole.
 */
import { All, Controller, Inject, Req } from '@nestjs/common';
import { GatewayModule, GatewayService, MountGateway, PathInfo } from 'nest-gateway';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashingListener } from './fixtures/apps.js';
import { send } from './fixtures/http-client.js';
import { startNest, type Started } from './fixtures/start.js';

const BODY = Buffer.alloc(100 * 1024, 'x');
const UPLOAD = { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: BODY };
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

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

/** Turns the request away without reading its body (a 401, a redirect). */
function refuses(_req: IncomingMessage, res: ServerResponse) {
  res.statusCode = 401;
  res.end('no');
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

  @All('in-turn/*path')
  async inTurn(@Req() req: IncomingMessage, @PathInfo() pathInfo: string) {
    const first = await this.gateway.callApp(refuses, req, pathInfo);
    await first.text();
    return this.gateway.callApp(hashingListener, req, pathInfo, { timeout: 2000 });
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

describe('apps called in turn on one request', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [CallController] });
  });
  afterAll(() => s.close());

  it('the second gets the whole body the first left unread', async () => {
    const reply = await send(`${s.url}/in-turn/x`, UPLOAD);
    expect(reply.status).toBe(200);
    expect(reply.json()).toEqual({ length: BODY.length, sha256: sha256(BODY) });
  });
});
