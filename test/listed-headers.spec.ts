import { inspect } from 'node:util';
import { responseOfHead } from '../lib/http/gateway-response.js';

// A captured, proxied, CGI or FastCGI response keeps its headers as the list its source gave
// until something iterates them. Whatever a caller does with `response.headers`, it must get
// what a WHATWG Headers holding the same headers would give it.

/** The same head, as a GatewayResponse of a source's list and as a plain Headers. */
function twins(pairs: string[]): { listed: Headers; plain: Headers } {
  const plain = new Headers();
  for (let i = 0; i < pairs.length; i += 2) plain.append(pairs[i], pairs[i + 1]);
  return { listed: responseOfHead({ status: 200, pairs: [...pairs] }).headers, plain };
}

/** A small deterministic generator, for runs that repeat. */
function random(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

const NAMES = ['a', 'B', 'set-cookie', 'Set-Cookie', 'x-y', 'content-length', 'etag', 'bad name', '', 'é'];
const VALUES = ['1', ' 2 ', '\tv\t', 'a\nb', 'caf\u00e9', '\u0100', '', 'x, y', 'n\0l', ' \r\n'];

type Outcome = { value: unknown } | { threw: string };
function outcome(run: () => unknown): Outcome {
  try {
    const value = run();
    return { value: value instanceof Object && Symbol.iterator in value ? [...(value as Iterable<unknown>)] : value };
  } catch (error) {
    return { threw: (error as Error).constructor.name };
  }
}

describe("a GatewayResponse's headers kept as its source's list", () => {
  it('answers every call as a Headers with the same headers does, before and after being iterated', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)];
      const start = ['set-cookie', 'a=1', 'x-y', 'one', 'a', 'b', 'set-cookie', 'b=2', 'etag', '"v1"'];
      const { listed, plain } = twins(start);
      const steps: string[] = [];
      for (let step = 0; step < 40; step++) {
        const name = pick(NAMES);
        const value = pick(VALUES);
        const method = pick(['get', 'has', 'set', 'append', 'delete', 'getSetCookie', 'get', 'set', 'keys'] as const);
        // Iterating is rare in a caller's filter: it ends the list, so keep most runs on it.
        if (method === 'keys' && next() < 0.8) continue;
        steps.push(`${method}(${JSON.stringify(name)}, ${JSON.stringify(value)})`);
        const call = (headers: Headers) => () =>
          method === 'set' || method === 'append' ? headers[method](name, value) : method === 'getSetCookie' || method === 'keys' ? headers[method]() : headers[method](name);
        expect({ steps, result: outcome(call(listed)) }).toEqual({ steps, result: outcome(call(plain)) });
      }
      expect({ steps, entries: [...listed] }).toEqual({ steps, entries: [...plain] });
    }
  });

  it('throws what Headers throws for missing arguments', () => {
    const { listed } = twins(['a', '1']);
    const untyped = listed as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => untyped.get()).toThrow(TypeError);
    expect(() => untyped.set('a')).toThrow(TypeError);
    expect(() => untyped.append('a')).toThrow(TypeError);
    expect(() => untyped.delete()).toThrow(TypeError);
    expect(listed.get('a')).toBe('1');
  });

  it('throws for missing arguments after being iterated too, instead of taking "undefined"', () => {
    const { listed, plain } = twins(['a', '1']);
    void [...listed];
    const untyped = listed as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const call of [() => untyped.get(), () => untyped.has(), () => untyped.set('a'), () => untyped.append('a'), () => untyped.delete()]) expect(call).toThrow(TypeError);
    expect([...listed]).toEqual([...plain]);
  });

  it('converts arguments as Headers does: a Symbol throws, both are converted before either is checked', () => {
    const { listed } = twins(['a', '1']);
    const symbol = Symbol('s') as unknown as string;
    expect(() => listed.set('x', symbol)).toThrow(TypeError);
    expect(() => listed.append('x', symbol)).toThrow(TypeError);
    expect(() => listed.get(symbol)).toThrow(TypeError);
    expect(listed.has('x')).toBe(false);
    const order = (headers: Headers) => {
      const seen: string[] = [];
      const text = (label: string, value: string) => ({ toString: () => (seen.push(label), value) }) as unknown as string;
      expect(() => headers.set(text('name', 'bad name'), text('value', 'v'))).toThrow(/invalid header name/);
      return seen;
    };
    expect(order(listed)).toEqual(order(new Headers()));
  });

  it('shows nothing of its list to JSON.stringify, spread, Object.keys or structuredClone, as a Headers', () => {
    const { listed, plain } = twins(['a', '1', 'set-cookie', 'c=1']);
    expect(JSON.stringify(listed)).toBe(JSON.stringify(plain));
    expect({ ...listed }).toEqual({ ...plain });
    expect(Object.keys(listed)).toEqual(Object.keys(plain));
    expect(structuredClone(listed)).toEqual(structuredClone(plain));
  });

  it('shows every Set-Cookie in util.inspect, as a Headers does', () => {
    const { listed, plain } = twins(['set-cookie', 'a=1', 'set-cookie', 'b=2']);
    expect(inspect(listed).replace(/^ListedHeaders/, 'Headers')).toBe(inspect(plain));
  });

  it('is a Headers that other APIs copy whole, changes included', () => {
    const { listed } = twins(['z-late', '1', 'set-cookie', 'a=1', 'set-cookie', 'b=2']);
    listed.set('x-added', 'yes');
    expect(listed).toBeInstanceOf(Headers);
    const copied = new Response(null, { headers: listed }).headers;
    expect([...copied]).toEqual([
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['x-added', 'yes'],
      ['z-late', '1'],
    ]);
    expect(Object.fromEntries(new Headers(listed))).toEqual({ 'set-cookie': 'b=2', 'x-added': 'yes', 'z-late': '1' });
    expect(inspect(listed)).toContain("'x-added': 'yes'");
  });

  it('iterates with forEach, values and entries like Headers', () => {
    const { listed, plain } = twins(['b', '2', 'a', '1']);
    const seen: string[] = [];
    listed.forEach((value, name, parent) => seen.push(`${name}=${value}:${parent === listed}`));
    expect(seen).toEqual(['a=1:true', 'b=2:true']);
    expect([...listed.values()]).toEqual([...plain.values()]);
    expect([...listed.entries()]).toEqual([...plain.entries()]);
  });
});
