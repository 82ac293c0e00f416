import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';

export interface CgiSpawnRequest {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** Whether the child gets a request body on stdin (else /dev/null). @default true */
  stdin?: boolean;
  /** Run as this user id (the host must be root). @default this process's */
  uid?: number;
  /** Run with this group id (and no supplementary groups). @default this process's */
  gid?: number;
  /**
   * Bytes of error output the caller will look at: a spawner may drop what comes after them
   * (still reading it, so that the script never blocks on a full pipe).
   * @default undefined (all of it)
   */
  stderrBytes?: number;
}

export interface CgiExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /**
   * True when no process of the group was left at the exit (it forked nothing that lives
   * on): the group then needs no stopping.
   * @default undefined (not known: the group is signalled when the request ends)
   */
  groupEmpty?: boolean;
}

/** A running CGI process, leader of its own process group. */
export interface CgiChild {
  readonly pid: number;
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the process itself has exited (children it forked may live on). */
  readonly exit: Promise<CgiExit>;
}

/** Starts CGI processes: on the main thread, or through spawn helpers (see `spawn-helper-pool.ts`). */
export interface CgiSpawner {
  spawn(request: CgiSpawnRequest): Promise<CgiChild>;
}

/** Spawns from this process. Simple, but each fork of a large process stalls the event loop. */
export const directSpawner: CgiSpawner = {
  async spawn({ file, args, env, cwd, uid, gid }) {
    const child = spawn(file, args, { env, cwd, uid, gid, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const exit = new Promise<CgiExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    await Promise.race([once(child, 'spawn'), once(child, 'error').then(([error]) => Promise.reject(error))]);
    return { pid: child.pid!, stdin: child.stdin!, stdout: child.stdout!, stderr: child.stderr!, exit };
  },
};

/**
 * Signals every process of a CGI request's group. Returns false when the group is gone
 * (ESRCH): nothing of the request is left running.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  // The group is usually gone already (ESRCH, once per request): an error without a stack
  // trace costs a fraction of one with it.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}
