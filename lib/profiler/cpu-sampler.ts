import { Logger } from '@nestjs/common';
import type { Session } from 'node:inspector';
import { type CpuProfile, type MergedProfile, emptyMergedProfile, mergeProfile } from './profile-merge.js';

const logger = new Logger('Gateway');

// Profiler.start is still busy when sampling begins: inspector time, not the app's.
const inspectorFrame = (frame: { url: string }) => frame.url === 'node:inspector';

/**
 * Runs V8's CPU profiler (through an in-process inspector session) while at least one
 * wrapped request is in flight, and merges each stopped profile into one.
 */
export class CpuSampler {
  merged: MergedProfile = emptyMergedProfile();
  requests = 0;
  failure: string | undefined;
  private inFlight = 0;
  /** Bumped by `clear()`: profiles and requests begun before it are not counted. */
  private generation = 0;
  /** Generation of the running V8 profile, undefined while stopped. */
  private running: number | undefined;
  private session: Session | undefined;
  private work: Promise<void> = Promise.resolve();

  constructor(private readonly interval: number) {}

  get profiling(): boolean {
    return this.running !== undefined;
  }

  /** Counts a request in; `ready` resolves once the profiler runs (or could not start). */
  enter(): { ready: Promise<void>; leave(): void; readonly left: boolean } {
    const generation = this.generation;
    let left = false;
    this.inFlight++;
    const ready = this.reconcile();
    return {
      ready,
      get left() {
        return left;
      },
      leave: () => {
        if (left) return;
        left = true;
        this.inFlight--;
        if (generation === this.generation) this.requests++;
        void this.reconcile();
      },
    };
  }

  clear(): void {
    this.generation++;
    this.merged = emptyMergedProfile();
    this.requests = 0;
    void this.reconcile();
  }

  /** Serialised, so that a start and a stop never overlap. Never rejects. */
  private reconcile(): Promise<void> {
    this.work = this.work.then(() => this.step()).catch((error: unknown) => this.fail(error));
    return this.work;
  }

  private async step(): Promise<void> {
    if (this.running !== undefined && (this.inFlight === 0 || this.running !== this.generation)) {
      const generation = this.running;
      this.running = undefined;
      const session = this.session!;
      this.session = undefined;
      try {
        const { profile } = await post<{ profile: CpuProfile }>(session, 'Profiler.stop');
        if (generation === this.generation) mergeProfile(this.merged, profile, inspectorFrame);
      } finally {
        session.disconnect();
      }
    }
    if (this.running === undefined && this.inFlight > 0 && this.failure === undefined) {
      const { Session } = await import('node:inspector');
      const session = new Session();
      session.connect();
      try {
        await post(session, 'Profiler.enable');
        await post(session, 'Profiler.setSamplingInterval', { interval: this.interval });
        await post(session, 'Profiler.start');
      } catch (error) {
        session.disconnect();
        throw error;
      }
      this.session = session;
      this.running = this.generation;
    }
  }

  private fail(error: unknown): void {
    this.failure = error instanceof Error ? error.message : String(error);
    logger.warn(`CPU profiler stopped working, requests pass through unprofiled: ${this.failure}`);
  }
}

function post<T = unknown>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (error: Error | null, result?: unknown) => (error ? reject(error) : resolve(result as T)));
  });
}
