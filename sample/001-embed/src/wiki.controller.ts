import { All, Controller, Inject, Param, Req } from '@nestjs/common';
import { GatewayResponse, GatewayService, PathInfo } from 'nest-gateway';
import { createWikiApp } from './wiki-app.js';

const wiki = createWikiApp();

/** The seed's Trac view: one route for many instances, our own login pages, our Server header. */
@Controller('wikis')
export class WikiController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  // ':instance' alone for /wikis/team itself: '*path' needs at least one character.
  @All([':instance', ':instance/*path'])
  async serve(@Req() req: unknown, @Param('instance') instance: string, @PathInfo() pathInfo: string) {
    if (pathInfo.startsWith('/login')) return redirect('/login');
    if (pathInfo.startsWith('/logout')) return redirect('/logout');
    const response = await this.gateway.callApp(wiki, req, pathInfo, {
      env: { 'wiki.env_path': `/var/wikis/${instance}` },
    });
    response.headers.set('server', 'nest-gateway');
    return response;
  }
}

function redirect(location: string): GatewayResponse {
  return new GatewayResponse({ status: 302, headers: { location } });
}
