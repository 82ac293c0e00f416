/**
 * uWSGI's --http-socket closes each connection after its response without saying so; a
 * pooled connection can then be dead when the next request goes out on it. The gateway sends
 * such a request again (bodiless or with a small body) instead of answering 502.
 */
import { GatewayModule, MountGateway, proxyApp } from 'nest-gateway';
import { startUwsgiHttp, type UpstreamProcess } from './fixtures/proxy/upstreams.js';
import { startNest, type Started } from './fixtures/start.js';

describe('proxyApp and upstreams that close pooled connections', () => {
  let upstream: UpstreamProcess;
  let app: ReturnType<typeof proxyApp>;
  let s: Started;

  beforeAll(async () => {
    upstream = await startUwsgiHttp();
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

  it('1200 GETs and form POSTs from 4 clients on reused connections: no error', async () => {
    let failures = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 300; i++) {
          const res =
            i % 2
              ? await fetch(`${s.url}/flask/hello/form`, {
                  method: 'POST',
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
