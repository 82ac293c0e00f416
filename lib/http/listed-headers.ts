import { inspect } from 'node:util';
import { type HeaderPairs, TOKEN, appendPair, pairValue, removePairs, setPair } from './header-pairs.js';

/**
 * The `headers` of a GatewayResponse whose source gave them as a list (see HeaderPairs): a real
 * `Headers` (`instanceof`, any API that takes one) that answers `get`, `has`, `getSetCookie`,
 * `set`, `append` and `delete` on that list, and fills itself only when it is iterated. A
 * caller that filters a few headers (`set('x-frame-options', …)`, a rewritten Location) then
 * costs a list edit instead of a `Headers` built and iterated (bench/findings.md, eleventh
 * round), and the headers still go out in the order the app sent them.
 *
 * Only its own methods see the list: `Headers.prototype.get.call(headers, …)` sees an empty
 * `Headers` until something has iterated it.
 */
export class ListedHeaders extends Headers {
  /**
   * The headers until the first iteration; then undefined, and `Headers` holds them. A `#`
   * field: an own property would show in JSON.stringify, spread and structuredClone, which
   * give `{}` for a Headers.
   */
  #listed: HeaderPairs | undefined;

  constructor(pairs: HeaderPairs) {
    super();
    this.#listed = pairs;
  }

  /** The list, while nothing has iterated these headers. */
  static unreadPairs(headers: Headers): HeaderPairs | undefined {
    return headers instanceof ListedHeaders ? headers.#listed : undefined;
  }

  // Each method checks its arguments are there before anything else: once filled, `super`
  // would otherwise get `undefined` for a missing one, and take it as the text "undefined".
  override get(name: string): string | null {
    required('get', arguments.length, 1);
    if (this.#listed === undefined) return super.get(name);
    return pairValue(this.#listed, checkedName('get', byteString(name)));
  }

  override has(name: string): boolean {
    required('has', arguments.length, 1);
    if (this.#listed === undefined) return super.has(name);
    return pairValue(this.#listed, checkedName('has', byteString(name))) !== null;
  }

  override getSetCookie(): string[] {
    if (this.#listed === undefined) return super.getSetCookie();
    const pairs = this.#listed;
    const cookies: string[] = [];
    for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === 'set-cookie') cookies.push(pairs[i + 1]);
    return cookies;
  }

  override set(name: string, value: string): void {
    required('set', arguments.length, 2);
    if (this.#listed === undefined) return super.set(name, value);
    // Both converted before either is checked, as Headers does (a toString may have effects).
    const nameText = byteString(name);
    const valueText = byteString(value);
    setPair(this.#listed, checkedName('set', nameText), checkedValue('set', valueText));
  }

  override append(name: string, value: string): void {
    required('append', arguments.length, 2);
    if (this.#listed === undefined) return super.append(name, value);
    const nameText = byteString(name);
    const valueText = byteString(value);
    const checked = checkedName('append', nameText);
    const text = checkedValue('append', valueText);
    // Joined, an empty value leaves ", " at the end, which only Headers' own append keeps.
    if (text === '' && checked !== 'set-cookie') {
      this.fill();
      return super.append(checked, text);
    }
    appendPair(this.#listed, checked, text);
  }

  override delete(name: string): void {
    required('delete', arguments.length, 1);
    if (this.#listed === undefined) return super.delete(name);
    removePairs(this.#listed, checkedName('delete', byteString(name)));
  }

  override keys(): HeadersIterator<string> {
    this.fill();
    return super.keys();
  }
  override values(): HeadersIterator<string> {
    this.fill();
    return super.values();
  }
  override entries(): HeadersIterator<[string, string]> {
    this.fill();
    return super.entries();
  }
  override [Symbol.iterator](): HeadersIterator<[string, string]> {
    this.fill();
    return super.entries();
  }
  override forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    this.fill();
    super.forEach(callback, thisArg);
  }

  [inspect.custom](_depth: number, options: object): string {
    this.fill();
    const shown = Object.fromEntries(super.entries());
    // As Headers shows them: every Set-Cookie, joined, not only the last one.
    if (super.has('set-cookie')) shown['set-cookie'] = super.get('set-cookie')!;
    return `ListedHeaders ${inspect(shown, options)}`;
  }

  /** Iterating sorts, as `Headers` does: from the first iteration on, `Headers` holds the headers. */
  private fill(): void {
    if (this.#listed === undefined) return;
    const pairs = this.#listed;
    this.#listed = undefined;
    for (let i = 0; i < pairs.length; i += 2) super.append(pairs[i], pairs[i + 1]);
  }
}

/** The TypeError `Headers` throws when an argument is missing. */
function required(method: string, given: number, count: number): void {
  if (given < count) throw new TypeError(`Headers.${method}: ${count} argument${count > 1 ? 's' : ''} required, but only ${given} present.`);
}

/**
 * An argument as text, as WebIDL's ByteString conversion makes it: a template literal, not
 * `String()`, so that a Symbol throws a TypeError instead of becoming "Symbol(…)".
 */
function byteString(value: unknown): string {
  const text = `${value as string}`;
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\xff]/.test(text)) throw new TypeError(`Headers: "${text}" is not a ByteString.`);
  return text;
}

/** The name, lowercased, or the TypeError `Headers` would throw. */
function checkedName(method: string, text: string): string {
  if (!TOKEN.test(text)) throw new TypeError(`Headers.${method}: "${text}" is an invalid header name.`);
  return text.toLowerCase();
}

/** The value without the whitespace `Headers` takes off its ends, or the TypeError it would throw. */
function checkedValue(method: string, text: string): string {
  const trimmed = isHttpSpace(text.charCodeAt(0)) || isHttpSpace(text.charCodeAt(text.length - 1)) ? text.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '') : text;
  if (/[\0\r\n]/.test(trimmed)) throw new TypeError(`Headers.${method}: "${trimmed}" is an invalid header value.`);
  return trimmed;
}

function isHttpSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}
