import { EventEmitter } from 'node:events';
import { IncomingMessage, ServerResponse } from 'node:http';
import { types } from 'node:util';
import { constructorWithPrototype } from '../http/with-prototype.js';

/**
 * Whether V8 gives objects their own hidden class for every property added after a prototype
 * change, never shared with other objects (V8 before 13: Node 20 and 22). Express changes the
 * prototype of every request and response it handles, and its router, Nest and the app then
 * add dozens of properties to each: every addition copies the object's whole property list
 * (30 to 50 entries) into a new class, and no inline cache ever sees a class twice. V8 13.6
 * (Node 24) shares those classes, and dictionary mode only costs there; V8 12.4 (Node 22) does
 * not. The versions between were not measured.
 */
const PROTOTYPE_CHANGE_UNSHARES_CLASSES = isV8Before13();

function isV8Before13(): boolean {
  // Bun reports a V8 version for compatibility, but runs JavaScriptCore.
  const { v8, bun } = process.versions as Record<string, string | undefined>;
  return !bun && v8 !== undefined && Number(v8.split('.')[0]) < 13;
}

const SCRATCH = Symbol('nest-gateway.scratch');

/**
 * Puts an Express request or response into V8's dictionary mode where that pays (see above):
 * adding a property is then a hash insert, with no class to copy.
 * Measured on Node 20 (bench/findings.md, sixth round): a mount of an Express app went from
 * 941 k to 732 k instructions per request. Invisible to code: a symbol property deleted
 * right after it was added (V8 cannot take the last class back, so it gives up the classes).
 */
export function useDictionaryMode(object: object): void {
  // A Proxy would see (and could refuse) every step, and has no properties of its own to
  // speed up. Defined rather than assigned: no setter or Proxy on the prototype chain runs,
  // and on an extensible ordinary object neither step can fail.
  if (!PROTOTYPE_CHANGE_UNSHARES_CLASSES || types.isProxy(object) || !Object.isExtensible(object)) return;
  Object.defineProperty(object, SCRATCH, { value: undefined, writable: true, configurable: true });
  delete (object as Record<symbol, unknown>)[SCRATCH];
}

/** The prototypes an Express app gives its requests and responses. */
export interface AppPrototypes {
  request?: object;
  response?: object;
}

/** Servers looked at: the app whose prototypes each builds its requests and responses on, if any. */
const serversOnAppPrototypes = new WeakMap<object, AppPrototypes | null>();

/**
 * Listeners that hand every request of their event to an app unchanged: `createRequestListener`'s
 * ('request'), the gateway's upgrade dispatch ('upgrade').
 */
const listenersOfApps = new WeakMap<object, { app: unknown; event: string }>();

/**
 * Declares `listener` (for `event`) a way into `app` alone: a server whose only such listener it
 * is may build its requests on the app's prototypes, as one whose listener is the app itself
 * (`buildsOnAppPrototypes`).
 */
export function passesEveryRequestTo(listener: object, app: unknown, event: 'request' | 'upgrade' = 'request'): void {
  listenersOfApps.set(listener, { app, event });
}

type NodeServer = EventEmitter & Record<symbol, unknown>;

/**
 * Whether the server that delivered `req` builds its requests and responses on the app's
 * prototypes; the first request through a server makes it do so, as `http.createServer`'s
 * `IncomingMessage` and `ServerResponse` options would have (Nest creates the server without
 * them). Express then finds each request and response with its prototype already and changes
 * nothing, so V8 never gives them classes of their own (see above): they keep fast properties
 * with classes shared from one request to the next, on every Node version.
 * Measured (bench/findings.md, seventh round): a mount went from 735 k to 489 k instructions
 * per request on Node 20, and from 23.7 k to 28.6 k requests per second on Node 24.
 * A server built with classes of its own, or without the slots Node keeps them in, is left
 * as it is; so is one whose requests the app's prototypes cannot build, and one whose requests
 * not all go to the app (see `passesToApp`).
 */
export function buildsOnAppPrototypes(req: IncomingMessage, app: AppPrototypes): boolean {
  const server = (req.socket as { server?: unknown } | null | undefined)?.server;
  if (typeof server !== 'object' || server === null) return false;
  const builds = serversOnAppPrototypes.get(server);
  if (builds !== undefined) return builds === app;
  // Looked at once per server; every request after that is the lookup above.
  const serves = server instanceof EventEmitter && servesOnlyApp(server, app) && useAppPrototypes(server as NodeServer, app);
  serversOnAppPrototypes.set(server, serves ? app : null);
  // This request was built before: the server's next ones are.
  return false;
}

/** The server events whose listeners are handed the requests the server builds. */
const REQUEST_EVENTS = new Set<string | symbol>(['request', 'upgrade', 'connect', 'checkContinue', 'checkExpectation', 'dropRequest']);

/**
 * Whether a listener for `event` leaves the server's requests to the app. Any other listener
 * would be handed requests with the app's prototypes that it would not have had before: its
 * `req.query = ...` would throw on Express's getter, `req.ip` would answer.
 */
function passesToApp(event: string | symbol, listener: unknown, app: AppPrototypes): boolean {
  if (!REQUEST_EVENTS.has(event)) return true;
  if (event === 'request' && listener === app) return true;
  const declared = typeof listener === 'function' ? listenersOfApps.get(listener) : undefined;
  return declared !== undefined && declared.app === app && declared.event === event;
}

function servesOnlyApp(server: EventEmitter, app: AppPrototypes): boolean {
  if (server.listenerCount('request') !== 1) return false;
  return [...REQUEST_EVENTS].every((event) => server.listeners(event).every((listener) => passesToApp(event, listener, app)));
}

function useAppPrototypes(server: NodeServer, app: AppPrototypes): boolean {
  const Request = constructorWithPrototype(IncomingMessage, app.request);
  const Response = constructorWithPrototype(ServerResponse, app.response);
  if (!Request || !Response) return false;
  // Node keeps the classes it builds with in symbol-keyed slots of the server, Node's own
  // classes unless the server was created with others.
  const slots = Object.getOwnPropertySymbols(server);
  const requestSlot = slots.find((key) => server[key] === IncomingMessage);
  const responseSlot = slots.find((key) => server[key] === ServerResponse);
  if (!requestSlot || !responseSlot) return false;
  try {
    // An exception in the server's own constructor call would take the process down.
    new Response(new Request(undefined as never));
  } catch {
    return false;
  }
  server[requestSlot] = Request;
  server[responseSlot] = Response;
  if (server[requestSlot] !== Request || server[responseSlot] !== Response) return false;
  server.on('newListener', function nestGatewayRequestShape(event: string | symbol, listener: unknown) {
    if (passesToApp(event, listener, app)) return;
    // Someone else starts taking requests (a WebSocket server attached late): Node's classes again.
    server.removeListener('newListener', nestGatewayRequestShape);
    if (server[requestSlot] === Request) server[requestSlot] = IncomingMessage;
    if (server[responseSlot] === Response) server[responseSlot] = ServerResponse;
    serversOnAppPrototypes.set(server, null);
  });
  return true;
}
