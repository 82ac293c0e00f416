import { Injectable, Module } from '@nestjs/common';
import { GatewayModule, RemoteUserGuard, type MountDeclaration } from 'nest-gateway';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { authenticate, basic } from './fixtures/login.js';
import { startNest, type Started } from './fixtures/start.js';

const script = fileURLToPath(new URL('./fixtures/cgi/env.sh', import.meta.url));
const hello = (req: IncomingMessage & { baseUrl?: string }, res: ServerResponse) =>
  res.end(`hello ${req.headers['remote-user'] ?? 'anonymous'} at ${req.baseUrl}${req.url}`);

/** What a JSON configuration file would hold (plus one app object). */
const mounts: MountDeclaration[] = [
  { path: 'cgi', app: { kind: 'cgi', script, env: { FROM_CONFIG: 'yes' } }, remoteUser: 'configured' },
  { path: 'node', app: hello, headers: { set: { 'x-configured': '1' }, remove: ['x-powered-by'] } },
  { path: 'members', app: hello, guards: [RemoteUserGuard] },
];

describe('mounts from configuration', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [GatewayModule.forRoot({ mounts })] }, (app) => app.use(authenticate));
  });
  afterAll(() => s.close());

  it('a plain-data CGI mount works like a @MountGateway class: env, principal, prefix', async () => {
    const text = await (await fetch(`${s.url}/cgi/x?y=1`)).text();
    expect(text).toContain('FROM_CONFIG=yes');
    expect(text).toContain('REMOTE_USER=configured');
    expect(text).toContain('SCRIPT_NAME=/cgi');
    expect(text).toContain('PATH_INFO=/x');
  });

  it('header changes apply', async () => {
    const res = await fetch(`${s.url}/node/a`);
    expect(await res.text()).toBe('hello anonymous at /node/a');
    expect(res.headers.get('x-configured')).toBe('1');
    expect(res.headers.get('x-powered-by')).toBeNull();
  });

  it('guards apply', async () => {
    expect((await fetch(`${s.url}/members/`)).status).toBe(401);
    const res = await fetch(`${s.url}/members/`, { headers: { authorization: basic('alice') } });
    expect(await res.text()).toBe('hello alice at /members/');
  });
});

@Injectable()
class Settings {
  readonly greeting = 'from an async factory';
}
@Module({ providers: [Settings], exports: [Settings] })
class SettingsModule {}

describe('mounts with forRootAsync', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({
      imports: [
        GatewayModule.forRootAsync({
          imports: [SettingsModule],
          inject: [Settings],
          // Paths are known up front; the apps come from the factory.
          mounts: [{ path: 'late' }, { path: 'missing' }],
          useFactory: async (settings: Settings) => ({
            mounts: [{ path: '/late/', app: (_req: IncomingMessage, res: ServerResponse) => res.end(settings.greeting) }],
          }),
        }),
      ],
    });
  });
  afterAll(() => s.close());

  it('serves the app the factory supplied for a declared path', async () => {
    expect(await (await fetch(`${s.url}/late/x`)).text()).toBe('from an async factory');
  });

  it('a declared path without an app answers 500 and says why in the log', async () => {
    expect((await fetch(`${s.url}/missing/`)).status).toBe(500);
    expect(s.logger.lines.map((l) => l.message).join('\n')).toMatch(/No app is configured for the mount \/missing/);
  });
});
