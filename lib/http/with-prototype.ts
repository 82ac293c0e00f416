/** Node's http classes are plain constructor functions, which can construct an object made beforehand. */
const callable = new Map<unknown, boolean>();
/** Per base class, a constructor per prototype (weakly held: an app's prototypes go with the app). */
const constructors = new WeakMap<object, WeakMap<object, new (...args: never[]) => object>>();

/**
 * `new Base(...args)`, but the object has `prototype` (a descendant of `Base.prototype`, such as
 * Express's `app.request`) from the start. An app that sets that prototype itself (Express does,
 * on every request) then changes nothing. Changing it on a built object gives the object a
 * hidden class of its own in V8 before 13, a new one for every property added after, and every
 * request new ones, which costs more than building the object (and keeps young objects alive
 * across scavenges). Built by a constructor whose `prototype` it is, the objects of one app share
 * their classes, as any class's instances do (sixth and seventh rounds of bench/findings.md).
 * Falls back to `new Base(...args)` when the prototype does not fit.
 */
export function constructWithPrototype<T extends object, A extends unknown[]>(
  Base: new (...args: A) => T,
  prototype: unknown,
  ...args: A
): T {
  const Construct = constructorWithPrototype(Base, prototype);
  if (!Construct) return new Base(...args);
  try {
    return new Construct(...args);
  } catch {
    // A prototype whose accessors refuse what the constructor assigns: built the usual way.
    return new Base(...args);
  }
}

/**
 * A constructor that runs `Base` on objects with `prototype` (one per prototype, kept while the
 * prototype lives), or undefined when `prototype` is not a descendant of `Base.prototype` or
 * `Base` is a class (which cannot be called on an object made beforehand).
 */
export function constructorWithPrototype<T extends object, A extends unknown[]>(
  Base: new (...args: A) => T,
  prototype: unknown,
): (new (...args: A) => T) | undefined {
  if (typeof prototype !== 'object' || prototype === null) return undefined;
  let byPrototype = constructors.get(Base);
  // Only prototypes that passed the checks below are kept: a known one needs none again.
  const known = byPrototype?.get(prototype) as (new (...args: A) => T) | undefined;
  if (known) return known;
  if (!isCallable(Base) || !Object.prototype.isPrototypeOf.call(Base.prototype, prototype)) return undefined;
  if (!byPrototype) constructors.set(Base, (byPrototype = new WeakMap()));
  const Construct = sizedConstructor(Base);
  Construct.prototype = prototype as T;
  byPrototype.set(prototype, Construct as never);
  return Construct;
}

/** Never true: the assignments it guards are only read by V8's parser (a `let`, so that a minifier keeps them). */
let sizeHintsRun = false;

/**
 * A constructor calling `Base`. V8 reserves room inside an object for as many properties as it
 * counts `this.x =` assignments in its constructor's source; the ones never run below make that
 * room for a ServerResponse's 40-odd properties. Without it they spill into a separate array,
 * and a symbol-keyed store (Node's constructors make several) turns an object with more than a
 * dozen spilled properties into a dictionary, with no class to share.
 */
function sizedConstructor<T extends object, A extends unknown[]>(Base: new (...args: A) => T): new (...args: A) => T {
  return function (this: Record<string, unknown>, ...args: A) {
    (Base as unknown as (this: object, ...args: A) => void).apply(this, args);
    if (sizeHintsRun) {
      this.a0 = this.a1 = this.a2 = this.a3 = this.a4 = this.a5 = this.a6 = this.a7 = undefined;
      this.b0 = this.b1 = this.b2 = this.b3 = this.b4 = this.b5 = this.b6 = this.b7 = undefined;
      this.c0 = this.c1 = this.c2 = this.c3 = this.c4 = this.c5 = this.c6 = this.c7 = undefined;
      this.d0 = this.d1 = this.d2 = this.d3 = this.d4 = this.d5 = this.d6 = this.d7 = undefined;
      sizeHintsRun = false;
    }
  } as unknown as new (...args: A) => T;
}

function isCallable(Base: unknown): boolean {
  let known = callable.get(Base);
  if (known === undefined) {
    known = !/^class\b/.test(Function.prototype.toString.call(Base as () => void));
    callable.set(Base, known);
  }
  return known;
}
