import { Module } from '@nestjs/common';
import { GatewayModule, MountGateway } from 'nest-gateway';
import { createExpressApp } from './express-app.js';
import { createHonoApp } from './hono-app.js';
import { PagesController } from './pages.controller.js';
import { WikiController } from './wiki.controller.js';

@MountGateway('express', createExpressApp())
export class ExpressMount {}

@MountGateway('hono', createHonoApp())
export class HonoMount {}

@Module({
  imports: [GatewayModule.forRoot()],
  controllers: [PagesController, WikiController, ExpressMount, HonoMount],
})
export class AppModule {}
