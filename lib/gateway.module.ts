import { type DynamicModule, Module } from '@nestjs/common';
import {
  ConfigurableGatewayModule,
  GATEWAY_MODULE_OPTIONS,
  type GATEWAY_ASYNC_OPTIONS_TYPE,
  type GATEWAY_OPTIONS_TYPE,
} from './gateway.module-definition.js';
import { GatewayService } from './gateway.service.js';

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
    return super.forRoot(options);
  }

  static override forRootAsync(options: typeof GATEWAY_ASYNC_OPTIONS_TYPE): DynamicModule {
    return super.forRootAsync(options);
  }
}
