/** The name of the wildcard in every mount route; it is how mount routes are recognised. */
export const MOUNT_WILDCARD = 'gatewayPathInfo';

/**
 * Compiles the prefix of a mount route pattern (`/api/v1/tracs/:id/*gatewayPathInfo`) into a
 * test for raw request paths: the prefix segments, then a `/` or the end.
 */
export function compileMountPrefix(pattern: string): RegExp {
  const segments = pattern.split('/');
  const wildcard = segments.findIndex((segment) => segment.includes(`*${MOUNT_WILDCARD}`));
  const prefix = segments.slice(0, wildcard === -1 ? undefined : wildcard);
  const source = prefix
    .map((segment) =>
      segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}(?:/|$)`, 'i');
}

export function isMountPattern(pattern: unknown): pattern is string {
  return typeof pattern === 'string' && pattern.includes(`*${MOUNT_WILDCARD}`);
}
