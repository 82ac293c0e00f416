import { useDictionaryMode } from '../lib/platform/request-shape.js';

// A request or response may be a Proxy (a test harness, an instrumentation wrapper) or have
// one on its prototype chain: the gateway's scratch property must stay invisible to it and
// must never make the request hook throw.
describe('useDictionaryMode on objects it cannot see through', () => {
  it('leaves a Proxy alone: no trap runs', () => {
    const traps: string[] = [];
    const handler: ProxyHandler<object> = {};
    for (const trap of ['isExtensible', 'set', 'defineProperty', 'deleteProperty', 'getOwnPropertyDescriptor'] as const) {
      (handler as Record<string, unknown>)[trap] = (...args: unknown[]) => {
        traps.push(trap);
        return (Reflect[trap] as (...a: unknown[]) => unknown)(...args);
      };
    }
    useDictionaryMode(new Proxy({}, handler));
    expect(traps).toEqual([]);
  });

  it('does not throw for a Proxy that refuses unknown keys', () => {
    const strict = new Proxy({}, { defineProperty: (target, key, descriptor) => typeof key === 'string' && Reflect.defineProperty(target, key, descriptor) });
    expect(() => useDictionaryMode(strict)).not.toThrow();
  });

  it('does not reach a Proxy or a setter on the prototype chain', () => {
    const seen: Array<string | symbol> = [];
    const prototype = new Proxy({}, { set: (_target, key) => (seen.push(key), false) });
    const object = Object.create(prototype) as object;
    expect(() => useDictionaryMode(object)).not.toThrow();
    expect(seen).toEqual([]);
    expect(Reflect.ownKeys(object)).toEqual([]);
  });
});
