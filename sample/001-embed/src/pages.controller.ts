import { Controller, Get, Header } from '@nestjs/common';

const layout = (title: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

@Controller()
export class PagesController {
  @Get()
  @Header('content-type', 'text/html; charset=utf-8')
  home() {
    return layout(
      'nest-gateway sample',
      `<h1>nest-gateway: apps inside a Nest app</h1>
<ul>
  <li><a href="/express/">An Express app mounted at /express</a></li>
  <li><a href="/hono/">A Hono app mounted at /hono</a></li>
  <li><a href="/wikis/team/">A legacy wiki called through callApp</a> (its login and logout go to ours)</li>
</ul>`,
    );
  }

  @Get('login')
  @Header('content-type', 'text/html; charset=utf-8')
  login() {
    return layout('Log in', '<h1>The Nest app’s login page</h1><p><a href="/">Home</a></p>');
  }

  @Get('logout')
  @Header('content-type', 'text/html; charset=utf-8')
  logout() {
    return layout('Logged out', '<h1>The Nest app’s logout page</h1><p><a href="/">Home</a></p>');
  }
}
