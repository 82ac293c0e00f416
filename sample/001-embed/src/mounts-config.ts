import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { MountDeclaration } from 'nest-gateway';
import { sampleFile } from './sample-files.js';

/** The mounts of mounts.json, with script paths made absolute (they are relative to the file). */
export function configuredMounts(): MountDeclaration[] {
  const file = sampleFile('mounts.json');
  const { mounts } = JSON.parse(readFileSync(file, 'utf8')) as { mounts: MountDeclaration[] };
  return mounts.map((mount) => {
    const app = mount.app as { kind?: string; script?: string } | undefined;
    if (app?.kind === 'cgi' && app.script) return { ...mount, app: { ...app, script: resolve(dirname(file), app.script) } } as MountDeclaration;
    return mount;
  });
}
