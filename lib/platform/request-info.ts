import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * What the gateway needs to know about the platform's request objects. Express's are Node's
 * own; Fastify wraps them in `.raw`. Everything platform-specific about reading a request
 * lives here and in the platform's installer.
 */
type PlatformRequest = IncomingMessage & {
  raw?: IncomingMessage;
  originalUrl?: string;
  route?: { path?: string };
  routeOptions?: { url?: string };
};

export function rawRequest(req: unknown): IncomingMessage {
  const platform = req as PlatformRequest;
  return platform.raw ?? platform;
}

export function rawResponse(res: unknown): ServerResponse {
  const platform = res as ServerResponse & { raw?: ServerResponse };
  return platform.raw ?? platform;
}

/** Path and query exactly as the client sent them, whatever routers did to `req.url`. */
export function originalUrlOf(req: unknown): string {
  const platform = req as PlatformRequest;
  return platform.originalUrl ?? rawRequest(req).url ?? '/';
}

/** The route pattern that matched (`/api/wiki/*path`), with global prefix and version. */
export function routePatternOf(req: unknown): string | undefined {
  const platform = req as PlatformRequest;
  return platform.route?.path ?? platform.routeOptions?.url;
}
