/**
 * Requests that carry an Upgrade header nobody takes (`curl --http2` on http:// sends
 * `Upgrade: h2c`) are ordinary requests: body, response and keep-alive as without the module.
 */
import { Body, Controller, Post } from '@nestjs/common';
import express from 'express';
import { GatewayModule, MountGateway, proxyApp } from 'nest-gateway';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RawConnection } from './fixtures/raw-connection.js';
import { startNest, type Started } from './fixtures/start.js';

const BODY = '{"a":1}';

function h2c(method: string, path: string, body = ''): string {
  const bodyHeaders = body ? `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n` : '';
  return `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n` +
    `HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${bodyHeaders}\r\n${body}`;
}

describe('Requests with an Upgrade header no one takes', () => {
  const upstream = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => res.end(`upstream got ${body}`));
  });
  let proxied: ReturnType<typeof proxyApp>;
  let s: Started;
  let connection: RawConnection;

  beforeAll(async () => {
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    proxied = proxyApp(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, { headersTimeout: 3000 });
    const legacy = express();
    legacy.use(express.text({ type: '*/*' }));
    legacy.all('*all', (req, res) => void res.send(`express got ${req.method} ${req.body ?? ''}`));

    @MountGateway('h2c-express', legacy)
    class ExpressMount {}

    @MountGateway('h2c-proxy', proxied)
    class ProxyMount {}

    @Controller('api')
    class EchoController {
      @Post('echo')
      echo(@Body() body: unknown) {
        return { got: body };
      }
    }

    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [ExpressMount, ProxyMount, EchoController] });
  });

  beforeEach(async () => (connection = await RawConnection.open(s.url)));
  afterEach(() => connection.close());

  afterAll(async () => {
    await s.close();
    await proxied.close();
    upstream.close();
  });

  it('a Nest route gets the body, and the connection stays open for the next request', async () => {
    const first = await connection.exchange(h2c('POST', '/api/echo', BODY));
    expect([first.status, JSON.parse(first.body)]).toEqual([201, { got: { a: 1 } }]);
    const second = await connection.exchange(h2c('POST', '/api/echo', '{"b":2}'));
    expect(JSON.parse(second.body)).toEqual({ got: { b: 2 } });
  });

  it('a mounted Express app gets the body', async () => {
    const response = await connection.exchange(h2c('POST', '/h2c-express/x', BODY));
    expect(response.body).toBe(`express got POST ${BODY}`);
  });

  it('a mounted app that does not upgrade serves a bodiless request on a connection kept open', async () => {
    expect((await connection.exchange(h2c('GET', '/h2c-express/x'))).body).toBe('express got GET ');
    expect((await connection.exchange(h2c('GET', '/h2c-express/y'))).body).toBe('express got GET ');
  });

  it('the upstream of a proxyApp mount gets the body', async () => {
    const response = await connection.exchange(h2c('POST', '/h2c-proxy/x', BODY), 2500);
    expect([response.status, response.body]).toEqual([200, `upstream got ${BODY}`]);
  });
});
