/** A backend that can be skipped for a while after refusing connections. */
export interface Balanced {
  /** Until when (epoch ms) it is passed over, unless every other is too. */
  downUntil: number;
}

/**
 * Least load first, round robin among equals; a backend that recently refused connections
 * only gets requests when all others are excluded or down too. Shared by the FastCGI pool
 * and the upstream HTTP pools.
 */
export class LeastLoadedBalancer<T extends Balanced> {
  private next = 0;

  constructor(
    readonly items: readonly T[],
    private readonly load: (item: T) => number,
  ) {}

  pick(exclude?: ReadonlySet<T>): T | undefined {
    // One backend needs no scores (an upstream pool's load takes two walks over its clients).
    if (this.items.length === 1) return exclude?.has(this.items[0]) ? undefined : this.items[0];
    const now = Date.now();
    const start = this.next++ % this.items.length;
    let best: T | undefined;
    let bestScore = Infinity;
    for (let i = 0; i < this.items.length; i++) {
      const item = this.items[(start + i) % this.items.length];
      if (exclude?.has(item)) continue;
      const score = this.load(item) + (item.downUntil > now ? 1e9 : 0);
      if (score < bestScore) {
        best = item;
        bestScore = score;
      }
    }
    return best;
  }
}
