/**
 * uWSGI's --http-socket closes each connection after its response without saying so; a
 * pooled connection can then be dead when the next request goes out on it. The gateway sends
 * such a request again when it is idempotent (bodiless or with a small body) instead of
 * answering 502. A POST never goes twice (the upstream may have done its work before dying),
 * so POSTs go to uWSGI's HTTP router with keep-alive, which does not drop pooled connections.
 */
import { GatewayModule, MountGateway, proxyApp } from 'nest-gateway';
import { startUwsgiHttp, type UpstreamProcess } from './fixtures/proxy/upstreams.js';
import { startNest, type Started } from './fixtures/start.js';

describe.each([
  ['socket', 'PUT'],
  ['router', 'POST'],
] as const)('proxyApp and uWSGI behind its HTTP %s: pooled connections', (front, method) => {
  let upstream: UpstreamProcess;
  let app: ReturnType<typeof proxyApp>;
  let s: Started;

  beforeAll(async () => {
    upstream = await startUwsgiHttp(2, front);
    app = proxyApp(upstream.url);
    @MountGateway('flask', app)
    class FlaskMount {}
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [FlaskMount] });
  }, 60_000);

  afterAll(async () => {
    await s.close();
    await app.close();
    await upstream.stop();
  });

  it(`1200 GETs and form ${method}s from 4 clients on reused connections: no error`, async () => {
    let failures = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 300; i++) {
          const res =
            i % 2
              ? await fetch(`${s.url}/flask/hello/form`, {
                  method,
                  body: `a=${i}`,
                  headers: { 'content-type': 'application/x-www-form-urlencoded' },
                })
              : await fetch(`${s.url}/flask/hello/x`);
          await res.text();
          if (res.status !== 200) failures++;
        }
      }),
    );
    expect(failures).toBe(0);
  }, 120_000);
});
