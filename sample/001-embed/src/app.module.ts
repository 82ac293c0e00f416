import { type MiddlewareConsumer, Module, type NestModule, UseGuards } from '@nestjs/common';
import { GatewayModule, MountGateway, profiler, RemoteUserGuard } from 'nest-gateway';
import { authenticate } from './auth.js';
import { createPrivateApp } from './private-app.js';
import { createExpressApp } from './express-app.js';
import { createHonoApp } from './hono-app.js';
import { PagesController } from './pages.controller.js';
import { WikiController } from './wiki.controller.js';
import { DemoRepository, GitMount, gitAvailable } from './git.js';
import { LegacyMount, PYTHON } from './legacy.js';
import { configuredMounts } from './mounts-config.js';

@MountGateway('express', createExpressApp())
export class ExpressMount {}

@MountGateway('hono', createHonoApp())
export class HonoMount {}

/**
 * Browsers without a session go to /login; command-line clients get a Basic challenge. Its
 * requests are profiled: /private/__profile__ shows where their time went.
 */
@MountGateway('private', createPrivateApp(), { middleware: [profiler()] })
@UseGuards(RemoteUserGuard)
export class PrivateMount {}

@Module({
  imports: [GatewayModule.forRoot({ loginUrl: '/login', mounts: configuredMounts() })],
  controllers: [
    PagesController,
    WikiController,
    ExpressMount,
    HonoMount,
    PrivateMount,
    // Real programs, when this machine has them (the home page says which are missing).
    ...(gitAvailable ? [GitMount] : []),
    ...(PYTHON ? [LegacyMount] : []),
  ],
  providers: [DemoRepository],
})
export class AppModule implements NestModule {
  configure(consumer: MiddlewareConsumer) {
    consumer.apply(authenticate).forRoutes('{*path}');
  }
}
