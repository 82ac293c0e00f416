// Reference for row 4: http-proxy-middleware 3 in Nest (MiddlewareConsumer), the same upstream
// under /p. Usage: node nest-hpm.mjs <upstream URL>
import { RequestMethod } from '@nestjs/common';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { serveNest } from './nest-shared.mjs';

const proxy = createProxyMiddleware({ target: process.argv[2], pathRewrite: { '^/p': '' }, xfwd: true });
await serveNest({
  gateway: false,
  configure(consumer) {
    consumer.apply(proxy).forRoutes({ path: 'p/*path', method: RequestMethod.ALL });
  },
});
