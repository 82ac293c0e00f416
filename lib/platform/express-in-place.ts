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
  setAppInPlace(req, app);
  setAppInPlace(res, app);
  if (!response.locals) response.locals = Object.create(null) as object;
  app.router.handle(req, res, next);
}

/**
 * Ends `handleInPlace` on `object`: `app` is `app` again while the prototype is `prototype`,
 * which is put back if an Express app inside the mounted one changed it (a sub-app leaves its
 * parent's `app.request` behind, for instance).
 */
export function leaveInPlace(object: object, app: unknown, prototype: object): void {
  if (Object.getPrototypeOf(object) !== prototype) Object.setPrototypeOf(object, prototype);
  setAppInPlace(object, app);
}

/** An own `app`, not enumerable: loggers that print a request's own properties must not dump the app. */
export function setOwnApp(object: object, app: unknown): void {
  if (Object.hasOwn(object, 'app')) (object as { app?: unknown }).app = app;
  else Object.defineProperty(object, 'app', { value: app, writable: true, configurable: true });
}

const IN_PLACE = Symbol('nest-gateway.appInPlace');

/** The `app` an object has while its prototype is `prototype`; one per app and prototype. */
interface InPlaceApp {
  readonly app: unknown;
  readonly prototype: object | null;
}

interface InPlace {
  [IN_PLACE]?: InPlaceApp;
}

/**
 * `app` as Express's prototype change would give it, while the prototype stays: the app, as
 * long as the prototype is the one it had when the app started. An Express app inside the
 * mounted one (`app.use('/sub', subApp)`, or one called as middleware) sets its own
 * `app.request` as prototype, and its `app` must then win, as it does in Express; a plain own
 * `app` would hide it. Assigning `app` makes a plain own property, as on Express's objects.
 * Not enumerable: loggers that print a request's own properties must not dump the app.
 */
const APP_IN_PLACE: PropertyDescriptor = {
  get(this: InPlace) {
    const prototype = Object.getPrototypeOf(this) as object | null;
    const inPlace = this[IN_PLACE];
    if (inPlace !== undefined && prototype === inPlace.prototype) return inPlace.app;
    return prototype === null ? undefined : Reflect.get(prototype, 'app', this);
  },
  set(this: InPlace, value: unknown) {
    this[IN_PLACE] = undefined;
    Object.defineProperty(this, 'app', { value, writable: true, enumerable: true, configurable: true });
  },
  configurable: true,
};

function setAppInPlace(object: object, app: unknown): void {
  const holder = object as InPlace;
  const inPlace = inPlaceApp(app, Object.getPrototypeOf(object) as object | null);
  if (holder[IN_PLACE] !== undefined) {
    holder[IN_PLACE] = inPlace;
    return;
  }
  if (Object.hasOwn(object, IN_PLACE)) holder[IN_PLACE] = inPlace;
  else Object.defineProperty(object, IN_PLACE, { value: inPlace, writable: true, configurable: true });
  Object.defineProperty(object, 'app', APP_IN_PLACE);
}

const inPlaceApps = new WeakMap<object, InPlaceApp>();

function inPlaceApp(app: unknown, prototype: object | null): InPlaceApp {
  if ((typeof app !== 'object' && typeof app !== 'function') || app === null) return { app, prototype };
  let inPlace = inPlaceApps.get(app);
  if (inPlace?.prototype !== prototype) inPlaceApps.set(app, (inPlace = { app, prototype }));
  return inPlace;
}

function differOnlyInApp(prototype: object | undefined, current: object): boolean {
  return (
    prototype !== undefined &&
    Object.getPrototypeOf(prototype) === Object.getPrototypeOf(current) &&
    addsOnlyApp(prototype) &&
    addsOnlyApp(current)
  );
}

/** Whether `prototype` has no own property but `app` (as Express's `app.request` and `app.response`). */
export function addsOnlyApp(prototype: object): boolean {
  const keys = Reflect.ownKeys(prototype);
  return keys.length === 1 && keys[0] === 'app';
}
