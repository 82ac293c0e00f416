import type { GatewayApp } from '../apps/gateway-app.js';

/**
 * The apps declared with `@MountGateway`, by the controller path they were declared under.
 * Node decides whether a request is an upgrade while parsing its head, before Nest's router
 * runs: only the mount path is known then, not the controller serving it.
 */
const appsByDeclaredPath = new Map<string, Set<GatewayApp>>();

export function recordMountedApp(path: string, app: GatewayApp): void {
  const key = declaredPathKey(path);
  let apps = appsByDeclaredPath.get(key);
  if (!apps) appsByDeclaredPath.set(key, (apps = new Set()));
  apps.add(app);
}

/**
 * Whether a mount served under `mountPath` (its route's path: global prefix, version and
 * controller path) may take over an upgrade request. The route's path ends with the declared
 * path; when several declarations fit, or none is known, it may.
 */
export function mountMayUpgrade(mountPath: string): boolean {
  const segments = declaredPathKey(mountPath).split('/');
  let found = false;
  for (let start = 0; start <= segments.length; start++) {
    for (const app of appsByDeclaredPath.get(segments.slice(start).join('/')) ?? []) {
      found = true;
      if (app.kind === 'late' || app.upgrade) return true;
    }
  }
  return !found;
}

function declaredPathKey(path: string): string {
  return path.toLowerCase().split('/').filter(Boolean).join('/');
}
