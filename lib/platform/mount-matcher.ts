/** The name of the wildcard in every mount route; it is how mount routes are recognised. */
export const MOUNT_WILDCARD = 'gatewayPathInfo';

/**
 * Compiles the prefix of a mount route pattern (`/api/v1/tracs/:id/*gatewayPathInfo`) into a
 * test for raw request paths: the prefix segments, then a `/` or the end.
 */
export function compileMountPrefix(pattern: string): RegExp {
  const source = prefixSegments(pattern)
    .map((segment) =>
      segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}(?:/|$)`, 'i');
}

export function isMountPattern(pattern: unknown): pattern is string {
  return typeof pattern === 'string' && pattern.includes(`*${MOUNT_WILDCARD}`);
}

/** The path a mount route pattern serves under, without its wildcard (`/api/v1/tracs/:id`). */
export function mountPathOf(pattern: string): string {
  return prefixSegments(pattern).join('/');
}

function prefixSegments(pattern: string): string[] {
  const segments = pattern.split('/');
  const wildcard = segments.findIndex((segment) => segment.includes(`*${MOUNT_WILDCARD}`));
  return segments.slice(0, wildcard === -1 ? undefined : wildcard);
}
