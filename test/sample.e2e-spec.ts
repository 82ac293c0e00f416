import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { AppModule } from '../sample/001-embed/src/app.module.js';
import { startNest, type Started } from './fixtures/start.js';

describe('sample 001-embed', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [AppModule] });
  });
  afterAll(() => s.close());

  it('links to every embedded app from its home page', async () => {
    const home = await request(s.url).get('/');
    expect(home.text).toContain('/express/');
    expect(home.text).toContain('/hono/');
    expect(home.text).toContain('/wikis/team/');
  });

  it("serves the wiki's start page at the link the home page gives, with or without its slash", async () => {
    for (const path of ['/wikis/team/', '/wikis/team']) {
      const start = await request(s.url).get(path);
      expect(start.status).toBe(200);
      expect(start.text).toContain('Wiki page: Start');
      expect(start.text).toContain('Instance: <code>/var/wikis/team</code>');
    }
  });

  it('serves the mounted Express and Hono apps', async () => {
    expect((await request(s.url).get('/express/')).text).toContain('Mounted at <code>/express</code>');
    expect((await request(s.url).get('/express/hello?name=Ada')).body).toEqual({ greeting: 'Hello, Ada!', from: 'express' });
    expect((await request(s.url).get('/hono/hello/Ada')).body).toEqual({ greeting: 'Hello, Ada!', from: 'hono' });
  });

  it('filters the wiki: per-instance environ, our Server header, our login and logout', async () => {
    const page = await request(s.url).get('/wikis/team/Start');
    expect(page.text).toContain('Instance: <code>/var/wikis/team</code>');
    expect(page.headers.server).toBe('nest-gateway');
    const login = await request(s.url).get('/wikis/team/login');
    expect(login.status).toBe(302);
    expect(login.headers.location).toBe('/login');
    expect((await request(s.url).get('/wikis/ops/logout')).headers.location).toBe('/logout');
  });
});

describe('sample 001-embed single sign-on', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [AppModule] });
  });
  afterAll(() => s.close());

  it('sends browsers to log in, then every app greets the signed-in user', async () => {
    const anonymous = await request(s.url).get('/private/').set('accept', 'text/html');
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.location).toBe('/login?next=%2Fprivate%2F');
    const login = await request(s.url).post('/login?next=%2Fprivate%2F').type('form').send({ username: 'demo', password: 'demo' });
    expect(login.headers.location).toBe('/private/');
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0].split(';')[0];
    expect((await request(s.url).get('/private/').set('cookie', cookie)).text).toContain('Hello, <b id="greeting">demo</b>');
    expect((await request(s.url).get('/express/').set('cookie', cookie)).text).toContain('Hello, <b id="greeting">demo</b>');
    expect((await request(s.url).get('/hono/').set('cookie', cookie)).text).toContain('Hello, <b id="greeting">demo</b>');
  });

  it.each(['//evil.example/x', '/\\evil.example/x', '/\t/evil.example/x', 'https://evil.example/x'])(
    'sends a login whose next is not a path on this site (%j) home, never elsewhere',
    async (next) => {
      const login = await request(s.url)
        .post(`/login?next=${encodeURIComponent(next)}`)
        .type('form')
        .send({ username: 'demo', password: 'demo' });
      expect(login.status).toBe(302);
      expect(login.headers.location).toBe('/');
    },
  );

  it('challenges command-line clients with Basic and accepts the demo credentials', async () => {
    const anonymous = await request(s.url).get('/private/');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toMatch(/^Basic/);
    const ok = await request(s.url).get('/private/').auth('demo', 'demo');
    expect(ok.text).toContain('Hello, <b id="greeting">demo</b>');
  });

  it('never lets a forged header sign anyone in', async () => {
    const forged = await request(s.url).get('/express/').set('remote-user', 'admin').set('x-remote-user', 'admin');
    expect(forged.text).toContain('anonymous visitor');
  });
});

describe('sample 001-embed with real programs', () => {
  let s: Started;
  let work: string;
  const run = (cmd: string, args: string[], cwd: string) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(cmd, args, {
        cwd,
        env: { PATH: process.env.PATH, HOME: work, GIT_TERMINAL_PROMPT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      child.on('close', (code) => resolve({ code, output }));
    });

  beforeAll(async () => {
    // The demo repository lives where the sample keeps it (SAMPLE_REPOS, else the temp dir).
    work = mkdtempSync(join(tmpdir(), 'nest-gateway-sample-test-'));
    s = await startNest({ imports: [AppModule] });
  });
  afterAll(async () => {
    await s.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('serves the demo repository: clone for anyone, push only with a login', async () => {
    const clone = await run('git', ['clone', `${s.url}/git/hello.git`, 'hello'], work);
    expect(clone.code).toBe(0);
    expect(readFileSync(join(work, 'hello', 'README.md'), 'utf8')).toContain('git-http-backend');
    const repo = join(work, 'hello');
    writeFileSync(join(repo, 'NOTE.md'), `pushed through the sample at ${Date.now()}\n`);
    await run('git', ['add', 'NOTE.md'], repo);
    await run('git', ['-c', 'user.name=T', '-c', 'user.email=t@example.invalid', 'commit', '-m', 'note'], repo);
    const anonymous = await run('git', ['push', 'origin', 'main'], repo);
    expect(anonymous.code).not.toBe(0);
    const signedIn = await run('git', ['push', `${s.url.replace('://', '://demo:demo@')}/git/hello.git`, 'main'], repo);
    expect(signedIn.code).toBe(0);
  }, 60_000);

  it('puts the legacy Python app behind the login, where it sees REMOTE_USER and builds links from SCRIPT_NAME', async () => {
    const anonymous = await request(s.url).get('/legacy/').set('accept', 'text/html');
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.location).toBe('/login?next=%2Flegacy%2F');
    const page = await request(s.url).get('/legacy/').auth('demo', 'demo');
    expect(page.text).toContain('<b id="remote-user">demo</b>');
    expect(page.text).toContain('href="/legacy/"');
    const saved = await request(s.url).post('/legacy/').auth('demo', 'demo').type('form').send('note=hello');
    expect(saved.status).toBe(303);
    expect(saved.headers.location).toBe('/legacy/?saved=hello');
  });
});

describe('sample 001-embed mounts from its configuration file', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [AppModule] });
  });
  afterAll(() => s.close());

  it('serves the shell script that mounts.json declares, with its header changes', async () => {
    const res = await request(s.url).get('/status/').auth('demo', 'demo');
    expect(res.text).toContain('Mounted at /status (from mounts.json); you are demo.');
    expect(res.headers['cache-control']).toBe('no-store');
  });
});
