import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A file of the sample that is not compiled (a script, the users file), found both when
 * running from the sources (tests) and from `.sample-dist` (npm start).
 */
export function sampleFile(relative: string): string {
  const candidates = [
    fileURLToPath(new URL(`../${relative}`, import.meta.url)),
    resolve(process.cwd(), 'sample/001-embed', relative),
  ];
  return candidates.find((path) => existsSync(path)) ?? candidates[0];
}
