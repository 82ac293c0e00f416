/** `nest-gateway serve`, run as users run it: the built command in a process of its own. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { buildPackage } from './fixtures/built-package.js';
import { within } from './fixtures/waiting.js';

const ROOT = process.cwd();
const BIN = join(ROOT, 'dist', 'cli', 'main.js');
const fixture = (name: string) => join(ROOT, 'test', 'fixtures', 'cli', name);

function run(args: string[]): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return Object.assign(child, { output: () => output });
}

async function started(child: ReturnType<typeof run>): Promise<string> {
  await within(
    new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', () => /http:\/\/\S+/.test(child.output()) && resolve());
      child.once('exit', () => reject(new Error(`exited early: ${child.output()}`)));
    }),
    20_000,
    'the server to print its URL',
  );
  return /(http:\/\/\S+)/.exec(child.output())![1];
}

async function stop(child: ChildProcess): Promise<number | null> {
  child.kill('SIGINT');
  const [code] = (await within(once(child, 'exit'), 10_000, 'a clean stop')) as [number | null];
  return code;
}

describe('nest-gateway serve', () => {
  beforeAll(() => {
    buildPackage();
  }, 120_000);

  it.each([
    ['listener.mjs', 'Node listener', '/x', 'node listener saw /x under /app'],
    ['fetch.mjs', 'fetch handler', '/x', 'fetch handler saw /x'],
    ['module.mjs', 'Nest module', '/hello', 'nest module says hello'],
    ['dynamic-module.mjs', 'Nest module', '/hello', 'dynamic module says hello'],
    ['dynamic-named.mjs', 'Nest module', '/hello', 'named dynamic module says hello'],
    ['script.sh', 'CGI script', '/x', 'CGI script at /app/x'],
    ['commonjs/app.module.js', 'Nest module', '/hello', 'CommonJS nest module says hello'],
    ['listener.cjs', 'Node listener', '/x', 'CommonJS listener saw /x'],
    ['empty-module.mjs', 'Nest module', '/x', 'configure() middleware saw /app/x'],
  ])('serves %s (%s) under a prefix, prints its URL, stops on Ctrl-C', async (file, kind, path, expected) => {
    const child = run(['serve', fixture(file), '--port', '0', '--prefix', '/app']);
    const url = await started(child);
    expect(child.output()).toContain(kind);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/app\/$/);
    const res = await fetch(`${url.replace(/\/$/, '')}${path}`);
    expect(await res.text()).toContain(expected);
    expect(await stop(child)).toBe(0);
  }, 30_000);

  it.each(['SIGINT', 'SIGTERM'] as const)('%s stops it promptly while an SSE client is connected, running the shutdown hooks', async (signal) => {
    const child = run(['serve', fixture('sse-module.mjs'), '--port', '0']);
    const url = await started(child);
    const events = await fetch(`${url}events`);
    const reader = events.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    child.kill(signal);
    const [code] = (await within(once(child, 'exit'), 5_000, 'the command to stop')) as [number | null];
    expect(code).toBe(0);
    expect(child.output()).toContain('sse module shut down');
    await reader.cancel().catch(() => undefined);
  }, 30_000);

  it('a second Ctrl-C exits at once when the shutdown hangs', async () => {
    const child = run(['serve', fixture('stuck-shutdown.mjs'), '--port', '0']);
    const url = await started(child);
    expect(await (await fetch(`${url}hello`)).text()).toBe('stuck module says hello');
    child.kill('SIGINT');
    await within(
      new Promise<void>((resolve) => {
        const check = () => (child.output().includes('shutdown started') ? resolve() : setTimeout(check, 20));
        check();
      }),
      5_000,
      'the shutdown to start',
    );
    child.kill('SIGINT');
    const [code] = (await within(once(child, 'exit'), 2_000, 'the second Ctrl-C to end it')) as [number | null];
    expect(code).toBe(130);
  }, 30_000);

  it('--profile serves the profiler page', async () => {
    const child = run(['serve', fixture('listener.mjs'), '--port', '0', '--profile']);
    const url = await started(child);
    await fetch(`${url}x`);
    const page = await fetch(`${url}__profile__`);
    expect(await page.text()).toMatch(/CPU profile/);
    expect(await stop(child)).toBe(0);
  }, 30_000);

  it('--help documents every flag', () => {
    const out = execFileSync(process.execPath, [BIN, 'serve', '--help'], { encoding: 'utf8' });
    for (const flag of ['--port', '--host', '--prefix', '--profile', '--help']) expect(out).toContain(flag);
  });

  it('a port already in use: one line that says so, and a non-zero exit', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const child = run(['serve', fixture('listener.mjs'), '--port', String(port)]);
      const [code] = (await within(once(child, 'exit'), 20_000, 'the command to give up')) as [number];
      expect(code).toBe(1);
      expect(child.output()).toMatch(new RegExp(`port ${port} .*already in use`));
      expect(child.output().trim().split('\n')).toHaveLength(1);
    } finally {
      taken.close();
    }
  }, 30_000);

  it.each([
    [['serve'], /missing <target>/],
    [['serve', 'a', 'b'], /one target only/],
    [['serve', 'x.mjs', '--bogus'], /Unknown option '--bogus'/],
    [['serve', 'x.mjs', '--port', 'abc'], /--port must be/],
    [['serve', 'x.mjs', '--port', ''], /--port must be a number from 0 to 65535, got ''/],
    [['serve', 'x.mjs', '--port', ' '], /--port must be/],
    [['serve', 'x.mjs', '--port', '70000'], /--port must be/],
    [['serve', 'x.mjs', '--port=-1'], /--port must be/],
    [['serve', 'x.mjs', '--port', '1e3'], /--port must be/],
    [['serve', 'x.mjs', '--port', '0x50'], /--port must be/],
    [['serve', 'x.mjs', '--prefix', '//evil'], /--prefix must be a path/],
    [['serve', '/nonexistent/app.mjs'], /no such file/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ])('bad arguments %j: a clear message and exit code 2', async (args, message) => {
    const child = run(args);
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(child.output()).toMatch(message);
  });
});
