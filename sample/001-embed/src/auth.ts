import type { NextFunction, Request, Response } from 'express';
import { randomUUID, scryptSync, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sampleFile } from './sample-files.js';

/** The demo account, printed at start; its password is stored hashed in users.json. */
export const DEMO_CREDENTIALS = { username: 'demo', password: 'demo' };

interface StoredUser {
  salt: string;
  scrypt: string;
}
const users = new Map(
  Object.entries((JSON.parse(readFileSync(sampleFile('users.json'), 'utf8')) as { users: Record<string, StoredUser> }).users),
);
const sessions = new Map<string, string>();

export function checkPassword(username: string, password: string): boolean {
  const user = users.get(username);
  if (!user) return false;
  const expected = Buffer.from(user.scrypt, 'hex');
  return timingSafeEqual(expected, scryptSync(password, user.salt, expected.length));
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
