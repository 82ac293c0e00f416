/** Node's http classes are plain constructor functions, which can construct an object made beforehand. */
const callable = new Map<unknown, boolean>();

/**
 * `new Base(...args)`, but the object has `prototype` (a descendant of `Base.prototype`, such as
 * Express's `app.request`) from the start. An app that sets that prototype itself (Express does,
 * on every request) then changes nothing. Changing it on a built object gives the object a
 * hidden class of its own in V8, a new one for every property added after, and every request
 * new ones, which costs more than building the object (and keeps young objects alive across
 * scavenges). Built this way, the objects share V8's dictionary-mode shape instead.
 * Falls back to `new Base(...args)` when the prototype does not fit.
 */
export function constructWithPrototype<T extends object, A extends unknown[]>(
  Base: new (...args: A) => T,
  prototype: unknown,
  ...args: A
): T {
  if (typeof prototype !== 'object' || prototype === null || !isCallable(Base)) return new Base(...args);
  if (!Object.prototype.isPrototypeOf.call(Base.prototype, prototype)) return new Base(...args);
  const target = Object.create(prototype) as T;
  try {
    (Base as unknown as (this: T, ...args: A) => void).apply(target, args);
    return target;
  } catch {
    // A prototype whose accessors refuse what the constructor assigns: built the usual way.
    return new Base(...args);
  }
}

function isCallable(Base: unknown): boolean {
  let known = callable.get(Base);
  if (known === undefined) {
    known = !/^class\b/.test(Function.prototype.toString.call(Base as () => void));
    callable.set(Base, known);
  }
  return known;
}
