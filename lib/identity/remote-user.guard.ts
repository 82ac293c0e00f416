import {
  type CanActivate,
  type ExecutionContext,
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  UnauthorizedException,
} from '@nestjs/common';
import { GATEWAY_MODULE_OPTIONS } from '../gateway.module-definition.js';
import type { GatewayModuleOptions } from '../interfaces/gateway-options.interface.js';
import { splitUrl } from '../http/path-info.js';
import { originalUrlOf, rawResponse } from '../platform/request-info.js';
import { acceptsHtml, loginUrlWithNext } from './login-redirect.js';
import { defaultRemoteUser, resolveRemoteUser } from './remote-user.js';

/** @default 'Basic realm="nest-gateway", charset="UTF-8"' */
export const DEFAULT_CHALLENGE = 'Basic realm="nest-gateway", charset="UTF-8"';

/**
 * Lets a request through only when a principal resolves (the module's `remoteUser`). Otherwise
 * it answers 401 with a `WWW-Authenticate` challenge, or redirects clients that accept HTML to
 * `loginUrl?next=<path and query>` when one is configured (`next` is always a local path).
 *
 * Subclass it and override the protected hooks to require a user only for some requests:
 *
 * @example
 * ```ts
 * @Injectable()
 * export class PushNeedsLogin extends RemoteUserGuard {
 *   protected override requiresUser(req: IncomingMessage) {
 *     return isGitPushRequest(req);
 *   }
 * }
 * ```
 */
@Injectable()
export class RemoteUserGuard implements CanActivate {
  constructor(@Inject(GATEWAY_MODULE_OPTIONS) protected readonly options: GatewayModuleOptions) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<unknown>();
    if (!(await this.requiresUser(req, context))) return true;
    if (this.getRemoteUser(req, context) !== undefined) return true;
    return this.rejectAnonymous(req, context);
  }

  /** Whether this request needs a user at all. Default: every request. */
  protected requiresUser(_req: unknown, _context: ExecutionContext): boolean | Promise<boolean> {
    return true;
  }

  /** The principal of the request. Default: the module's `remoteUser` resolver. */
  protected getRemoteUser(req: unknown, _context: ExecutionContext): string | undefined {
    return resolveRemoteUser(req, undefined, this.options.remoteUser ?? defaultRemoteUser);
  }

  /** The challenge sent with a 401, or false for none. Default: the module's `challenge`. */
  protected getChallenge(_req: unknown, _context: ExecutionContext): string | false {
    return this.options.challenge ?? DEFAULT_CHALLENGE;
  }

  /** The login page for browsers, or undefined to answer 401. Default: the module's `loginUrl`. */
  protected getLoginUrl(_req: unknown, _context: ExecutionContext): string | undefined {
    return this.options.loginUrl;
  }

  /** Answers an anonymous request: a redirect for browsers when a login page is set, else 401. */
  protected rejectAnonymous(req: unknown, context: ExecutionContext): never {
    const res = rawResponse(context.switchToHttp().getResponse());
    const loginUrl = this.getLoginUrl(req, context);
    if (loginUrl && acceptsHtml(req)) {
      res.setHeader('location', loginUrlWithNext(loginUrl, req));
      throw new HttpException({ statusCode: HttpStatus.FOUND, message: 'Login required' }, HttpStatus.FOUND);
    }
    const challenge = this.getChallenge(req, context);
    if (challenge) res.setHeader('www-authenticate', challenge);
    throw new UnauthorizedException('Authentication required');
  }
}

/**
 * Whether a request is part of a `git push` over smart HTTP: the ref advertisement
 * (`GET …/info/refs?service=git-receive-pack`) or the push itself (`POST …/git-receive-pack`).
 * Decided as git-http-backend will see the request: on the decoded path (CGI decodes
 * PATH_INFO, so `git%2Dreceive-pack` is a push; a path that does not decode counts as one),
 * and on every `service` value (git takes the last, other readers the first).
 */
export function isGitPushRequest(req: unknown): boolean {
  const { path, search } = splitUrl(originalUrlOf(req));
  const decoded = decodedOrNull(path);
  if (decoded === null || decoded.endsWith('/git-receive-pack')) return true;
  return new URLSearchParams(search).getAll('service').includes('git-receive-pack');
}

function decodedOrNull(path: string): string | null {
  try {
    return decodeURIComponent(path);
  } catch {
    return null;
  }
}
