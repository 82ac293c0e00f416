// The Node upstream of the proxy rows: hello text, or streams (see streamListener).
// With `--beside-nest` (row 7's context only) the same process first boots a Nest app that it
// never serves: what Nest's heap alone does to V8's garbage collection of socket buffers.
import { createServer } from 'node:http';
import { ready, streamListener } from './shared.mjs';

if (process.argv.includes('--beside-nest')) {
  await import('reflect-metadata');
  const [{ Module }, { NestFactory }] = await Promise.all([import('@nestjs/common'), import('@nestjs/core')]);
  class Unused {}
  Module({})(Unused);
  await (await NestFactory.create(Unused, { logger: ['error', 'warn'] })).init();
}
const server = createServer(streamListener);
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => ready(server.address().port, () => new Promise((r) => server.close(r))));
