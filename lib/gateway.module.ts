import { type DynamicModule, Module } from '@nestjs/common';
import {
  ConfigurableGatewayModule,
  GATEWAY_MODULE_OPTIONS,
  type GATEWAY_ASYNC_OPTIONS_TYPE,
  type GATEWAY_OPTIONS_TYPE,
} from './gateway.module-definition.js';
import { GatewayService } from './gateway.service.js';
import { mountControllers } from './config/configured-mounts.js';
import type { MountDeclaration } from './config/mount-declaration.js';

/**
 * Provides GatewayService and prepares the HTTP adapter for mounted apps (body parsers kept
 * off mounted routes, GatewayResponse return values sent as is). Global by default; import it
 * once with `forRoot()` or `forRootAsync()`.
 */
@Module({
  providers: [GatewayService],
  exports: [GatewayService, GATEWAY_MODULE_OPTIONS],
})
export class GatewayModule extends ConfigurableGatewayModule {
  static override forRoot(options: typeof GATEWAY_OPTIONS_TYPE = {}): DynamicModule {
    return withMounts(super.forRoot(options), options.mounts);
  }

  /**
   * Routes are registered before the factory resolves: mounts declared here (`mounts`, paths
   * at least) get their routes; the factory's `mounts` may supply the apps of those paths.
   */
  static override forRootAsync(options: typeof GATEWAY_ASYNC_OPTIONS_TYPE): DynamicModule {
    return withMounts(super.forRootAsync(options), options.mounts);
  }
}

function withMounts(definition: DynamicModule, mounts: MountDeclaration[] | undefined): DynamicModule {
  if (!mounts?.length) return definition;
  return { ...definition, controllers: [...(definition.controllers ?? []), ...mountControllers(mounts)] };
}
