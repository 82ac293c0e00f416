/**
 * A newcomer clicking through the sample in a real browser (Debian's chromium, driven by
 * playwright-core): log in, open each mounted app, open the profiler page. Screenshots land in
 * test-results/screenshots/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { AppModule } from '../sample/001-embed/src/app.module.js';
import { startNest, type Started } from './fixtures/start.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));
const SHOTS = join(process.cwd(), 'test-results', 'screenshots');

describe('sample 001-embed in a browser', () => {
  let s: Started;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    if (!CHROMIUM) throw new Error('chromium is not installed (Debian: apt-get install chromium); .ci/run installs it');
    mkdirSync(SHOTS, { recursive: true });
    s = await startNest({ imports: [AppModule] });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    page = await browser.newPage();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await s?.close();
  });

  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  it('logs in through the Nest login page', async () => {
    await page.goto(`${s.url}/`);
    await shot('01-home-anonymous');
    await page.click('text=Log in');
    await page.fill('input[name=username]', 'demo');
    await page.fill('input[name=password]', 'demo');
    await page.click('button[type=submit]');
    await page.waitForSelector('#user');
    expect(await page.textContent('#user')).toBe('demo');
    await shot('02-home-signed-in');
  });

  it.each([
    ['express', '/express/', '#greeting', 'demo'],
    ['hono', '/hono/', '#greeting', 'demo'],
    ['private', '/private/', '#greeting', 'demo'],
    ['legacy-python', '/legacy/', '#remote-user', 'demo'],
  ])('opens the %s app, which greets the signed-in user', async (name, path, selector, text) => {
    await page.goto(`${s.url}${path}`);
    expect(await page.textContent(selector)).toBe(text);
    await shot(`03-${name}`);
  });

  it('opens the wiki called through callApp', async () => {
    await page.goto(`${s.url}/wikis/team/Start`);
    expect(await page.textContent('body')).toContain('/var/wikis/team');
    await shot('04-wiki');
  });

  it('opens the profiler page with what the visits above cost', async () => {
    for (let i = 0; i < 3; i++) await page.goto(`${s.url}/private/`);
    await page.goto(`${s.url}/private/__profile__`);
    expect(await page.locator('table').count()).toBeGreaterThan(0);
    expect(await page.locator('table tbody tr').count()).toBeGreaterThan(0);
    expect(await page.textContent('body')).toMatch(/requests? profiled/i);
    await shot('05-profiler');
  });
});
