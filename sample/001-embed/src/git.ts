import { Injectable, Logger, type OnModuleInit, UseGuards } from '@nestjs/common';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgiApp, isGitPushRequest, MountGateway, RemoteUserGuard } from 'nest-gateway';

export const GIT_BACKEND = '/usr/lib/git-core/git-http-backend';
export const gitAvailable = existsSync(GIT_BACKEND);
/** Where the sample keeps its repositories (outside the source tree). */
export const REPOS = process.env.SAMPLE_REPOS ?? join(tmpdir(), 'nest-gateway-sample', 'repos');

/** Clones for everyone, pushes only for signed-in users. */
@Injectable()
export class PushNeedsLogin extends RemoteUserGuard {
  protected override requiresUser(req: unknown) {
    return isGitPushRequest(req);
  }
}

@MountGateway(
  'git',
  cgiApp(GIT_BACKEND, {
    env: {
      GIT_PROJECT_ROOT: REPOS,
      GIT_HTTP_EXPORT_ALL: '1',
      // The repositories are the sample's own, whoever runs it.
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'safe.directory',
      GIT_CONFIG_VALUE_0: '*',
    },
    // Pushes over 1 MiB come chunked, of any size; git-http-backend reads them to their end.
    unsizedBody: 'stream',
  }),
)
@UseGuards(PushNeedsLogin)
export class GitMount {}

/** Creates the demo repository (one commit on main) on first start. */
@Injectable()
export class DemoRepository implements OnModuleInit {
  onModuleInit() {
    const bare = join(REPOS, 'hello.git');
    if (!gitAvailable || existsSync(bare)) return;
    mkdirSync(REPOS, { recursive: true });
    const git = (cwd: string, ...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=Sample', '-c', 'user.email=sample@example.invalid', ...args], { cwd, stdio: 'ignore' });
    git(REPOS, 'init', '--bare', '--initial-branch=main', bare);
    const work = mkdtempSync(join(tmpdir(), 'nest-gateway-sample-work-'));
    try {
      git(work, 'init', '--initial-branch=main');
      writeFileSync(join(work, 'README.md'), '# hello\n\nServed by git-http-backend inside a Nest app.\n');
      git(work, 'add', 'README.md');
      git(work, 'commit', '-m', 'First commit');
      git(work, 'push', bare, 'main');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    new Logger('Sample').log(`Created the demo repository ${bare}`);
  }
}
