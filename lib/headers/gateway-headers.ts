import {
  applyDecorators,
  type CallHandler,
  type ExecutionContext,
  Injectable,
  type NestInterceptor,
  UseInterceptors,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { ServerResponse } from 'node:http';
import type { Observable } from 'rxjs';
import { rawResponse } from '../platform/request-info.js';
import { applyOnWriteHead, type HeaderChanges } from './header-changes.js';

const HEADER_CHANGES = Reflector.createDecorator<HeaderChanges[]>();
const INTERCEPTED = Symbol('nest-gateway.headersIntercepted');

/**
 * Applies the header changes of `@GatewayHeaders` (class first, then handler, each in the
 * order written) to whatever the handler's response turns out to be: a GatewayResponse, a
 * mounted app's own response, or an ordinary Nest response. Protected hooks let a subclass
 * compute changes per request.
 */
@Injectable()
export class GatewayHeadersInterceptor implements NestInterceptor {
  constructor(protected readonly reflector: Reflector) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() === 'http') {
      const res = rawResponse(context.switchToHttp().getResponse()) as ServerResponse & { [INTERCEPTED]?: Set<Function> };
      // On both a class and its handler, the interceptor is registered twice (a method's
      // decorators run before its class's): each reads both, so one run is enough.
      const seen = (res[INTERCEPTED] ??= new Set());
      if (!seen.has(this.constructor)) {
        seen.add(this.constructor);
        for (const changes of this.getChanges(context)) applyOnWriteHead(res, changes);
      }
    }
    return next.handle();
  }

  /** The changes for this request; override to add dynamic ones. */
  protected getChanges(context: ExecutionContext): HeaderChanges[] {
    const onClass = this.reflector.get(HEADER_CHANGES, context.getClass());
    const onHandler = this.reflector.get(HEADER_CHANGES, context.getHandler());
    return [...(onClass ?? []), ...(onHandler ?? [])];
  }
}

const APPLIED = Symbol('nest-gateway.headersApplied');

/**
 * Header changes (`set`, `append`, `remove`) for the response of the decorated class or
 * handler, whether it is a mounted app, a returned GatewayResponse or anything else.
 * Registers GatewayHeadersInterceptor for the target; on both a class and its handler,
 * the class's changes apply first. Several on one target all apply, top to bottom.
 */
export function GatewayHeaders(changes: HeaderChanges): ClassDecorator & MethodDecorator {
  return (target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    const holder = (descriptor?.value ?? target) as Record<symbol, boolean>;
    const classTarget = (key === undefined ? target : target.constructor) as unknown as Record<symbol, boolean>;
    // One interceptor per class is enough: it reads class and handler metadata itself.
    // Decorators run bottom to top, so the one read first arrives last and goes in front.
    const below = (Reflect.getOwnMetadata(HEADER_CHANGES.KEY, holder) as HeaderChanges[] | undefined) ?? [];
    const decorators: Array<ClassDecorator | MethodDecorator> = [HEADER_CHANGES([changes, ...below])];
    if (!classTarget[APPLIED] && !holder[APPLIED]) decorators.push(UseInterceptors(GatewayHeadersInterceptor));
    holder[APPLIED] = true;
    (applyDecorators(...decorators) as (t: object, k?: string | symbol, d?: PropertyDescriptor) => void)(
      target,
      key,
      descriptor,
    );
  };
}
