/** cgiApp scripts under another user: the host runs as root, the script as nobody. */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgiApp, GatewayModule, MountGateway } from 'nest-gateway';
import { startNest, type Started } from './fixtures/start.js';

const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;

it('refuses a uid without a gid, which would leave scripts in the group of the Nest process (root)', () => {
  expect(() => cgiApp('/bin/true', { uid: NOBODY })).toThrow(/uid 65534 needs a gid/);
  expect(() => cgiApp('/bin/true', { uid: NOBODY, gid: NOBODY })).not.toThrow();
});

(asRoot ? describe : describe.skip)('scripts run as another user (uid/gid)', () => {
  let s: Started;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nest-gateway-isolation-'));
    chmodSync(dir, 0o755); // nobody must reach the scripts, not the secret
    const secret = join(dir, 'secret.txt');
    writeFileSync(secret, 'root only\n', { mode: 0o600 });
    const script = join(dir, 'read.sh');
    writeFileSync(
      script,
      `#!/bin/sh\ncontent=$(cat "$SECRET_FILE" 2>/dev/null) || exit 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\nuid %s read: %s\\n' "$(id -u)" "$content"\n`,
      { mode: 0o755 },
    );
    const whoami = join(dir, 'whoami.sh');
    writeFileSync(whoami, `#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s %s %s\\n' "$(id -u)" "$(id -g)" "$(id -G)"\n`, { mode: 0o755 });
    const env = { SECRET_FILE: secret };
    const mounts = [
      MountGateway('root', cgiApp(script, { env })),
      MountGateway('nobody', cgiApp(script, { env, uid: NOBODY, gid: NOBODY })),
      MountGateway('nobody-direct', cgiApp(script, { env, uid: NOBODY, gid: NOBODY, spawner: 'direct' })),
      MountGateway('whoami', cgiApp(whoami, { uid: NOBODY, gid: NOBODY })),
      MountGateway('whoami-direct', cgiApp(whoami, { uid: NOBODY, gid: NOBODY, spawner: 'direct' })),
    ].map((decorate, i) => {
      const target = { [`Mount${i}`]: class {} }[`Mount${i}`];
      decorate(target);
      return target;
    });
    s = await startNest({ imports: [GatewayModule.forRoot()], controllers: mounts });
  });

  afterAll(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('as root the script reads the root-only file', async () => {
    const res = await fetch(`${s.url}/root/`);
    expect(await res.text()).toBe('uid 0 read: root only\n');
  });

  it.each(['nobody', 'nobody-direct'])('as nobody (%s) it cannot, and the client gets a 502, not a success', async (path) => {
    const res = await fetch(`${s.url}/${path}/`);
    expect(res.status).toBe(502);
    expect(await res.text()).not.toContain('root only');
    expect(s.logger.errors().join('\n')).toMatch(/invalid CGI response: sent no output/);
  });

  it.each(['whoami', 'whoami-direct'])('runs with that uid and gid and no other groups (%s)', async (path) => {
    expect(await (await fetch(`${s.url}/${path}/`)).text()).toBe(`${NOBODY} ${NOBODY} ${NOBODY}\n`);
  });
});
