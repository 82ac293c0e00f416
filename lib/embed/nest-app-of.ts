import { All, Controller, Module, Req, type DynamicModule, type INestApplication, type NestApplicationOptions, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

/** What can be served as an app: a Nest module, an app, a controller class or a handler function. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the handler may type its request as it likes
export type NestAppSource = Type | DynamicModule | INestApplication | ((req: any) => unknown);

const CONTROLLER_WATERMARK = '__controller__';

/**
 * An initialised Nest application for the source. A controller class or a handler function
 * (the one-file form) gets a module written for it.
 */
export async function nestAppOf(source: NestAppSource, options: NestApplicationOptions = {}): Promise<{ app: INestApplication; owned: boolean }> {
  if (isApplication(source)) {
    await source.init();
    return { app: source, owned: false };
  }
  const module = moduleFor(source);
  // abortOnError off: a failing lookup inside an embedded app must not end the host process.
  const app = await NestFactory.create(module, { logger: ['error', 'warn'], abortOnError: false, ...options });
  await app.init();
  return { app, owned: true };
}

function isApplication(source: unknown): source is INestApplication {
  return typeof source === 'object' && source !== null && typeof (source as INestApplication).getHttpAdapter === 'function';
}

function moduleFor(source: Exclude<NestAppSource, INestApplication>): Type | DynamicModule {
  if (typeof source === 'object') return source;
  if (Reflect.getMetadata(CONTROLLER_WATERMARK, source)) return wrap([source as Type]);
  const isClass = /^class[\s{]/.test(Function.prototype.toString.call(source));
  if (isClass) return source as Type;
  return wrap([handlerController(source as (req: unknown) => unknown)]);
}

function wrap(controllers: Type[]): Type {
  class OneFileModule {}
  Module({ controllers })(OneFileModule);
  return OneFileModule;
}

/** A controller that answers every method and path with the handler's return value. */
function handlerController(handler: (req: unknown) => unknown): Type {
  class HandlerController {
    handle(req: unknown) {
      return handler(req);
    }
  }
  Controller()(HandlerController);
  const descriptor = Object.getOwnPropertyDescriptor(HandlerController.prototype, 'handle')!;
  All(['', '*path'])(HandlerController.prototype, 'handle', descriptor);
  Req()(HandlerController.prototype, 'handle', 0);
  return HandlerController;
}
