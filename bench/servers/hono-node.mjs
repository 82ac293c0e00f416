// Reference for row 3: the same Hono app served by @hono/node-server.
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { HELLO, ready } from './shared.mjs';

const hono = new Hono();
hono.all('*', (c) => c.text(HELLO));
const server = serve({ fetch: hono.fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
  ready(info.port, () => new Promise((r) => server.close(r))),
);
