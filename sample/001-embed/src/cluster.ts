import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AppModule } from './app.module.js';

/**
 * The sample under node:cluster: WORKERS processes (default: one per CPU) share one port.
 * Everything the gateway keeps is per process: FastCGI and upstream pools, CGI spawn helpers,
 * profiler data, and this sample's in-memory login sessions (use Basic, or a shared session
 * store, across workers).
 */
const workers = Number(process.env.WORKERS ?? availableParallelism());
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    if (++listening === workers) Logger.log(`Sample running at http://${host}:${address.port}/ with ${workers} workers`, 'Sample');
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
} else {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  await app.listen(port, host);
}
