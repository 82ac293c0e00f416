import { UseGuards, type Type } from '@nestjs/common';
import { cgiApp } from '../apps/cgi-app.js';
import { fastcgiApp } from '../apps/fastcgi-app.js';
import { brand, isGatewayApp, type GatewayApp } from '../apps/gateway-app.js';
import { proxyApp } from '../apps/proxy-app.js';
import { toGatewayApp, type GatewayAppLike } from '../apps/to-gateway-app.js';
import { MountGateway } from '../decorators/mount-gateway.decorator.js';
import { GatewayHeaders } from '../headers/gateway-headers.js';
import type { AppSpec, MountDeclaration } from './mount-declaration.js';

export const LATE_PATH = Symbol.for('nest-gateway.lateApp');

/** A mount whose app the async options supply: it is looked up when a request arrives. */
export type LateApp = GatewayApp & { readonly [LATE_PATH]: string };

export function isLateApp(app: GatewayApp): app is LateApp {
  return LATE_PATH in app;
}

function lateApp(path: string): LateApp {
  const unresolved = () => Promise.reject(new Error(`No app configured for the mount ${path}`));
  return Object.assign(brand<GatewayApp>({ kind: 'late', call: unresolved }), { [LATE_PATH]: path }) as LateApp;
}

/** Builds the app a declaration describes (plain data from a configuration file, or a real app). */
export function appOf(app: GatewayAppLike | AppSpec): GatewayApp {
  if (isGatewayApp(app) || typeof app === 'function' || !('kind' in app) || typeof (app as AppSpec).kind !== 'string') {
    return toGatewayApp(app as GatewayAppLike);
  }
  const spec = app as AppSpec;
  switch (spec.kind) {
    case 'cgi': {
      const { kind: _kind, script, ...options } = spec;
      return cgiApp(script, options);
    }
    case 'fastcgi': {
      const { kind: _kind, address, ...options } = spec;
      return fastcgiApp(address, options);
    }
    case 'proxy': {
      const { kind: _kind, url, ...options } = spec;
      return proxyApp(url, options);
    }
    default:
      throw new TypeError(`Unknown app kind ${JSON.stringify((spec as { kind: unknown }).kind)} in a configured mount`);
  }
}

export function normalisePath(path: string): string {
  return '/' + path.replace(/^\/+|\/+$/g, '');
}

/**
 * One controller class per declared mount, made exactly as a `@MountGateway` class would be
 * (routes, guards, header changes), so that Nest registers its routes with the module's.
 */
export function mountControllers(mounts: readonly MountDeclaration[]): Type[] {
  return mounts.map((declaration) => {
    const { path, app, guards, headers, ...options } = declaration;
    const target = { [`ConfiguredMount ${normalisePath(path)}`]: class {} }[`ConfiguredMount ${normalisePath(path)}`];
    MountGateway(path, app === undefined ? lateApp(normalisePath(path)) : appOf(app), options)(target);
    if (guards?.length) UseGuards(...guards)(target);
    if (headers) GatewayHeaders(headers)(target);
    return target as Type;
  });
}
