import type { CanActivate, Type } from '@nestjs/common';
import type { CgiAppOptions } from '../apps/cgi-app.js';
import type { FastcgiAppOptions } from '../apps/fastcgi-app.js';
import type { ProxyAppOptions } from '../apps/proxy-app.js';
import type { GatewayAppLike } from '../apps/to-gateway-app.js';
import type { FastcgiAddress } from '../fastcgi/fastcgi-connection.js';
import type { HeaderChanges } from '../headers/header-changes.js';
import type { MountOptions } from '../interfaces/gateway-options.interface.js';

/** An app described by plain data, as a JSON or YAML configuration file can hold it. */
export type AppSpec =
  | ({ kind: 'cgi'; script: string } & Omit<CgiAppOptions, 'spawner'>)
  | ({ kind: 'fastcgi'; address: FastcgiAddress | FastcgiAddress[] } & FastcgiAppOptions)
  | ({ kind: 'proxy'; url: string | string[] } & ProxyAppOptions);

/** One mount declared in `GatewayModule.forRoot({ mounts })`: what a `@MountGateway` class says. */
export interface MountDeclaration extends Omit<MountOptions, 'name'> {
  /** The mount path, as in `@MountGateway(path)`. */
  path: string;
  /**
   * The app: any gateway app, or a plain-data description (`{ kind: 'cgi', script }`). With
   * `forRootAsync` it may be left out here and given by the factory's `mounts` (same path).
   * @default the app of the same path in the options the async factory returns
   */
  app?: GatewayAppLike | AppSpec;
  /**
   * Guards of the mount, as `@UseGuards(...)` on a mount class.
   * @default []
   */
  guards?: Array<Type<CanActivate> | CanActivate>;
  /**
   * Response header changes, as `@GatewayHeaders(...)` on a mount class.
   * @default undefined
   */
  headers?: HeaderChanges;
  /**
   * Name used in logs and errors.
   * @default the mount path
   */
  name?: string;
}
