// The Nest side of the bench servers.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GatewayModule } from '../../dist/index.js';
import { ready } from './shared.mjs';

/**
 * Boots a Nest app (Express platform) of the given controllers and announces it. GatewayModule is
 * imported unless `gateway: false`: the references a user would pick instead run without it.
 */
export async function serveNest({ controllers = [], configure, cleanup, gateway = true } = {}) {
  class BenchModule {}
  if (configure) BenchModule.prototype.configure = configure;
  Module({ imports: gateway ? [GatewayModule.forRoot()] : [], controllers })(BenchModule);
  const app = await NestFactory.create(BenchModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  ready(app.getHttpServer().address().port, async () => {
    await app.close();
    await cleanup?.();
  });
  return app;
}
