/**
 * What users will do with cgiApp: real programs from Debian mounted behind a Nest app that has
 * its own login (test/fixtures/login.ts: Basic for command-line clients, a cookie for browsers).
 *
 *  - /git    git-http-backend; anonymous clone, pushes only for logged-in users (the guard
 *            requires a user for push requests only, and receive-pack needs REMOTE_USER);
 *            /git-unguarded is the same without the guard;
 *  - /hg     Mercurial's hgweb.cgi;
 *  - /legacy a one-file Django 3.2 project run through wsgiref's CGIHandler, behind
 *            RemoteUserGuard; RemoteUserMiddleware turns REMOTE_USER into the Django user;
 *  - /flask  a Flask app run the same way, without a guard;
 *  - /sites/:site/legacy the Django project again, under a parameterised mount.
 *
 * Every program, and every git/hg client the test runs, gets the suite's temporary directory in
 * its environment; the last test checks that no process carrying it is left.
 */
import { Injectable, UseGuards } from '@nestjs/common';
import { GatewayModule, MountGateway, RemoteUserGuard, cgiApp, isGitPushRequest } from 'nest-gateway';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm, writeFile, chmod } from 'node:fs/promises';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { send } from './fixtures/http-client.js';
import { LoginController, authenticate, basic } from './fixtures/login.js';
import { SYSTEM_PYTHON, tempDir } from './fixtures/peers.js';
import { startNest, type Started } from './fixtures/start.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'real-apps');
const GIT_HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';
const HGWEB_EXAMPLE = '/usr/share/doc/mercurial-common/examples/hgweb.cgi';
const SLOW = 60_000;

// ---------------------------------------------------------------------------------------------
// Running the clients
// ---------------------------------------------------------------------------------------------

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program in its own process group; the whole group is killed after `timeoutMs`. */
function run(command: string, args: string[], options: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${options.timeoutMs ?? 30_000} ms]`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, options.timeoutMs ?? 30_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed; its output is in the error otherwise. */
async function ok(command: string, args: string[], options: { cwd?: string; env: NodeJS.ProcessEnv }): Promise<string> {
  const ran = await run(command, args, options);
  if (ran.code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${ran.code}\n${ran.stderr}${ran.stdout}`);
  return ran.stdout.trim();
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------
// Suite state: one temporary directory, one Nest app
// ---------------------------------------------------------------------------------------------

let root: string;
let s: Started;
let port: string;
/** Environment of the git and hg clients (and of the local git commands that set up repos). */
let clientEnv: NodeJS.ProcessEnv;
let gitRoot: string;
let bare: string;
/** A repository whose git-http-backend takes pushes from anyone: only the guard keeps them out. */
let openBare: string;
let bigBare: string;
let bigFileHash: string;

@Injectable()
class PushNeedsLogin extends RemoteUserGuard {
  protected override requiresUser(req: unknown) {
    return isGitPushRequest(req);
  }
}

/** Mount classes are made once the temporary directory exists (their apps point into it). */
function mounts(paths: { gitRoot: string; hgweb: string; home: string; djangoDb: string }) {
  const git = cgiApp(GIT_HTTP_BACKEND, {
    env: {
      GIT_PROJECT_ROOT: paths.gitRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: paths.home,
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'safe.directory',
      GIT_CONFIG_VALUE_0: '*',
    },
    // git sends packs over 1 MiB chunked; git-http-backend reads them to their end.
    unsizedBody: 'stream',
    killGrace: 500,
  });
  const hg = cgiApp(paths.hgweb, { env: { HOME: paths.home, HGENCODING: 'utf-8' }, killGrace: 500 });
  const django = cgiApp(join(FIXTURES, 'django_app.py'), { env: { DJANGO_DB: paths.djangoDb, HOME: paths.home }, killGrace: 500 });
  const flask = cgiApp(join(FIXTURES, 'flask_app.py'), { env: { HOME: paths.home }, killGrace: 500 });

  @MountGateway('git', git)
  @UseGuards(PushNeedsLogin)
  class GitMount {}

  // No guard: git's own default (receive-pack only with REMOTE_USER) is all there is.
  @MountGateway('git-unguarded', git)
  class UnguardedGitMount {}

  @MountGateway('hg', hg)
  class HgMount {}

  @MountGateway('legacy', django)
  @UseGuards(RemoteUserGuard)
  class DjangoMount {}

  @MountGateway('flask', flask)
  class FlaskMount {}

  @MountGateway('sites/:site/legacy', django)
  @UseGuards(RemoteUserGuard)
  class SiteDjangoMount {}

  return [GitMount, UnguardedGitMount, HgMount, DjangoMount, FlaskMount, SiteDjangoMount];
}

/** A work tree with one commit of `files`, copied into `target` as a bare repository. */
async function bareRepoWith(files: Record<string, string | Buffer>, target: string): Promise<void> {
  const work = `${target}.work`;
  await mkdir(work, { recursive: true });
  await ok('git', ['init', '-q', '-b', 'main', work], { env: clientEnv });
  for (const [name, content] of Object.entries(files)) await writeFile(join(work, name), content);
  await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
  await ok('git', ['commit', '-q', '-m', 'first'], { cwd: work, env: clientEnv });
  await ok('git', ['clone', '-q', '--bare', work, target], { env: clientEnv });
  // Reflogs are off by default in bare repositories; they show who pushed.
  await ok('git', ['--git-dir', target, 'config', 'core.logAllRefUpdates', 'true'], { env: clientEnv });
  await rm(work, { recursive: true, force: true });
}

/**
 * A commit on top of `gitDir`'s main, as the body of a smart-HTTP push request (the update
 * command, then the pack), so that a test can send it to whatever URL it likes.
 */
async function pushRequestBody(gitDir: string, work: string): Promise<{ commit: string; body: Buffer }> {
  await ok('git', ['clone', '-q', gitDir, work], { env: clientEnv });
  await writeFile(join(work, 'pushed.txt'), 'should not land\n');
  await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
  await ok('git', ['commit', '-q', '-m', 'push'], { cwd: work, env: clientEnv });
  const old = await headOf(gitDir);
  const commit = await headOf(join(work, '.git'));
  const pack = execFileSync('git', ['pack-objects', '--stdout', '--revs', '-q'], { cwd: work, env: clientEnv, input: `${commit}\n^${old}\n` });
  const command = `${old} ${commit} refs/heads/main\0report-status\n`;
  const pktLine = (Buffer.byteLength(command) + 4).toString(16).padStart(4, '0') + command;
  return { commit, body: Buffer.concat([Buffer.from(`${pktLine}0000`, 'latin1'), pack]) };
}

const headOf = (gitDir: string) => ok('git', ['--git-dir', gitDir, 'rev-parse', 'refs/heads/main'], { env: clientEnv });

beforeAll(async () => {
  root = await tempDir('real-apps');
  const home = join(root, 'home');
  gitRoot = join(root, 'git');
  await mkdir(home);
  await mkdir(gitRoot);
  clientEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    LANG: 'C.UTF-8',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'Test',
    GIT_AUTHOR_EMAIL: 'test@example.com',
    GIT_COMMITTER_NAME: 'Test',
    GIT_COMMITTER_EMAIL: 'test@example.com',
    HGPLAIN: '1',
    HGRCPATH: '',
    HGENCODING: 'utf-8',
  };

  // git: a small repository to push to, and one with 4 MiB of random data to clone.
  bare = join(gitRoot, 'repo.git');
  await bareRepoWith({ 'README': 'hello from git\n' }, bare);
  openBare = join(gitRoot, 'open.git');
  await bareRepoWith({ 'README': 'open to pushes\n' }, openBare);
  await ok('git', ['--git-dir', openBare, 'config', 'http.receivepack', 'true'], { env: clientEnv });
  bigBare = join(gitRoot, 'big.git');
  const big = randomBytes(4 * 1024 * 1024);
  bigFileHash = sha256(big);
  await bareRepoWith({ 'random.bin': big }, bigBare);

  // Mercurial: a repository with one commit, served by a copy of Debian's example hgweb.cgi.
  const hgRepo = join(root, 'hgrepo');
  await ok('hg', ['init', hgRepo], { env: clientEnv });
  await writeFile(join(hgRepo, 'hello.txt'), 'hello from mercurial\n');
  await ok('hg', ['--cwd', hgRepo, '--config', 'ui.username=test', 'commit', '-A', '-m', 'first'], { env: clientEnv });
  const hgweb = join(root, 'hgweb', 'hgweb.cgi');
  await mkdir(dirname(hgweb));
  await copyFile(HGWEB_EXAMPLE, hgweb);
  const script = (await readFile(hgweb, 'utf8'))
    .replace(/^#!.*$/m, `#!${SYSTEM_PYTHON}`)
    .replace(/^config = .*$/m, `config = b${JSON.stringify(hgRepo)}`);
  await writeFile(hgweb, script);
  await chmod(hgweb, 0o755);

  // Django: its users live in a SQLite file, created once here.
  const djangoDb = join(root, 'django.sqlite3');
  await ok(SYSTEM_PYTHON, [join(FIXTURES, 'django_app.py'), 'migrate'], { env: { ...clientEnv, DJANGO_DB: djangoDb } });

  s = await startNest(
    {
      imports: [GatewayModule.forRoot({ loginUrl: '/login' })],
      controllers: [LoginController, ...mounts({ gitRoot, hgweb, home, djangoDb })],
    },
    (app) => app.use(authenticate),
  );
  port = new URL(s.url).port;
}, SLOW);

afterAll(async () => {
  await s?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// git-http-backend
// ---------------------------------------------------------------------------------------------

describe('git-http-backend at /git', () => {
  const gitUrl = (repo: string, credentials = '') => `http://${credentials}127.0.0.1:${port}/git/${repo}`;

  it('lets anyone clone', async () => {
    const dest = join(root, 'clone-anonymous');
    await ok('git', ['clone', '-q', gitUrl('repo.git'), dest], { env: clientEnv });
    expect(await readFile(join(dest, 'README'), 'utf8')).toBe('hello from git\n');
    expect(await headOf(join(dest, '.git'))).toBe(await headOf(bare));
  }, SLOW);

  it('streams a clone of a few MiB intact', async () => {
    const dest = join(root, 'clone-big');
    await ok('git', ['clone', '-q', gitUrl('big.git'), dest], { env: clientEnv });
    expect(sha256(await readFile(join(dest, 'random.bin')))).toBe(bigFileHash);
  }, SLOW);

  it('stops git-http-backend and its git children when a client gives up mid-clone', async () => {
    // Bigger than every buffer on the way (loopback TCP buffers grow to several MiB).
    const hugeBare = join(gitRoot, 'huge.git');
    await bareRepoWith({ 'random.bin': randomBytes(32 * 1024 * 1024) }, hugeBare);
    const want = await headOf(hugeBare);
    const pkt = (line: string) => (line.length + 4).toString(16).padStart(4, '0') + line;
    const body = `${pkt(`want ${want}\n`)}0000${pkt('done\n')}`;
    let running: string[] = [];
    const firstChunk = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request(`${s.url}/git/huge.git/git-upload-pack`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-length': Buffer.byteLength(body) },
      });
      req.once('error', reject);
      req.once('response', (res) => {
        res.once('data', (chunk: Buffer) => {
          // Stop reading: the pack no longer fits in the buffers on the way, so the
          // programs block writing; then hang up like an interrupted `git clone`.
          res.pause();
          setTimeout(async () => {
            running = await processesUsing(gitRoot);
            req.destroy();
            resolve(chunk);
          }, 300);
        });
      });
      req.end(body);
    });
    expect(firstChunk.length).toBeGreaterThan(0);
    // Blocked, not done: git-http-backend and the git processes it started still run.
    expect(running.some((p) => p.includes('git-http-backend'))).toBe(true);
    expect(running.length).toBeGreaterThan(1);
    expect(await noProcessesUsing(gitRoot)).toEqual([]);
  }, SLOW);

  it('challenges an anonymous push with Basic and leaves the repository unchanged', async () => {
    const advert = await request(s.url).get('/git/repo.git/info/refs?service=git-receive-pack');
    expect(advert.status).toBe(401);
    expect(advert.headers['www-authenticate']).toMatch(/^Basic realm=/);

    const before = await headOf(bare);
    const work = join(root, 'push-anonymous');
    await ok('git', ['clone', '-q', gitUrl('repo.git'), work], { env: clientEnv });
    await writeFile(join(work, 'anonymous.txt'), 'should not land\n');
    await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
    await ok('git', ['commit', '-q', '-m', 'anonymous'], { cwd: work, env: clientEnv });
    const push = await run('git', ['push', 'origin', 'main'], { cwd: work, env: clientEnv });
    expect(push.code).not.toBe(0);
    // git asks for a user name only after a 401 with a Basic challenge; prompts are off.
    expect(push.stderr).toMatch(/could not read Username|Authentication failed/);
    expect(await headOf(bare)).toBe(before);
  }, SLOW);

  it('keeps anonymous pushes out however the URL spells them, where git-http-backend would take them from anyone', async () => {
    for (const query of ['service=git-upload-pack&service=git-receive-pack', 'service=git%2Dreceive-pack']) {
      const advert = await send(`${s.url}/git/open.git/info/refs?${query}`);
      expect({ query, status: advert.status }).toEqual({ query, status: 401 });
      expect(advert.headers['www-authenticate']).toMatch(/^Basic realm=/);
      expect(advert.body.toString()).not.toContain('service=git-receive-pack');
    }
    const before = await headOf(openBare);
    const { body } = await pushRequestBody(openBare, join(root, 'push-spelled'));
    // git-http-backend gets PATH_INFO decoded: both are its receive-pack.
    for (const path of ['git%2Dreceive-pack', 'git-receive-pac%6B']) {
      const push = await send(`${s.url}/git/open.git/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-git-receive-pack-request' },
        body,
      });
      expect({ path, status: push.status }).toEqual({ path, status: 401 });
      expect(push.headers['www-authenticate']).toMatch(/^Basic realm=/);
    }
    expect(await headOf(openBare)).toBe(before);
  }, SLOW);

  it("passes on git's own 403 (a Status with no body) for an anonymous push with no guard in front", async () => {
    const advert = await send(`${s.url}/git-unguarded/repo.git/info/refs?service=git-receive-pack`);
    expect(advert.status).toBe(403);
    const before = await headOf(bare);
    const work = join(root, 'push-unguarded');
    await ok('git', ['clone', '-q', gitUrl('repo.git'), work], { env: clientEnv });
    await writeFile(join(work, 'unguarded.txt'), 'should not land\n');
    await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
    await ok('git', ['commit', '-q', '-m', 'unguarded'], { cwd: work, env: clientEnv });
    const url = `http://127.0.0.1:${port}/git-unguarded/repo.git`;
    const push = await run('git', ['push', url, 'main'], { cwd: work, env: clientEnv });
    expect(push.code).not.toBe(0);
    expect(push.stderr).toMatch(/returned error: 403/);
    expect(await headOf(bare)).toBe(before);
  }, SLOW);

  it('refuses a push with a wrong password', async () => {
    const before = await headOf(bare);
    const work = join(root, 'push-wrong');
    await ok('git', ['clone', '-q', gitUrl('repo.git'), work], { env: clientEnv });
    await writeFile(join(work, 'wrong.txt'), 'should not land\n');
    await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
    await ok('git', ['commit', '-q', '-m', 'wrong password'], { cwd: work, env: clientEnv });
    const push = await run('git', ['push', gitUrl('repo.git', 'alice:nope@'), 'main'], { cwd: work, env: clientEnv });
    expect(push.code).not.toBe(0);
    expect(push.stderr).toMatch(/Authentication failed/);
    expect(await headOf(bare)).toBe(before);
  }, SLOW);

  it('accepts a push from a logged-in user, and git-http-backend records who pushed', async () => {
    const work = join(root, 'push-alice');
    await ok('git', ['clone', '-q', gitUrl('repo.git'), work], { env: clientEnv });
    await writeFile(join(work, 'alice.txt'), 'pushed by alice\n');
    await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
    await ok('git', ['commit', '-q', '-m', 'from alice'], { cwd: work, env: clientEnv });
    const pushed = await headOf(join(work, '.git'));
    await ok('git', ['push', '-q', gitUrl('repo.git', 'alice:wonderland@'), 'main'], { cwd: work, env: clientEnv });
    expect(await headOf(bare)).toBe(pushed);
    // receive-pack runs only with REMOTE_USER set, and names the reflog entry after it.
    const reflog = await readFile(join(bare, 'logs', 'refs', 'heads', 'main'), 'utf8');
    expect(reflog.trim().split('\n').at(-1)).toMatch(new RegExp(`^\\S+ ${pushed} alice <alice@`));
  }, SLOW);

  it('accepts a push bigger than maxBufferedBody (a chunked request body, streamed)', async () => {
    const work = join(root, 'push-big');
    await ok('git', ['clone', '-q', gitUrl('repo.git'), work], { env: clientEnv });
    const data = randomBytes(12 * 1024 * 1024);
    await writeFile(join(work, 'upload.bin'), data);
    await ok('git', ['add', '.'], { cwd: work, env: clientEnv });
    await ok('git', ['commit', '-q', '-m', 'big upload'], { cwd: work, env: clientEnv });
    const pushed = await headOf(join(work, '.git'));
    // Above http.postBuffer (1 MiB) git sends the pack chunked, without Content-Length.
    await ok('git', ['push', '-q', gitUrl('repo.git', 'bob:builder@'), 'main'], { cwd: work, env: clientEnv });
    expect(await headOf(bare)).toBe(pushed);
    const size = await ok('git', ['--git-dir', bare, 'cat-file', '-s', `${pushed}:upload.bin`], { env: clientEnv });
    expect(Number(size)).toBe(data.length);
  }, SLOW);
});

// ---------------------------------------------------------------------------------------------
// Mercurial
// ---------------------------------------------------------------------------------------------

describe('hgweb.cgi at /hg', () => {
  it('serves hg clone', async () => {
    const dest = join(root, 'hg-clone');
    await ok('hg', ['clone', '-q', `http://127.0.0.1:${port}/hg/`, dest], { env: clientEnv });
    expect(await readFile(join(dest, 'hello.txt'), 'utf8')).toBe('hello from mercurial\n');
    const log = await ok('hg', ['--cwd', dest, 'log', '-T', '{desc}\n'], { env: clientEnv });
    expect(log).toBe('first');
  }, SLOW);

  it('serves the web interface under the mount', async () => {
    const res = await request(s.url).get('/hg/file/tip/hello.txt');
    expect(res.status).toBe(200);
    expect(res.text).toContain('hello from mercurial');
    expect(res.text).toContain('href="/hg/');
  }, SLOW);
});

// ---------------------------------------------------------------------------------------------
// Django
// ---------------------------------------------------------------------------------------------

describe('Django (CGIHandler) at /legacy behind the Nest login', () => {
  it('refuses anonymous command-line clients with a Basic challenge', async () => {
    const res = await request(s.url).get('/legacy/whoami/');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Basic/);
  }, SLOW);

  it('sees the logged-in user as the Django user, and builds its URLs under /legacy', async () => {
    const res = await request(s.url).get('/legacy/whoami/').set('authorization', basic('alice'));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      script_name: '/legacy',
      path_info: '/whoami/',
      path: '/legacy/whoami/',
      user: 'alice',
      authenticated: true,
      form_url: '/legacy/form/',
      absolute_form_url: `http://127.0.0.1:${port}/legacy/form/`,
    });
  }, SLOW);

  it('redirects to a named URL under /legacy', async () => {
    const res = await request(s.url).get('/legacy/go/').set('authorization', basic('bob'));
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/legacy/whoami/');
  }, SLOW);

  it('sends browsers through the Nest login page, then serves them by cookie', async () => {
    const anonymous = await request(s.url).get('/legacy/whoami/').set('accept', 'text/html');
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.location).toBe('/login?next=%2Flegacy%2Fwhoami%2F');
    const login = await request(s.url)
      .post(anonymous.headers.location)
      .type('form')
      .send({ username: 'bob', password: 'builder' });
    expect(login.status).toBe(302);
    expect(login.headers.location).toBe('/legacy/whoami/');
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0].split(';')[0];
    const page = await request(s.url).get('/legacy/whoami/').set('cookie', cookie);
    expect(page.status).toBe(200);
    expect(page.body).toMatchObject({ user: 'bob', authenticated: true, script_name: '/legacy' });
  }, SLOW);

  it('builds working URLs under a parameterised mount whose parameter the client percent-encoded', async () => {
    const res = await request(s.url).get('/sites/caf%C3%A9%20x/legacy/whoami/').set('authorization', basic('alice'));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ script_name: '/sites/café x/legacy', form_url: '/sites/caf%C3%A9%20x/legacy/form/' });
    const go = await request(s.url).get('/sites/caf%C3%A9%20x/legacy/go/').set('authorization', basic('bob'));
    expect(go.status).toBe(302);
    expect(go.headers.location).toBe('/sites/caf%C3%A9%20x/legacy/whoami/');
  }, SLOW);

  it('receives a POSTed form body', async () => {
    const res = await request(s.url)
      .post('/legacy/form/')
      .set('authorization', basic('alice'))
      .type('form')
      .send('tag=a&tag=b&name=J%C3%BCrgen&text=' + encodeURIComponent('x'.repeat(100_000)));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      method: 'POST',
      fields: { tag: ['a', 'b'], name: ['Jürgen'], text: ['x'.repeat(100_000)] },
      user: 'alice',
    });
  }, SLOW);
});

// ---------------------------------------------------------------------------------------------
// Flask
// ---------------------------------------------------------------------------------------------

describe('Flask (CGIHandler) at /flask', () => {
  it('builds url_for() URLs under /flask and sees no user when anonymous', async () => {
    const res = await request(s.url).get('/flask/hello/world');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      name: 'world',
      script_root: '/flask',
      path: '/hello/world',
      url: '/flask/hello/world',
      external_url: `http://127.0.0.1:${port}/flask/hello/world`,
      remote_user: null,
      auth_type: null,
    });
  }, SLOW);

  it('sees the logged-in user in REMOTE_USER', async () => {
    const res = await request(s.url).get('/flask/hello/me').set('authorization', basic('bob'));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ remote_user: 'bob', auth_type: 'Nest' });
  }, SLOW);

  it('redirects with url_for() under /flask', async () => {
    const res = await request(s.url).get('/flask/go');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/flask/hello/again');
  }, SLOW);
});

// ---------------------------------------------------------------------------------------------
// Nothing left behind
// ---------------------------------------------------------------------------------------------

/** Processes whose environment mentions the suite's temporary directory. */
async function processesUsing(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || pid === String(process.pid)) continue;
    try {
      const environ = await readFile(`/proc/${pid}/environ`, 'latin1');
      if (environ.includes(dir)) found.push(`${pid} ${(await readFile(`/proc/${pid}/cmdline`, 'latin1')).replace(/\0/g, ' ')}`);
    } catch {
      /* gone or not ours */
    }
  }
  return found;
}

/** Waits up to 3 s for every process using `dir` to end; the ones still running. */
async function noProcessesUsing(dir: string): Promise<string[]> {
  let left = await processesUsing(dir);
  for (let i = 0; i < 30 && left.length > 0; i++) {
    await sleep(100);
    left = await processesUsing(dir);
  }
  return left;
}

describe('afterwards', () => {
  it('leaves no script or client process running', async () => {
    expect(await noProcessesUsing(root)).toEqual([]);
  }, SLOW);
});
