import { Hono } from 'hono';

/** A Hono app: a fetch handler, as it would run on Bun, Deno or a worker. */
export function createHonoApp() {
  const app = new Hono();
  app.get('/', (c) =>
    c.html(`<h1>Hono</h1><p>Request URL as Hono sees it: <code>${c.req.url}</code></p><p><a href="/">Back to Nest</a></p>`),
  );
  app.get('/hello/:name', (c) => c.json({ greeting: `Hello, ${c.req.param('name')}!`, from: 'hono' }));
  return app;
}
