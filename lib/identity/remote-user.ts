/** Resolves the principal that the Nest app authenticated, from the platform's request. */
export type RemoteUserResolver = (req: any) => string | null | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any

/** @default 'remote-user' */
export const DEFAULT_IDENTITY_HEADER = 'remote-user';

/** Names under which apps commonly trust a user name; client-sent copies are always removed. */
export const DEFAULT_IDENTITY_ALIASES: readonly string[] = ['x-remote-user', 'x-forwarded-user', 'x-webauth-user'];

/** `req.user.username ?? req.user.id` for an object, `req.user` for a string. */
export const defaultRemoteUser: RemoteUserResolver = (req) => {
  const user = (req as { user?: unknown }).user;
  if (typeof user === 'string') return user;
  if (user && typeof user === 'object') {
    const { username, id } = user as { username?: unknown; id?: unknown };
    const name = username ?? id;
    return name === undefined || name === null ? undefined : String(name);
  }
  return undefined;
};

/** Thrown when a resolver returns a name that cannot travel in a header or environment variable. */
export class InvalidRemoteUserError extends Error {
  constructor() {
    super('The resolved remote user contains control characters, or starts or ends with a space, and cannot be passed on');
    this.name = 'InvalidRemoteUserError';
  }
}

/**
 * Runs a resolver; '' and non-strings count as anonymous. Control characters are refused, and
 * so are spaces or tabs at either end: a header drops them, and `' admin'` would reach an app
 * as `admin`.
 */
export function resolveRemoteUser(
  req: unknown,
  override: string | null | RemoteUserResolver | undefined,
  fallback: RemoteUserResolver,
): string | undefined {
  const value = override === undefined ? fallback(req) : typeof override === 'function' ? override(req) : override;
  if (typeof value !== 'string' || value === '') return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]|^[ \t]|[ \t]$/.test(value)) throw new InvalidRemoteUserError();
  return value;
}

/**
 * The principal as the identity header carries it: its UTF-8 bytes, one character per byte, as
 * Node gives a header's bytes and as any proxy in front would send them. An ASCII name is
 * itself; `env.REMOTE_USER` and CGI's `REMOTE_USER` carry the name as it is.
 */
export function remoteUserHeaderValue(name: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(name) ? name : Buffer.from(name, 'utf8').toString('latin1');
}
