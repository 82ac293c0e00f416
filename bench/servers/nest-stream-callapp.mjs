// Row 7: a controller that calls GatewayService.callApp on the streaming listener and returns the
// captured GatewayResponse, whose body streams through.
import { All, Controller, Inject, Req } from '@nestjs/common';
import { GatewayService, pathInfoOf } from '../../dist/index.js';
import { streamListener } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

class Calling {
  constructor(gateway) {
    this.gateway = gateway;
  }
  handle(req) {
    return this.gateway.callApp(streamListener, req, pathInfoOf(req));
  }
}
// No decorator syntax in plain JavaScript: the decorators are applied as functions.
Controller()(Calling);
Inject(GatewayService)(Calling, undefined, 0);
Req()(Calling.prototype, 'handle', 0);
All('s/*path')(Calling.prototype, 'handle', Object.getOwnPropertyDescriptor(Calling.prototype, 'handle'));
await serveNest({ controllers: [Calling] });
