/**
 * Mounts and `callApp` in an app with the global enhancers Nest apps commonly register.
 */
import {
  All,
  type CallHandler,
  ClassSerializerInterceptor,
  Controller,
  type ExecutionContext,
  Inject,
  Injectable,
  type NestInterceptor,
  Req,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { cgiApp, GatewayModule, GatewayService, MountGateway, PathInfo, proxyApp } from 'nest-gateway';
import { realpathSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { map } from 'rxjs';
import request from 'supertest';
import { echoListener, expressSubApp } from './fixtures/apps.js';
import { startNest, type Started } from './fixtures/start.js';

const ENV_SCRIPT = realpathSync(fileURLToPath(new URL('./fixtures/cgi/env.sh', import.meta.url)));

const upstream = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end(`upstream saw ${req.url}`);
});

@MountGateway('cgi', cgiApp(ENV_SCRIPT))
class CgiMount {}

@Controller('call')
class CallController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @All(['', '*path'])
  async call(@Req() req: unknown, @PathInfo() pathInfo: string) {
    const response = await this.gateway.callApp(echoListener, req, pathInfo);
    response.headers.set('x-called', 'yes');
    return response;
  }
}

describe('ClassSerializerInterceptor registered globally', () => {
  let s: Started;
  beforeAll(async () => {
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    @MountGateway('upstream', proxyApp(upstreamUrl))
    class UpstreamMount {}
    s = await startNest(
      { imports: [GatewayModule.forRoot()], controllers: [CgiMount, UpstreamMount, CallController] },
      (app) => {
        // class-transformer is no dependency here: any package it is given in its place has
        // the interceptor hand on a plain copy instead of the object the handler returned.
        const transformerPackage = {
          classToPlain: (value: unknown) => ({ ...(value as object) }),
          plainToInstance: <T>(_type: unknown, value: unknown) => value as T,
        };
        app.useGlobalInterceptors(new ClassSerializerInterceptor(app.get(Reflector), { transformerPackage }));
      },
    );
  });
  afterAll(async () => {
    await s.close();
    upstream.close();
  });

  it('leaves a CGI mount\'s response as the script sent it', async () => {
    const res = await request(s.url).get('/cgi/x');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.headers['x-script']).toBe('env');
    expect(res.text).toContain('PATH_INFO=/x');
  });

  it("leaves a proxyApp mount's response as the upstream sent it", async () => {
    const res = await request(s.url).get('/upstream/y');
    expect(res.status).toBe(200);
    expect(res.text).toBe('upstream saw /y');
  });

  it('sends a GatewayResponse a handler returns as is', async () => {
    const res = await request(s.url).get('/call/z');
    expect(res.status).toBe(200);
    expect(res.headers['x-called']).toBe('yes');
    expect(res.body).toMatchObject({ url: '/z', baseUrl: '/call' });
  });
});

/** The response envelope of Nest's documentation (`TransformInterceptor`): every value as `{ data }`. */
@Injectable()
class Envelope implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(map((data: unknown) => ({ data })));
  }
}

@MountGateway('express', expressSubApp())
class ExpressMount {}

@MountGateway('listener', echoListener)
class ListenerMount {}

describe('an interceptor that wraps every value, registered globally', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [ExpressMount, ListenerMount] }, (app) => {
      app.useGlobalInterceptors(new Envelope());
    });
  });
  afterAll(() => s.close());

  it('leaves the answer of a mounted Node app alone, and logs no error for it', async () => {
    expect((await request(s.url).get('/express/query?a=1')).body).toEqual({ query: { a: '1' } });
    expect((await request(s.url).get('/express/redirect')).headers.location).toBe('/express/target');
    expect((await request(s.url).get('/listener/x')).body).toMatchObject({ url: '/x', baseUrl: '/listener' });
    expect(s.logger.errors()).toEqual([]);
  });
});
