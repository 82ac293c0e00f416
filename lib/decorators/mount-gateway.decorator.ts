import { All, Controller, Inject, Req, Res } from '@nestjs/common';
import { toGatewayApp, type GatewayAppLike } from '../apps/to-gateway-app.js';
import { GatewayService } from '../gateway.service.js';
import type { MountOptions } from '../interfaces/gateway-options.interface.js';
import { MOUNT_WILDCARD } from '../platform/mount-matcher.js';
import { recordMountedApp } from '../platform/upgrading-mounts.js';
import { PathInfo } from './path-info.decorator.js';

/** The handler every mount class gets; its name shows in Nest's route log. */
const HANDLER = 'serveGateway';
const SERVICE = '__nestGatewayService';

/**
 * Class decorator: the class becomes a controller serving every method and every sub-path
 * under `path` (the bare path and `path/` included) by handing the request to `app`, prefix
 * stripped. Guards, interceptors, pipes (on the pathInfo argument) and filters on the class
 * apply as on any controller. List the class in a module's `controllers`.
 *
 * @example
 * ```ts
 * @MountGateway('legacy', expressApp)
 * @UseGuards(AuthGuard)
 * export class LegacyMount {}
 * ```
 */
export function MountGateway(path: string, app: GatewayAppLike, options: MountOptions = {}): ClassDecorator {
  const gatewayApp = toGatewayApp(app);
  const settings = { ...options, name: options.name ?? `/${path.replace(/^\/+/, '')}` };
  return (target) => {
    recordMountedApp(path, gatewayApp);
    Controller({ path, version: options.version })(target);
    const prototype = target.prototype as Record<string, unknown>;
    Object.defineProperty(prototype, HANDLER, {
      configurable: true,
      writable: true,
      value: function serveGateway(this: Record<string, GatewayService>, req: unknown, res: unknown, pathInfo: string) {
        return this[SERVICE].serveMount(gatewayApp, req, res, pathInfo, settings);
      },
    });
    const descriptor = Object.getOwnPropertyDescriptor(prototype, HANDLER)!;
    All(['', `*${MOUNT_WILDCARD}`])(prototype, HANDLER, descriptor);
    Req()(prototype, HANDLER, 0);
    Res({ passthrough: true })(prototype, HANDLER, 1);
    PathInfo()(prototype, HANDLER, 2);
    Inject(GatewayService)(prototype, SERVICE);
  };
}
