// Context for row 7: the same streaming listener in a plain Nest controller (`@Res()`, no
// gateway), to tell what Nest itself costs a big upload from what the gateway adds.
import { All, Controller, Req, Res } from '@nestjs/common';
import { streamListener } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

class ByHand {
  handle(req, res) {
    req.url = req.url.slice(2) || '/';
    return streamListener(req, res);
  }
}
Controller()(ByHand);
Req()(ByHand.prototype, 'handle', 0);
Res()(ByHand.prototype, 'handle', 1);
All('s/*path')(ByHand.prototype, 'handle', Object.getOwnPropertyDescriptor(ByHand.prototype, 'handle'));
await serveNest({ controllers: [ByHand], gateway: false });
