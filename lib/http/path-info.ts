/** Thrown when a caller's pathInfo is not the tail of the request path. */
export class PathInfoError extends Error {
  constructor(pathInfo: string, path: string) {
    super(
      `pathInfo ${JSON.stringify(pathInfo)} must be '' or start with '/', and be a suffix of the request path ${JSON.stringify(path)} on a segment boundary`,
    );
    this.name = 'PathInfoError';
  }
}

export function splitUrl(url: string): { path: string; search: string } {
  const q = url.indexOf('?');
  return q === -1 ? { path: url, search: '' } : { path: url.slice(0, q), search: url.slice(q) };
}

/**
 * Splits a raw request path into the mount prefix (SCRIPT_NAME) and pathInfo, given the
 * pathInfo the caller wants the app to see. A trailing slash on the prefix moves to pathInfo.
 */
export function splitPrefix(path: string, pathInfo: string): { prefix: string; pathInfo: string } {
  if (pathInfo !== '' && !pathInfo.startsWith('/')) throw new PathInfoError(pathInfo, path);
  if (!path.endsWith(pathInfo)) throw new PathInfoError(pathInfo, path);
  let prefix = path.slice(0, path.length - pathInfo.length);
  if (pathInfo === '' && prefix.endsWith('/')) {
    prefix = prefix.slice(0, -1);
    pathInfo = '/';
  }
  if (prefix === '/') return { prefix: '', pathInfo: '/' + pathInfo.replace(/^\//, '') };
  return { prefix, pathInfo };
}

/**
 * The part of `path` that the route's trailing wildcard matched: `''` or `'/…'`, undecoded.
 * The prefix is as many raw segments as the pattern has before its wildcard, which holds
 * for `:params` in the prefix. A pattern without a wildcard leaves `''` (or `'/'` for a
 * trailing slash).
 */
export function pathInfoFromPattern(pattern: string | undefined, path: string): string {
  const prefixSegments = pattern === undefined ? segmentsBeforeWildcard(path) : cachedSegmentsBeforeWildcard(pattern);
  if (prefixSegments === 0) return '/' + path;
  // The slash that starts the first segment after the prefix, if the path has one.
  let slash = -1;
  for (let i = 0; i < prefixSegments; i++) {
    slash = path.indexOf('/', slash + 1);
    if (slash === -1) return '';
  }
  return path.slice(slash);
}

/** Route patterns are few and fixed; request paths are not, and are never cached. */
const patternPrefixes = new Map<string, number>();

function cachedSegmentsBeforeWildcard(pattern: string): number {
  let count = patternPrefixes.get(pattern);
  if (count === undefined) {
    count = segmentsBeforeWildcard(pattern);
    patternPrefixes.set(pattern, count);
  }
  return count;
}

/** How many `/`-separated segments (the empty one before a leading `/` included) precede the wildcard. */
function segmentsBeforeWildcard(pattern: string): number {
  const segments = pattern.split('/');
  let wildcard = segments.findIndex((segment) => segment.startsWith('*') || segment.startsWith('{*'));
  if (wildcard === -1) {
    wildcard = segments.length;
    while (wildcard > 1 && segments[wildcard - 1] === '') wildcard--;
  }
  return wildcard;
}
