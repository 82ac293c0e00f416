import { types } from 'node:util';

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
