// Reference for row 1: Nest's own MiddlewareConsumer mounting the same Express app under /x.
import { RequestMethod } from '@nestjs/common';
import { helloExpress } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

const sub = helloExpress();
await serveNest({
  gateway: false,
  configure(consumer) {
    consumer.apply(sub).forRoutes({ path: 'x/*path', method: RequestMethod.ALL });
  },
});
