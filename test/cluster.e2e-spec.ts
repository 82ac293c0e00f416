/** The sample under node:cluster with 2 workers: 1000 requests through mounted apps, 0 errors. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { buildPackage } from './fixtures/built-package.js';
import { within } from './fixtures/waiting.js';

const ROOT = process.cwd();

describe('sample under node:cluster', () => {
  let primary: ChildProcess;
  let url: string;

  beforeAll(async () => {
    buildPackage();
    execFileSync('npx', ['tsc', '-p', 'sample/tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
    primary = spawn(process.execPath, [join(ROOT, '.sample-dist/001-embed/src/cluster.js')], {
      cwd: ROOT,
      env: { ...process.env, WORKERS: '2', PORT: '0', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    primary.stdout!.on('data', (d) => (output += d));
    primary.stderr!.on('data', (d) => (output += d));
    await within(
      new Promise<void>((resolve, reject) => {
        primary.stdout!.on('data', () => /with 2 workers/.test(output) && resolve());
        primary.once('exit', () => reject(new Error(`exited: ${output}`)));
      }),
      60_000,
      'two workers listening',
    );
    url = /(http:\/\/\S+?)\/? with 2 workers/.exec(output)![1];
  }, 120_000);

  afterAll(async () => {
    if (primary.exitCode === null) {
      primary.kill('SIGTERM');
      await within(once(primary, 'exit'), 10_000, 'the cluster to stop');
    }
  });

  it('1000 requests through the mounted Express, Hono and CGI apps: 0 errors', async () => {
    // Anonymous: the sample hashes Basic passwords with scrypt on every request, on purpose slow.
    const paths = ['/express/hello?name=Ada', '/hono/hello/Ada', '/status/'];
    let errors = 0;
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        const path = paths[next++ % paths.length];
        try {
          const res = await fetch(`${url}${path}`);
          const body = await res.text();
          if (res.status !== 200 || body.length === 0) errors++;
        } catch {
          errors++;
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    expect(errors).toBe(0);
  }, 120_000);

  it('stops cleanly on SIGTERM', async () => {
    primary.kill('SIGTERM');
    const [code] = (await within(once(primary, 'exit'), 15_000, 'the cluster to stop')) as [number | null];
    expect(code).toBe(0);
  }, 20_000);
});
