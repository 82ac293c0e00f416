// Context for row 1: the least a Nest controller can do to hand a request to the same Express
// app (rewrite req.url, call it with @Res()); no gateway. Not a reference of the issue.
import { All, Controller, Req, Res } from '@nestjs/common';
import { helloExpress } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

const sub = helloExpress();
class ByHand {
  handle(req, res) {
    req.url = req.url.slice(2) || '/';
    sub(req, res);
  }
}
Controller()(ByHand);
Req()(ByHand.prototype, 'handle', 0);
Res()(ByHand.prototype, 'handle', 1);
All('x/*path')(ByHand.prototype, 'handle', Object.getOwnPropertyDescriptor(ByHand.prototype, 'handle'));
await serveNest({ controllers: [ByHand], gateway: false });
