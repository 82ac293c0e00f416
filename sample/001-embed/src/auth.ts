import type { NextFunction, Request, Response } from 'express';
import { randomUUID, scryptSync, timingSafeEqual } from 'node:crypto';

/** Demo users (passwords stored hashed, as a real app would). */
export const DEMO_CREDENTIALS = { username: 'demo', password: 'demo' };
const salt = 'nest-gateway-sample';
const users = new Map([[DEMO_CREDENTIALS.username, scryptSync(DEMO_CREDENTIALS.password, salt, 32)]]);
const sessions = new Map<string, string>();

export function checkPassword(username: string, password: string): boolean {
  const hash = users.get(username);
  return hash !== undefined && timingSafeEqual(hash, scryptSync(password, salt, 32));
}

export function openSession(username: string): string {
  const sid = randomUUID();
  sessions.set(sid, username);
  return sid;
}

export function closeSession(sid: string | undefined): void {
  if (sid) sessions.delete(sid);
}

export function sessionId(req: Request): string | undefined {
  return /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
}

/**
 * The Nest app's own authentication, set up before the gateway sees a request: a session
 * cookie for browsers, HTTP Basic for command-line clients. It sets `req.user`, which is
 * what nest-gateway passes on as REMOTE_USER by default.
 */
export function authenticate(req: Request, _res: Response, next: NextFunction) {
  const fromSession = sessions.get(sessionId(req) ?? '');
  if (fromSession) (req as Request & { user?: unknown }).user = { username: fromSession };
  const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (basic) {
    const [name, password] = Buffer.from(basic, 'base64').toString().split(':');
    if (checkPassword(name, password ?? '')) (req as Request & { user?: unknown }).user = { username: name };
  }
  next();
}
