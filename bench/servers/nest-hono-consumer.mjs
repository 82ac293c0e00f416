// Reference for row 3: Nest's own MiddlewareConsumer mounting the same Hono app under /h, served by
// @hono/node-server's getRequestListener (with its defaults, which swap in its own global Request/Response).
import { getRequestListener } from '@hono/node-server';
import { RequestMethod } from '@nestjs/common';
import { Hono } from 'hono';
import { HELLO } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

const hono = new Hono();
hono.all('*', (c) => c.text(HELLO));
const listener = getRequestListener(hono.fetch);
await serveNest({
  gateway: false,
  configure(consumer) {
    consumer.apply(listener).forRoutes({ path: 'h/*path', method: RequestMethod.ALL });
  },
});
