import { Hono } from 'hono';

/** A Hono app: a fetch handler, as it would run on Bun, Deno or a worker. */
export function createHonoApp() {
  const app = new Hono<{ Bindings: { REMOTE_USER?: string } }>();
  app.get('/', (c) =>
    c.html(
      `<h1>Hono</h1><p>Request URL as Hono sees it: <code>${c.req.url}</code></p>` +
        `<p>Hello, <b id="greeting">${c.env.REMOTE_USER ?? 'anonymous visitor'}</b>! (from <code>c.env.REMOTE_USER</code>)</p>` +
        `<p><a href="/">Back to Nest</a></p>`,
    ),
  );
  app.get('/hello/:name', (c) => c.json({ greeting: `Hello, ${c.req.param('name')}!`, from: 'hono' }));
  return app;
}
