import type { IncomingMessage, ServerResponse } from 'node:http';

/** The parts of an Express 5 app that its `handle` uses. */
interface ExpressApp {
  handle(req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  enabled(setting: string): boolean;
  readonly router: { handle(req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void };
  readonly request: object;
  readonly response: object;
}

/**
 * Whether a mounted app can handle the client's own request and response without Express
 * giving them new prototypes: an Express app of the same Express as the one that built them
 * (the same `handle`), whose `app.request` and `app.response` add nothing to theirs but `app`.
 * Checked on every request: an app may add helpers to its prototypes at any time.
 */
export function handlesInPlace(listener: unknown, req: IncomingMessage, res: ServerResponse): listener is ExpressApp {
  const app = listener as Partial<ExpressApp>;
  const reqPrototype = Object.getPrototypeOf(req) as { app?: Partial<ExpressApp> };
  return (
    typeof app.handle === 'function' &&
    app.handle === reqPrototype.app?.handle &&
    typeof Object.getOwnPropertyDescriptor(app, 'router')?.get === 'function' &&
    differOnlyInApp(app.request, reqPrototype) &&
    differOnlyInApp(app.response, Object.getPrototypeOf(res) as object)
  );
}

/**
 * Express's `app.handle`, with the app as an own `app` of the request and response where
 * Express changes their prototypes to its `app.request` and `app.response`: those differ from
 * the current ones in `app` alone (`handlesInPlace`), so the app sees the same. On V8 before 13
 * each prototype change costs more than the rest of a mount and promotes about 2 KB per request
 * to the old generation (bench/findings.md, eighth round).
 */
export function handleInPlace(app: ExpressApp, req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void {
  if (app.enabled('x-powered-by')) res.setHeader('X-Powered-By', 'Express');
  const request = req as IncomingMessage & { res?: ServerResponse };
  const response = res as ServerResponse & { req?: IncomingMessage; locals?: object };
  request.res = res;
  response.req = req;
  setOwnApp(req, app);
  setOwnApp(res, app);
  if (!response.locals) response.locals = Object.create(null) as object;
  app.router.handle(req, res, next);
}

/** An own `app`, not enumerable: loggers that print a request's own properties must not dump the app. */
export function setOwnApp(object: object, app: unknown): void {
  if (Object.hasOwn(object, 'app')) (object as { app?: unknown }).app = app;
  else Object.defineProperty(object, 'app', { value: app, writable: true, configurable: true });
}

function differOnlyInApp(prototype: object | undefined, current: object): boolean {
  return (
    prototype !== undefined &&
    Object.getPrototypeOf(prototype) === Object.getPrototypeOf(current) &&
    addsOnlyApp(prototype) &&
    addsOnlyApp(current)
  );
}

function addsOnlyApp(prototype: object): boolean {
  const keys = Reflect.ownKeys(prototype);
  return keys.length === 1 && keys[0] === 'app';
}
