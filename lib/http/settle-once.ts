/** A promise's settle callbacks. */
export interface Settle<T> {
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/**
 * The callbacks of a promise, taken once; after that the taker gets undefined and holds them
 * no more. A settled promise's own callbacks keep it, and with it its value, reachable: a
 * response whose body must be collectable once its caller drops it, while the app or the
 * connection that settled it lives on.
 */
export function settleOnce<T>(resolve: (value: T) => void, reject: (reason: unknown) => void): () => Settle<T> | undefined {
  let settle: Settle<T> | undefined = { resolve, reject };
  return () => {
    const taken = settle;
    settle = undefined;
    return taken;
  };
}
