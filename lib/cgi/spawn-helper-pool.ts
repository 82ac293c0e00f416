import { Logger } from '@nestjs/common';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { BytesBody } from '../http/body-source.js';
import { directSpawner, signalGroup, type CgiChild, type CgiExit, type CgiSpawner, type CgiSpawnRequest } from './spawner.js';

const HELPER_SCRIPT = fileURLToPath(new URL('../../helpers/cgi-fork-server.py', import.meta.url));
const HEADER_BYTES = 12;

export interface SpawnHelperOptions {
  /**
   * Helper processes; requests are spread over them.
   * @default 2 to 4, by the number of CPUs
   */
  helpers?: number;
  /**
   * Python 3.8 or later, which runs the helper (3.9 or later to run scripts as another user: `uid`, `gid`).
   * @default '/usr/bin/python3' when it exists, else 'python3' on PATH
   */
  python?: string;
}

interface PendingSpawn {
  id: number;
  file: string;
  streams: string;
  sockets: Partial<Record<'i' | 'o', Socket>>;
  /** With streams "p": the script's output, whole from an O line or handed over by an H line. */
  output?: Readable;
  /** The script's error output, relayed by the helper in `L` lines; ended by `F`. */
  stderr: Readable;
  stderrEnded: boolean;
  helper: Helper;
  pid?: number;
  exited: boolean;
  settled: boolean;
  resolve(child: CgiChild): void;
  reject(error: Error): void;
  resolveExit(exit: CgiExit): void;
  exit: Promise<CgiExit>;
}

interface Helper {
  process: ChildProcess;
  inflight: Set<PendingSpawn>;
  dead: boolean;
  /** Requests of this tick, written together: each write wakes the helper up. */
  queued: Buffer[];
  /** Whether this process can open the helper's pipes through /proc (known once it is ready). */
  pipesOpen: boolean;
}

/**
 * Starts CGI processes through small Python helpers that vfork, so that the cost of starting
 * a process never stalls this event loop and does not grow with this process's heap. Each
 * child's stdin/stdout is a Unix socket connection the helper makes back to us; its stderr
 * comes relayed in the helper's replies (an accepted connection costs more than the lines).
 * Without a usable Python it falls back to spawning directly (and says so once).
 */
export class SpawnHelperPool implements CgiSpawner {
  private readonly logger = new Logger('Gateway');
  private readonly helperCount: number;
  private readonly python: string;
  private readonly pending = new Map<number, PendingSpawn>();
  private helpers: Helper[] = [];
  private started: Promise<boolean> | undefined;
  private server: Server | undefined;
  private dir: string | undefined;
  private sequence = 0;
  private turn = 0;
  private closed = false;

  constructor(options: SpawnHelperOptions = {}) {
    this.helperCount = options.helpers ?? Math.min(4, Math.max(2, availableParallelism()));
    this.python = options.python ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  }

  async spawn(request: CgiSpawnRequest): Promise<CgiChild> {
    if (this.closed) return directSpawner.spawn(request);
    this.started ??= this.start();
    if (!(await this.started) || this.closed) return directSpawner.spawn(request);
    const helper = this.nextHelper();
    const id = ++this.sequence;
    // A request with a body keeps the connection it is written to; without one, the output
    // comes back in the helper's replies when it is short, with no connection at all.
    const streams = request.stdin !== false ? 'io' : helper.pipesOpen ? 'p' : 'o';
    const frame = encodeRequest(id, streams, request);
    let resolveExit!: (exit: CgiExit) => void;
    const exit = new Promise<CgiExit>((resolve) => (resolveExit = resolve));
    return new Promise<CgiChild>((resolve, reject) => {
      const stderr = new Readable({ read: () => undefined });
      const spawn: PendingSpawn = { id, file: request.file, streams, sockets: {}, stderr, stderrEnded: false, helper, exited: false, settled: false, resolve, reject, resolveExit, exit };
      this.pending.set(id, spawn);
      this.track(helper, spawn);
      this.send(helper, frame);
    });
  }

  /** Stops the helpers (each takes its still-running process groups down) and removes the socket. */
  close(): void {
    this.closed = true;
    process.off('exit', this.onProcessExit);
    for (const helper of this.helpers) helper.process.stdin?.end();
    this.server?.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  private readonly onProcessExit = () => this.close();

  private async start(): Promise<boolean> {
    try {
      this.dir = mkdtempSync(join(tmpdir(), 'nest-gateway-cgi-')); // 0700: only we can connect
      const socketPath = join(this.dir, 'spawn.sock');
      const server = createServer((socket) => this.onConnection(socket));
      this.server = server;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject).once('close', () => reject(new Error('closed while starting')));
        server.listen(socketPath, resolve);
      });
      server.unref();
      if (this.closed) throw new Error('closed while starting');
      process.once('exit', this.onProcessExit);
      const helpers = Array.from({ length: this.helperCount }, () => this.startHelper(socketPath));
      this.helpers = helpers.map((h) => h.helper);
      await Promise.all(helpers.map((h) => h.ready));
      if (this.closed) throw new Error('closed while starting');
      return true;
    } catch (error) {
      if (!this.closed) {
        this.logger.warn(`CGI spawn helpers unavailable (${(error as Error).message}); spawning from this process instead`);
      }
      this.close();
      return false;
    }
  }

  private startHelper(socketPath: string): { helper: Helper; ready: Promise<void> } {
    // A session of its own: a Ctrl-C on the terminal is for the Node process, which then
    // closes the helpers' stdin; and no signal disposition of ours is inherited by scripts.
    const child = spawn(this.python, ['-I', '-u', HELPER_SCRIPT, socketPath], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const helper: Helper = { process: child, inflight: new Set(), dead: false, queued: [], pipesOpen: false };
    let onReady!: () => void;
    let onFail!: (error: Error) => void;
    const ready = new Promise<void>((resolve, reject) => ((onReady = resolve), (onFail = reject)));
    let errors = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      errors = (errors + text).slice(-2000);
      for (const line of text.split('\n')) if (line.trim()) this.logger.warn(`CGI spawn helper: ${line}`);
    });
    child.stdin!.on('error', () => undefined);
    let buffered = '';
    child.stdout!.setEncoding('latin1').on('data', (text: string) => {
      buffered += text;
      for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        if (line.startsWith('R ')) {
          helper.pipesOpen = canOpenPipe(child.pid!, Number(line.split(' ')[2]));
          this.send(helper, encodeFields(['C', '0']));
          if (helper.inflight.size === 0) (child.stdout as unknown as Socket).unref?.();
          onReady();
        }
        else this.onReply(helper, line);
      }
    });
    child.once('error', (error) => onFail(error));
    child.once('exit', (code, signal) => {
      helper.dead = true;
      onFail(new Error(`${this.python} exited with ${code ?? signal}${errors ? `: ${errors.trim()}` : ''}`));
      this.onHelperExit(helper, code, signal);
    });
    // Idle helpers must not keep the process alive: only their stdout is held, while awaited.
    child.unref();
    for (const stream of [child.stdin, child.stderr]) (stream as unknown as Socket).unref?.();
    return { helper, ready };
  }

  private send(helper: Helper, frame: Buffer): void {
    helper.queued.push(frame);
    if (helper.queued.length > 1) return;
    setImmediate(() => {
      const frames = helper.queued.splice(0);
      helper.process.stdin!.write(frames.length === 1 ? frames[0] : Buffer.concat(frames));
    });
  }

  private nextHelper(): Helper {
    const index = this.turn++ % this.helpers.length;
    let helper = this.helpers[index];
    if (helper.dead && !this.closed) {
      const replacement = this.startHelper(join(this.dir!, 'spawn.sock'));
      replacement.ready.catch(() => undefined);
      helper = this.helpers[index] = replacement.helper;
    }
    return helper;
  }

  private onReply(helper: Helper, line: string): void {
    const [op, id, first, second, ...rest] = line.split(' ');
    const spawn = this.pending.get(Number(id));
    if (op === 'H') return this.takeOver(helper, id, Number(first), second, spawn);
    if (!spawn) return;
    if (op === 'L') {
      spawn.stderr.push(Buffer.from(first, 'base64'));
    } else if (op === 'O') {
      spawn.output = new BytesBody(Buffer.from(first, 'base64'));
      this.maybeReady(spawn);
      this.maybeForget(spawn);
    } else if (op === 'F') {
      spawn.stderrEnded = true;
      spawn.stderr.push(null);
      this.maybeForget(spawn);
    } else if (op === 'P') {
      spawn.pid = Number(first);
      this.maybeReady(spawn);
    } else if (op === 'X') {
      spawn.exited = true;
      const code = Number(first);
      const signal = Number(second);
      spawn.resolveExit({ code: code >= 0 ? code : null, signal: signal ? signalName(signal) : null, groupEmpty: rest[0] === '1' });
      this.maybeForget(spawn);
    } else if (op === 'E') {
      const code = errnoCode(Number(first));
      const error = Object.assign(new Error(`spawn ${spawn.file} ${code}: ${[second, ...rest].join(' ')}`), { errno: -Number(first), code });
      this.fail(spawn, error);
    }
  }

  private onConnection(socket: Socket): void {
    socket.on('error', () => undefined);
    const onReadable = () => {
      const header = socket.read(HEADER_BYTES) as Buffer | null;
      if (header === null) return;
      socket.off('readable', onReadable);
      const spawn = this.pending.get(Number(header.toString('latin1', 0, HEADER_BYTES - 1)));
      const kind = String.fromCharCode(header[HEADER_BYTES - 1]) as 'i' | 'o';
      if (!spawn || !spawn.streams.includes(kind) || spawn.sockets[kind]) return void socket.destroy();
      spawn.sockets[kind] = socket;
      if (kind === 'i') socket.resume(); // its read side carries nothing; let its EOF close it
      this.maybeReady(spawn);
      this.maybeForget(spawn);
    };
    socket.on('readable', onReadable);
  }

  /**
   * Output handed over: the rest is in the helper's pipe, opened here through /proc (the
   * helper stopped reading it), after what the helper had read. The helper then closes its end.
   */
  private takeOver(helper: Helper, id: string, fd: number, readSoFar: string, spawn: PendingSpawn | undefined): void {
    try {
      if (!spawn) return;
      let pipe: Socket;
      try {
        pipe = new Socket({ fd: openHelperPipe(helper.process.pid!, fd), readable: true, writable: false });
      } catch (error) {
        if (spawn.pid !== undefined) signalGroup(spawn.pid, 'SIGKILL');
        // Most likely the helper died after handing the pipe over: say so, not "no such file".
        const reason = (error as Error).message;
        const message = `CGI spawn helper's output pipe could not be taken over (the helper may have died): ${reason}`;
        return this.fail(spawn, new Error(message, { cause: error }));
      }
      pipe.on('error', () => undefined);
      if (readSoFar) pipe.unshift(Buffer.from(readSoFar, 'base64'));
      spawn.output = pipe;
      this.maybeReady(spawn);
      this.maybeForget(spawn);
    } finally {
      this.send(helper, encodeFields(['C', id]));
    }
  }

  private connected(spawn: PendingSpawn): boolean {
    if (spawn.streams === 'p') return spawn.output !== undefined;
    return Object.keys(spawn.sockets).length === spawn.streams.length;
  }

  private maybeReady(spawn: PendingSpawn): void {
    if (spawn.settled || spawn.pid === undefined || !this.connected(spawn)) return;
    spawn.settled = true;
    spawn.resolve({
      pid: spawn.pid,
      stdin: spawn.sockets.i ?? nullSink(),
      stdout: spawn.sockets.o ?? spawn.output!,
      stderr: spawn.stderr,
      exit: spawn.exit,
    });
  }

  private maybeForget(spawn: PendingSpawn): void {
    if (spawn.exited && spawn.stderrEnded && this.connected(spawn)) this.untrack(spawn);
  }

  /** A helper with work in flight keeps the process alive (its replies are awaited); an idle one does not. */
  private track(helper: Helper, spawn: PendingSpawn): void {
    if (helper.inflight.size === 0) (helper.process.stdout as unknown as Socket).ref?.();
    helper.inflight.add(spawn);
  }

  private untrack(spawn: PendingSpawn): void {
    this.pending.delete(spawn.id);
    const helper = spawn.helper;
    if (helper.inflight.delete(spawn) && helper.inflight.size === 0) (helper.process.stdout as unknown as Socket).unref?.();
  }

  private fail(spawn: PendingSpawn, error: Error): void {
    this.untrack(spawn);
    for (const socket of Object.values(spawn.sockets)) socket?.destroy();
    spawn.output?.destroy();
    spawn.stderr.destroy();
    if (!spawn.settled) {
      spawn.settled = true;
      spawn.reject(error);
    }
    spawn.exited = true;
    spawn.resolveExit({ code: null, signal: null });
  }

  private onHelperExit(helper: Helper, code: number | null, signal: NodeJS.Signals | null): void {
    if (helper.inflight.size > 0) {
      this.logger.error(`CGI spawn helper exited (${code ?? signal}) with ${helper.inflight.size} scripts running; stopping them`);
    }
    for (const spawn of [...helper.inflight]) {
      if (spawn.pid !== undefined && !spawn.exited) {
        try {
          process.kill(-spawn.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      this.fail(spawn, new Error('CGI spawn helper died'));
    }
  }
}

/** One request for the helper: a length, then NUL-separated fields (see cgi-fork-server.py). */
function encodeRequest(id: number, streams: string, request: CgiSpawnRequest): Buffer {
  const fields = [
    'S',
    String(id),
    streams,
    request.file,
    request.cwd,
    request.uid === undefined ? '' : String(request.uid),
    request.gid === undefined ? '' : String(request.gid),
    byteCount(request.stderrBytes),
    String(request.args.length),
    ...request.args,
    ...Object.entries(request.env).map(([name, value]) => `${name}=${value}`),
  ];
  for (const field of fields) {
    if (field.includes('\0')) throw Object.assign(new Error(`spawn ${request.file} EINVAL: NUL byte in an argument or variable`), { code: 'EINVAL' });
  }
  return encodeFields(fields);
}

function encodeFields(fields: string[]): Buffer {
  const payload = Buffer.from(fields.join('\0'), 'utf8');
  const frame = Buffer.allocUnsafe(4 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, 4);
  return frame;
}

/** A byte limit as the helper reads it: a whole number, or empty for none (undefined, Infinity). */
function byteCount(limit: number | undefined): string {
  if (limit === undefined || !Number.isFinite(limit) || limit >= Number.MAX_SAFE_INTEGER) return '';
  return String(Math.max(0, Math.floor(limit)));
}

/** A new descriptor, of this process, for the read end of a pipe that the helper holds. */
function openHelperPipe(pid: number, fd: number): number {
  return openSync(`/proc/${pid}/fd/${fd}`, constants.O_RDONLY | constants.O_NONBLOCK);
}

/**
 * Whether a pipe of the helper can be opened through /proc/<pid>/fd (Linux with /proc, and
 * nothing that forbids reading another process's descriptors), tried on the one the helper
 * made for this when it started.
 */
function canOpenPipe(pid: number, fd: number): boolean {
  if (!Number.isInteger(fd)) return false;
  try {
    closeSync(openHelperPipe(pid, fd));
    return true;
  } catch {
    return false;
  }
}

function nullSink(): Writable {
  return new Writable({ write: (_chunk, _encoding, callback) => callback() });
}

const SIGNALS: Record<number, NodeJS.Signals> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 13: 'SIGPIPE', 15: 'SIGTERM' };
function signalName(signal: number): NodeJS.Signals {
  return SIGNALS[signal] ?? (`SIG${signal}` as NodeJS.Signals);
}

function errnoCode(errno: number): string {
  return ({ 2: 'ENOENT', 13: 'EACCES', 8: 'ENOEXEC', 20: 'ENOTDIR', 22: 'EINVAL' } as Record<number, string>)[errno] ?? 'ESPAWN';
}

let shared: SpawnHelperPool | undefined;

/** The helpers every `cgiApp` shares unless given a spawner of its own. */
export function sharedSpawnHelpers(): CgiSpawner {
  return (shared ??= new SpawnHelperPool());
}
