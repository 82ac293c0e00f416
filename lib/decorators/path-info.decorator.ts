import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { pathInfoFromPattern, splitUrl } from '../http/path-info.js';
import { originalUrlOf, routePatternOf } from '../platform/request-info.js';

/** pathInfo of a request: what the matched route's trailing wildcard covers, undecoded. */
export function pathInfoOf(req: unknown): string {
  return pathInfoFromPattern(routePatternOf(req), splitUrl(originalUrlOf(req)).path);
}

/**
 * Parameter decorator: the part of the request path matched by the route's trailing wildcard,
 * as `''` or `'/…'`, undecoded. Pass it to `callApp`.
 *
 * @example
 * ```ts
 * @All(['trac', 'trac/*path']) // 'trac' alone for /trac itself: '*path' needs a character
 * trac(@Req() req: Request, @PathInfo() pathInfo: string) {
 *   return this.gateway.callApp(trac, req, pathInfo);
 * }
 * ```
 */
export const PathInfo = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  // The request, as switchToHttp().getRequest() gives it, without the three closures that
  // switchToHttp() adds to the context Nest builds for every parameter of every request.
  pathInfoOf(context.getArgByIndex(0)),
);
