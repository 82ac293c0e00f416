// Apache mod_cgid as the CGI reference of the benches: one private config, scripts under /c/.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

export const APACHE = ['/usr/sbin/apache2', '/usr/sbin/httpd'].find((p) => existsSync(p));
const MODULES = '/usr/lib/apache2/modules';

/**
 * A temporary ServerRoot serving copies of `scripts` at /c/<name> on 127.0.0.1:`port` (event
 * MPM, room for 600 connections). Returns undefined when Apache or mod_cgid is missing.
 * Start it with `APACHE -f <config> -DFOREGROUND`; remove `dir` afterwards.
 */
export function prepareApacheCgi(scripts, port) {
  if (!APACHE || !existsSync(join(MODULES, 'mod_cgid.so'))) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'bench-apache-'));
  const cgiDir = join(dir, 'cgi');
  mkdirSync(cgiDir);
  chmodSync(dir, 0o755);
  for (const script of scripts) {
    // Apache runs scripts as nobody: a copy it can reach.
    const copy = join(cgiDir, basename(script));
    copyFileSync(script, copy);
    chmodSync(copy, 0o755);
  }
  const config = join(dir, 'httpd.conf');
  writeFileSync(
    config,
    [
      `ServerRoot ${dir}`,
      `Listen 127.0.0.1:${port}`,
      `LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so`,
      `LoadModule cgid_module ${MODULES}/mod_cgid.so`,
      `LoadModule alias_module ${MODULES}/mod_alias.so`,
      `LoadModule authz_core_module ${MODULES}/mod_authz_core.so`,
      'User nobody',
      'Group nogroup',
      'ServerName localhost',
      'MaxRequestWorkers 600',
      'ServerLimit 24',
      'ThreadsPerChild 25',
      `PidFile ${dir}/httpd.pid`,
      `ErrorLog ${dir}/error.log`,
      `ScriptSock ${dir}/cgisock`,
      `ScriptAlias /c/ ${cgiDir}/`,
      `<Directory ${cgiDir}>`,
      '  Require all granted',
      '</Directory>',
      '',
    ].join('\n'),
  );
  return { dir, config };
}
