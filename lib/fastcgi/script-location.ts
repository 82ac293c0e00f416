import { posix } from 'node:path';
import { decodePathInfo, decodeScriptName } from '../cgi/cgi-variables.js';

export interface ScriptLocation {
  scriptFilename: string;
  split?: { scriptName: string; pathInfo: string };
}

/**
 * Which script a FastCGI request runs. A fixed `scriptFilename` gets the whole path as
 * PATH_INFO. Under a document root the path names the script, as nginx's
 * `fastcgi_split_path_info` and `fastcgi_index` do: `/a/index.php/x` runs `<root>/a/index.php`
 * with PATH_INFO `/x`, and a path ending in `/` runs its `index`.
 */
export function locateScript(
  prefix: string,
  rawPathInfo: string,
  options: { scriptFilename?: string; documentRoot?: string; index: string; scriptExtensions: readonly string[] },
): ScriptLocation {
  if (options.scriptFilename !== undefined || options.documentRoot === undefined) {
    return { scriptFilename: options.scriptFilename ?? '' };
  }
  const path = decodePathInfo(rawPathInfo) || '/';
  const scriptName = decodeScriptName(prefix);
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    if (options.scriptExtensions.some((ext) => segments[i].endsWith(ext))) {
      const script = segments.slice(0, i + 1).join('/');
      return {
        scriptFilename: posix.join(options.documentRoot, script),
        split: { scriptName: scriptName + script, pathInfo: segments.slice(i + 1).length ? '/' + segments.slice(i + 1).join('/') : '' },
      };
    }
  }
  const script = path.endsWith('/') ? path + options.index : path;
  return { scriptFilename: posix.join(options.documentRoot, script), split: { scriptName: scriptName + script, pathInfo: '' } };
}
