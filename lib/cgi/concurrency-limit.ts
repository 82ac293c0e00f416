import { ServiceUnavailableException } from '@nestjs/common';
import type { AbortWatch } from '../http/abort-watch.js';

interface Waiter {
  grant(): void;
}

/**
 * At most `max` holders at a time; others wait in a bounded FIFO queue. A full queue, a wait
 * longer than `maxWait` or an abort rejects. `acquire` resolves to an idempotent
 * release function.
 */
export class ConcurrencyLimit {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    private _max: number,
    readonly maxQueue: number,
    private readonly what: string,
  ) {}

  get max(): number {
    return this._max;
  }

  /** Changes how many may hold a slot at once; raising it lets waiters in. */
  resize(max: number): void {
    this._max = Math.max(1, max);
    while (this.active < this._max && this.queue.length > 0) this.queue[0].grant();
  }

  get pending(): number {
    return this.queue.length;
  }

  get running(): number {
    return this.active;
  }

  acquire(abort: AbortWatch, maxWait: number): Promise<() => void> {
    if (abort.aborted) return Promise.reject(abort.reason);
    if (this.active < this._max) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new ServiceUnavailableException(`${this.what} is busy: ${this.maxQueue} requests already wait`));
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let unwatch = (): void => undefined;
      const leave = () => {
        const index = this.queue.indexOf(waiter);
        if (index !== -1) this.queue.splice(index, 1);
        clearTimeout(timer);
        unwatch();
      };
      const waiter: Waiter = {
        grant: () => {
          leave();
          this.active++;
          resolve(this.releaser());
        },
      };
      this.queue.push(waiter);
      unwatch = abort.whenAborted((reason) => {
        leave();
        reject(reason);
      });
      if (maxWait > 0) {
        timer = setTimeout(() => {
          leave();
          reject(new ServiceUnavailableException(`${this.what} is busy: no slot within ${maxWait} ms`));
        }, maxWait);
      }
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      if (this.active < this._max) this.queue[0]?.grant();
    };
  }
}
