import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { GatewayModuleOptions } from './interfaces/gateway-options.interface.js';
import type { MountDeclaration } from './config/mount-declaration.js';

export const {
  ConfigurableModuleClass: ConfigurableGatewayModule,
  MODULE_OPTIONS_TOKEN: GATEWAY_MODULE_OPTIONS,
  OPTIONS_TYPE: GATEWAY_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: GATEWAY_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<GatewayModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras(
    { isGlobal: true, mounts: [] as MountDeclaration[] },
    // The mounts become controllers in GatewayModule.forRoot/forRootAsync.
    (definition, extras) => ({ ...definition, global: extras.isGlobal }),
  )
  .build();
