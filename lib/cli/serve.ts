import 'reflect-metadata';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Server } from 'node:http';
import { parseArgs } from 'node:util';
import { MountGateway } from '../decorators/mount-gateway.decorator.js';
import { GatewayModule } from '../gateway.module.js';
import { profiler } from '../profiler/profiler.js';
import { validatePrefix } from '../embed/prefix-rewrite.js';
import { loadTarget, TargetError } from './load-target.js';

export const SERVE_HELP = `Usage: nest-gateway serve <target> [options]

Serves <target> through nest-gateway and prints its URL; Ctrl-C (or SIGTERM) stops it,
closing open connections; a second one exits at once.
<target> is a JavaScript module exporting a Node listener, a fetch handler (or a Hono app),
a Koa app or a Nest module, as a class or a DynamicModule such as AppModule.forRoot()
(default export, or 'app', 'handler', 'AppModule'; ESM or CommonJS), or any other file,
run as a CGI script (.php through php-cgi).

Options:
  -p, --port <n>      port to listen on (default 3000; 0 picks a free one)
  -H, --host <h>      address to listen on (default 127.0.0.1)
      --prefix <p>    serve under this path, e.g. /app (default: the root)
      --profile       profile requests; the page is at <prefix>/__profile__
  -h, --help          show this help
`;

export class UsageError extends Error {}

/** The server could not listen (port in use, no permission, no such address); said in one line. */
export class ListenError extends Error {}

export interface ServeOptions {
  target: string;
  port: number;
  host: string;
  prefix: string;
  profile: boolean;
}

/** Parses `serve` arguments; throws UsageError with a message meant for the user. */
export function parseServeArgs(argv: string[]): ServeOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        port: { type: 'string', short: 'p' },
        host: { type: 'string', short: 'H' },
        prefix: { type: 'string' },
        profile: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing <target>' : `one target only, got ${positionals.join(' ')}`);
  // Number() would take '', ' ', '1e3' and '0x50' as ports (the first two as 0: a random one).
  const port = values.port === undefined ? 3000 : /^\d{1,5}$/.test(values.port) ? Number(values.port) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`--port must be a number from 0 to 65535, got '${values.port}'`);
  let prefix: string;
  try {
    prefix = validatePrefix(values.prefix ?? '');
  } catch {
    throw new UsageError(`--prefix must be a path such as /app, got ${values.prefix}`);
  }
  return { target: positionals[0], port, host: values.host ?? '127.0.0.1', prefix, profile: values.profile ?? false };
}

/** A running `serve`: its URL, and how to stop it. */
export interface Serving {
  url: string;
  /** What is served where, for people. */
  description: string;
  app: INestApplication;
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<Serving> {
  const target = await loadTarget(options.target);
  class ServedApp {}
  MountGateway(options.prefix || '/', target.app, {
    name: options.target,
    middleware: options.profile ? [profiler()] : [],
  })(ServedApp);
  class ServeModule {}
  Module({ imports: [GatewayModule.forRoot()], controllers: [ServedApp] })(ServeModule);
  // Closing destroys open connections (an SSE stream, a WebSocket, a keep-alive client):
  // otherwise Ctrl-C would wait for them for ever.
  const app = await NestFactory.create(ServeModule, { logger: ['error', 'warn'], forceCloseConnections: true });
  await app.init();
  try {
    // Not app.listen(): it logs a failure as a Nest error with a stack before rejecting.
    await listen(app.getHttpServer() as Server, options.port, options.host);
  } catch (error) {
    await app.close();
    await target.close();
    throw listenError(error as NodeJS.ErrnoException, options);
  }
  const address = app.getHttpServer().address() as { port: number };
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `http://${host}:${address.port}${options.prefix}/`;
  return {
    url,
    description: `${target.kind} ${options.target} at ${url}${options.profile ? ` (profile: ${url}__profile__)` : ''}`,
    app,
    close: async () => {
      await app.close();
      await target.close();
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function listenError(error: NodeJS.ErrnoException, { port, host }: ServeOptions): Error {
  switch (error.code) {
    case 'EADDRINUSE':
      return new ListenError(`port ${port} on ${host} is already in use (pick another with --port, or 0 for a free one)`);
    case 'EACCES':
      return new ListenError(`no permission to listen on port ${port} on ${host}`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new ListenError(`cannot listen on ${host}: not an address of this machine`);
    default:
      return error;
  }
}

export { TargetError };
