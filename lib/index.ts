export { GatewayModule } from './gateway.module.js';
export { GATEWAY_MODULE_OPTIONS } from './gateway.module-definition.js';
export { GatewayService } from './gateway.service.js';
export type {
  CallOptions,
  GatewayCallSettings,
  GatewayEnv,
  GatewayModuleOptions,
  MountOptions,
} from './interfaces/gateway-options.interface.js';

export {
  RemoteUserGuard,
  DEFAULT_CHALLENGE,
  isGitPushRequest,
} from './identity/remote-user.guard.js';
export {
  defaultRemoteUser,
  DEFAULT_IDENTITY_HEADER,
  DEFAULT_IDENTITY_ALIASES,
  InvalidRemoteUserError,
  type RemoteUserResolver,
} from './identity/remote-user.js';
export { GatewayHeaders, GatewayHeadersInterceptor } from './headers/gateway-headers.js';
export type { HeaderChanges } from './headers/header-changes.js';
export type { RewriteOptions } from './headers/rewrite.js';

export { MountGateway } from './decorators/mount-gateway.decorator.js';
export type { MountDeclaration, AppSpec } from './config/mount-declaration.js';
export type { NodeMiddleware } from './middleware/run-middleware.js';
export { profiler, DEFAULT_PROFILE_PATH, type ProfilerOptions } from './profiler/profiler.js';
export { PathInfo, pathInfoOf } from './decorators/path-info.decorator.js';

export type { GatewayApp, GatewayExchange } from './apps/gateway-app.js';
export { toGatewayApp, type GatewayAppLike } from './apps/to-gateway-app.js';
export { nodeApp, type NodeListener, type NodeAppOptions, type UpgradeListener } from './apps/node-app.js';
export { fetchApp, type FetchHandler } from './apps/fetch-app.js';
export { cgiApp, type CgiAppOptions } from './apps/cgi-app.js';
export type { CgiSpawner, CgiChild, CgiSpawnRequest, CgiExit } from './cgi/spawner.js';
export { directSpawner } from './cgi/spawner.js';
export { SpawnHelperPool, type SpawnHelperOptions } from './cgi/spawn-helper-pool.js';
export type { LocalRedirects } from './cgi/local-redirect.js';
export { fastcgiApp, type FastcgiAppOptions } from './apps/fastcgi-app.js';
export type { FastcgiAddress } from './fastcgi/fastcgi-connection.js';
export { proxyApp, type ProxyAppOptions } from './apps/proxy-app.js';

export {
  GatewayResponse,
  DEFAULT_READ_LIMIT,
  type GatewayResponseInit,
  type ReadOptions,
} from './http/gateway-response.js';
export type { BodyInit } from './http/body-source.js';
export { BodyTooLargeError } from './http/read-body.js';
export { ContentEncodingError } from './http/content-coding.js';
export { RequestBodyConsumedError } from './http/request-body.js';
export { PathInfoError } from './http/path-info.js';

export {
  createRequestListener,
  type EmbedOptions,
  type NestRequestListener,
} from './embed/create-request-listener.js';
export { createFetchHandler, type NestFetchHandler } from './embed/create-fetch-handler.js';
export type { NestAppSource } from './embed/nest-app-of.js';
