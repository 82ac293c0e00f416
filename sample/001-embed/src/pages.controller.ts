import { Body, Controller, Get, Header, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { checkPassword, closeSession, openSession, sessionId } from './auth.js';
import { gitAvailable } from './git.js';
import { PYTHON } from './legacy.js';

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const layout = (title: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

const userOf = (req: Request) => (req as Request & { user?: { username: string } }).user?.username;

/**
 * `next` when it is a path on this site, else `/`. Browsers read `//host` and `/\host` as
 * another site, and drop tabs and newlines from a URL (`/<tab>/host` is `//host` to them), so a
 * path with a second leading slash, a backslash or a control character does not pass.
 */
const localPathOrHome = (next: unknown) =>
  typeof next === 'string' && next.startsWith('/') && !next.startsWith('//') && !/[\\\x00-\x1f\x7f]/.test(next) ? next : '/';

@Controller()
export class PagesController {
  @Get()
  @Header('content-type', 'text/html; charset=utf-8')
  home(@Req() req: Request) {
    const user = userOf(req);
    const host = escapeHtml(req.headers.host ?? 'localhost:3000');
    return layout(
      'nest-gateway sample',
      `<h1>nest-gateway: apps inside a Nest app</h1>
<p>${user ? `Signed in as <b id="user">${user}</b>. <a href="/logout">Log out</a>` : '<a href="/login">Log in</a> (demo / demo)'}</p>
<ul>
  <li><a href="/express/">An Express app mounted at /express</a></li>
  <li><a href="/hono/">A Hono app mounted at /hono</a></li>
  <li><a href="/private/">A members-only app</a>: it trusts the user name the Nest app hands it (single sign-on)</li>
  <li><a href="/wikis/team/">A legacy wiki called through callApp</a> (its login and logout go to ours)</li>
  <li>${
    PYTHON
      ? '<a href="/legacy/">A legacy Python app through CGI</a>, behind the login: it sees you as REMOTE_USER'
      : 'A legacy Python app through CGI: <i>skipped, this machine has no python3</i>'
  }</li>
  <li>${
    gitAvailable
      ? `Git over HTTP through git-http-backend: <code>git clone http://${host}/git/hello.git</code>
      (pushes need a login: <code>git push http://demo:demo@${host}/git/hello.git</code>)`
      : 'Git over HTTP: <i>skipped, git-http-backend is not installed</i>'
  }</li>
  <li><a href="/status/">A status page from a shell script</a>, mounted from <code>mounts.json</code> (no class written for it)</li>
  <li><a href="/private/__profile__">The profiler page</a> of the members-only app (profiled requests, functions, flame graph)</li>
</ul>`,
    );
  }

  @Get('login')
  @Header('content-type', 'text/html; charset=utf-8')
  login(@Query('next') next = '/', @Query('failed') failed?: string) {
    return layout(
      'Log in',
      `<h1>The Nest app’s login page</h1>${failed ? '<p>Wrong user name or password.</p>' : ''}
<form method="post" action="/login?next=${encodeURIComponent(next)}">
  <label>User <input name="username" value="demo"></label>
  <label>Password <input name="password" type="password"></label>
  <button type="submit">Log in</button>
</form>`,
    );
  }

  @Post('login')
  submit(@Body() body: { username?: string; password?: string }, @Query('next') next: unknown, @Res() res: Response) {
    const target = localPathOrHome(next);
    if (!checkPassword(body.username ?? '', body.password ?? '')) {
      return res.redirect(`/login?failed=1&next=${encodeURIComponent(target)}`);
    }
    res.cookie('sid', openSession(body.username!), { httpOnly: true, sameSite: 'lax', path: '/' });
    return res.redirect(target);
  }

  @Get('logout')
  logout(@Req() req: Request, @Res() res: Response) {
    closeSession(sessionId(req));
    res.clearCookie('sid', { path: '/' });
    return res.redirect('/');
  }
}
