import request from 'supertest';
import { AppModule } from '../sample/001-embed/src/app.module.js';
import { startNest, type Started } from './fixtures/start.js';

describe('sample 001-embed', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startNest({ imports: [AppModule] });
  });
  afterAll(() => s.close());

  it('links to every embedded app from its home page', async () => {
    const home = await request(s.url).get('/');
    expect(home.text).toContain('/express/');
    expect(home.text).toContain('/hono/');
    expect(home.text).toContain('/wikis/team/');
  });

  it('serves the mounted Express and Hono apps', async () => {
    expect((await request(s.url).get('/express/')).text).toContain('Mounted at <code>/express</code>');
    expect((await request(s.url).get('/express/hello?name=Ada')).body).toEqual({ greeting: 'Hello, Ada!', from: 'express' });
    expect((await request(s.url).get('/hono/hello/Ada')).body).toEqual({ greeting: 'Hello, Ada!', from: 'hono' });
  });

  it('filters the wiki: per-instance environ, our Server header, our login and logout', async () => {
    const page = await request(s.url).get('/wikis/team/Start');
    expect(page.text).toContain('Instance: <code>/var/wikis/team</code>');
    expect(page.headers.server).toBe('nest-gateway');
    const login = await request(s.url).get('/wikis/team/login');
    expect(login.status).toBe(302);
    expect(login.headers.location).toBe('/login');
    expect((await request(s.url).get('/wikis/ops/logout')).headers.location).toBe('/logout');
  });
});
