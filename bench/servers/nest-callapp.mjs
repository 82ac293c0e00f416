// Row 2: a controller that calls GatewayService.callApp (the response is captured as a
// GatewayResponse, a header changed, and returned to be sent by the gateway).
import { All, Controller, Inject, Req } from '@nestjs/common';
import { GatewayService, pathInfoOf } from '../../dist/index.js';
import { helloExpress } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

const sub = helloExpress();
class Calling {
  constructor(gateway) {
    this.gateway = gateway;
  }
  async handle(req) {
    const response = await this.gateway.callApp(sub, req, pathInfoOf(req));
    response.headers.set('x-called', '1');
    return response;
  }
}
// No decorator syntax in plain JavaScript: the decorators are applied as functions.
Controller()(Calling);
Inject(GatewayService)(Calling, undefined, 0);
Req()(Calling.prototype, 'handle', 0);
All('y/*path')(Calling.prototype, 'handle', Object.getOwnPropertyDescriptor(Calling.prototype, 'handle'));
await serveNest({ controllers: [Calling] });
