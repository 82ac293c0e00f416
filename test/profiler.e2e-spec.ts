import { UseGuards } from '@nestjs/common';
import { GatewayModule, MountGateway, RemoteUserGuard } from 'nest-gateway';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { profiler } from 'nest-gateway';
import { burnApp, heldCount, releaseHeld } from './fixtures/profiler/burn-app.js';
import { authenticate, basic } from './fixtures/login.js';
import { startNest, type Started } from './fixtures/start.js';

const BURN_FILE = fileURLToPath(new URL('./fixtures/profiler/burn-app.ts', import.meta.url));

@MountGateway('app', burnApp, { middleware: [profiler()] })
class Profiled {}

@MountGateway('warm', burnApp, { middleware: [profiler({ discardFirstRequest: true })] })
class WarmedUp {}

@MountGateway('private', burnApp, { middleware: [profiler()] })
@UseGuards(RemoteUserGuard)
class Private {}

@MountGateway('off', burnApp, { middleware: [profiler({ enabled: false })] })
class Disabled {}

@MountGateway('many', burnApp, { middleware: [profiler({ path: 'stats/' })] })
class Concurrent {}

const unescape = (text: string) =>
  text.replace(/&(amp|lt|gt|quot|#39);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]!);

interface Page {
  html: string;
  requests: number;
  sampledTime: number;
  runs: number;
  profiling: boolean;
  columns: Array<{ key: string; type: string }>;
  /** Cells by column key, as data-value strings. */
  rows: Array<Record<string, string>>;
}

function parsePage(html: string): Page {
  const summary = /<dl id="summary" data-requests="(\d+)" data-sampled-time="([\d.e+-]+)" data-runs="(\d+)" data-profiling="(true|false)"/.exec(html);
  if (!summary) throw new Error(`no summary in page:\n${html.slice(0, 500)}`);
  const columns = [...html.matchAll(/<th data-key="(\w+)" data-type="(\w+)"/g)].map(([, key, type]) => ({ key, type }));
  const tbody = /<tbody>([\s\S]*)<\/tbody>/.exec(html)?.[1] ?? '';
  const rows = [...tbody.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map(([, tr]) => {
    const values = [...tr.matchAll(/<td data-value="([^"]*)"/g)].map(([, v]) => unescape(v));
    return Object.fromEntries(columns.map((c, i) => [c.key, values[i]]));
  });
  return {
    html,
    requests: Number(summary[1]),
    sampledTime: Number(summary[2]),
    runs: Number(summary[3]),
    profiling: summary[4] === 'true',
    columns,
    rows,
  };
}

const isSorted = (values: number[], descending: boolean) =>
  values.every((v, i) => i === 0 || (descending ? values[i - 1] >= v : values[i - 1] <= v));

describe('profiler middleware', () => {
  let s: Started;
  const get = (path: string, init?: RequestInit) => fetch(`${s.url}${path}`, { redirect: 'manual', ...init });
  const page = async (path = '/app/__profile__', init?: RequestInit) => {
    const res = await get(path, init);
    expect(res.status).toBe(200);
    return parsePage(await res.text());
  };
  /** 'finish' may follow the client's receipt of the response by a moment. */
  const pageWhen = async (path: string, ready: (p: Page) => boolean, init?: RequestInit) => {
    const deadline = Date.now() + 2000;
    for (;;) {
      const p = await page(path, init);
      if (ready(p) || Date.now() > deadline) return p;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const clear = async (path = '/app/__profile__') => {
    const res = await get(`${path}/clear`, { method: 'POST' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(path);
  };

  beforeAll(async () => {
    // V8 does not see loops compiled on-stack before the current profiling window (see
    // profiler()'s doc); without this, burnCpu vanishes from later profiles at random.
    setFlagsFromString('--no-use-osr');
    s = await startNest(
      { imports: [GatewayModule.forRoot()], controllers: [Profiled, WarmedUp, Private, Disabled, Concurrent] },
      (app) => app.use(authenticate),
    );
  });
  afterAll(async () => {
    releaseHeld();
    await s.close();
    setFlagsFromString('--use-osr');
  });

  it('lists the CPU-burning function with its file, line and nonzero self time, and draws it', async () => {
    await clear();
    for (let i = 0; i < 3; i++) expect(await (await get('/app/burn')).text()).toBe('burnt');
    const res = await get('/app/__profile__');
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'.*script-src 'nonce-/);
    const p = await pageWhen('/app/__profile__', (x) => x.requests === 3);
    expect(p.requests).toBe(3);
    expect(p.sampledTime).toBeGreaterThan(0);
    const burn = p.rows.find((r) => r.name === 'burnCpu');
    expect(burn).toBeDefined();
    expect(Number(burn!.self)).toBeGreaterThan(0);
    expect(burn!.file).toBe(BURN_FILE);
    expect(Number(burn!.line)).toBeGreaterThan(0);
    // Starting V8's profiler takes a few ms of sampled time; that is left out of the report.
    expect(p.rows.filter((r) => r.file === 'node:inspector')).toEqual([]);
    expect(p.html).toMatch(/<div class="f"[^>]*title="burnCpu: [^"]*burn-app\.ts:\d+"[^>]*>burnCpu<\/div>/);
    expect(p.html).toContain('href="/app/__profile__/profile.cpuprofile"');
    expect(p.html).toContain('<form method="post" action="/app/__profile__/clear">');
    expect(p.html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/);
  });

  it('has sortable columns with data values, sorted by self time by default and by any column on request', async () => {
    const p = await page();
    expect(p.columns).toEqual([
      { key: 'self', type: 'number' },
      { key: 'selfPct', type: 'number' },
      { key: 'total', type: 'number' },
      { key: 'totalPct', type: 'number' },
      { key: 'name', type: 'string' },
      { key: 'file', type: 'string' },
      { key: 'line', type: 'number' },
    ]);
    expect(p.rows.length).toBeGreaterThan(1);
    expect(isSorted(p.rows.map((r) => Number(r.self)), true)).toBe(true);
    for (const row of p.rows) expect(Number(row.total)).toBeGreaterThanOrEqual(Number(row.self));

    const byTotal = await page('/app/__profile__?sort=total');
    expect(isSorted(byTotal.rows.map((r) => Number(r.total)), true)).toBe(true);
    expect(byTotal.html).toMatch(/<th data-key="total" data-type="number" aria-sort="descending"><a href="\?sort=total&amp;order=asc">/);
    const byName = await page('/app/__profile__?sort=name&order=asc');
    const names = byName.rows.map((r) => r.name);
    expect(names).toEqual([...names].sort((a, b) => a.localeCompare(b)));
    const byLine = await page('/app/__profile__?sort=line&order=asc');
    expect(isSorted(byLine.rows.map((r) => Number(r.line)), false)).toBe(true);
  });

  it('does not count recursive calls twice in total time', async () => {
    await clear();
    expect(await (await get('/app/recurse')).text()).toBe('recursed');
    const p = await pageWhen('/app/__profile__', (x) => x.requests === 1);
    const recurse = p.rows.find((r) => r.name === 'recurseBurn');
    expect(recurse).toBeDefined();
    expect(Number(recurse!.total)).toBeGreaterThan(0);
    expect(Number(recurse!.total)).toBeLessThanOrEqual(p.sampledTime);
    for (const row of p.rows) expect(Number(row.total)).toBeLessThanOrEqual(p.sampledTime + 1e-6);
  });

  it('downloads a valid .cpuprofile whose samples, deltas and hit counts agree', async () => {
    await clear();
    await get('/app/burn');
    const p = await pageWhen('/app/__profile__', (x) => x.requests === 1);
    const res = await get('/app/__profile__/profile.cpuprofile');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="[^"]+\.cpuprofile"$/);
    const profile = (await res.json()) as {
      nodes: Array<{ id: number; hitCount: number; children: number[]; callFrame: { functionName: string; url: string } }>;
      startTime: number;
      endTime: number;
      samples: number[];
      timeDeltas: number[];
    };
    expect(profile.nodes[0].callFrame.functionName).toBe('(root)');
    const ids = new Set(profile.nodes.map((n) => n.id));
    expect(ids.size).toBe(profile.nodes.length);
    for (const node of profile.nodes) for (const child of node.children) expect(ids.has(child)).toBe(true);
    const hits = profile.nodes.reduce((sum, n) => sum + n.hitCount, 0);
    expect(hits).toBeGreaterThan(0);
    expect(profile.samples.length).toBe(hits);
    expect(profile.timeDeltas.length).toBe(hits);
    for (const node of profile.nodes) expect(profile.samples.filter((id) => id === node.id).length).toBe(node.hitCount);
    expect(profile.timeDeltas.every((d) => Number.isInteger(d) && d >= 0)).toBe(true);
    const deltas = profile.timeDeltas.reduce((sum, d) => sum + d, 0);
    expect(profile.startTime + deltas).toBeLessThanOrEqual(profile.endTime);
    expect(Math.abs(profile.endTime - profile.startTime - p.sampledTime)).toBeLessThanOrEqual(hits);
    expect(profile.nodes.some((n) => n.callFrame.functionName === 'burnCpu' && n.hitCount > 0)).toBe(true);
  });

  it('Clear refuses what another origin posts: another site, a sibling subdomain, a foreign or null Origin', async () => {
    const post = (headers: Record<string, string>) => get('/app/__profile__/clear', { method: 'POST', headers });
    const host = new URL(s.url).host;
    for (const headers of <Record<string, string>[]>[
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'http://evil.example' },
      { origin: `http://sub.${host}` },
      { origin: 'null' },
    ]) {
      expect({ headers, status: (await post(headers)).status }).toEqual({ headers, status: 403 });
    }
    for (const headers of <Record<string, string>[]>[{ 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }, { origin: `http://${host}` }, {}]) {
      expect({ headers, status: (await post(headers)).status }).toEqual({ headers, status: 303 });
    }
  });

  it('Clear accepts its own origin when the Host names the default port or differs in case (a proxy\'s Host: $host:$server_port)', async () => {
    /** fetch() would not send a Host of our choosing. */
    const post = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${s.url}/app/__profile__/clear`, { method: 'POST', headers }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject).end();
      });
    for (const headers of <Record<string, string>[]>[
      { host: 'gateway.example:80', origin: 'http://gateway.example' },
      { host: 'gateway.example:443', origin: 'https://gateway.example' },
      { host: 'Gateway.Example', origin: 'http://gateway.example' },
    ]) {
      expect({ headers, status: await post(headers) }).toEqual({ headers, status: 303 });
    }
    for (const headers of <Record<string, string>[]>[
      { host: 'gateway.example:8080', origin: 'http://gateway.example' },
      { host: 'gateway.example:80', origin: 'https://gateway.example' },
    ]) {
      expect({ headers, status: await post(headers) }).toEqual({ headers, status: 403 });
    }
  });

  it('Clear resets the profile; requests to the page itself are not profiled', async () => {
    await get('/app/burn');
    expect((await pageWhen('/app/__profile__', (x) => x.requests > 0)).requests).toBeGreaterThan(0);
    expect((await get('/app/__profile__/clear')).status).toBe(405);
    await clear();
    for (let i = 0; i < 3; i++) await page();
    await get('/app/__profile__/profile.cpuprofile');
    const p = await page();
    expect([p.requests, p.runs, p.sampledTime, p.rows.length]).toEqual([0, 0, 0, 0]);
    await get('/app/burn');
    expect((await pageWhen('/app/__profile__', (x) => x.requests === 1)).requests).toBe(1);
    expect((await get('/app/__profile__', { method: 'POST' })).status).toBe(405);
    expect((await get('/app/__profile__/nothing')).status).toBe(404);
  });

  it('discardFirstRequest leaves the first request out', async () => {
    await get('/warm/burn');
    const first = await page('/warm/__profile__');
    expect([first.requests, first.runs]).toEqual([0, 0]);
    await get('/warm/burn');
    const second = await pageWhen('/warm/__profile__', (x) => x.requests === 1);
    expect([second.requests, second.runs]).toEqual([1, 1]);
    expect(second.rows.some((r) => r.name === 'burnCpu')).toBe(true);
  });

  it('the page is behind the mount class guards', async () => {
    expect((await get('/private/__profile__')).status).toBe(401);
    expect((await get('/private/__profile__/profile.cpuprofile')).status).toBe(401);
    expect((await get('/private/__profile__/clear', { method: 'POST' })).status).toBe(401);
    expect((await get('/private/burn')).status).toBe(401);
    const auth = { headers: { authorization: basic('alice') } };
    expect(await (await get('/private/burn', auth)).text()).toBe('burnt');
    const p = await pageWhen('/private/__profile__', (x) => x.requests === 1, auth);
    expect(p.requests).toBe(1);
  });

  it('enabled: false serves no page: the app answers that path itself', async () => {
    const res = await get('/off/__profile__');
    expect(await res.text()).toBe("the app's own /__profile__");
    expect(await (await get('/off/burn')).text()).toBe('burnt');
  });

  it('concurrent requests share one profiling run, which stops when the last one is done', async () => {
    await clear('/many/stats');
    const responses = Array.from({ length: 5 }, () => get('/many/hold').then((r) => r.text()));
    const deadline = Date.now() + 5000;
    while (heldCount() < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(heldCount()).toBe(5);

    const during = await page('/many/stats');
    expect([during.profiling, during.requests, during.runs]).toEqual([true, 0, 0]);
    releaseHeld(4);
    const most = await pageWhen('/many/stats', (x) => x.requests === 4);
    expect([most.profiling, most.requests, most.runs]).toEqual([true, 4, 0]);
    releaseHeld(1);
    expect(await Promise.all(responses)).toEqual(Array(5).fill('released'));
    const after = await pageWhen('/many/stats', (x) => x.requests === 5 && !x.profiling);
    expect([after.profiling, after.requests, after.runs]).toEqual([false, 5, 1]);
    expect(after.rows.some((r) => r.name === 'burnCpu')).toBe(true);
  });

  it('Clear during a request restarts the run; that request, begun before, is not counted', async () => {
    await clear('/many/stats');
    const response = get('/many/hold').then((r) => r.text());
    const deadline = Date.now() + 5000;
    while (heldCount() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await clear('/many/stats');
    expect((await page('/many/stats')).profiling).toBe(true);
    releaseHeld();
    expect(await response).toBe('released');
    const after = await pageWhen('/many/stats', (x) => !x.profiling);
    expect([after.profiling, after.requests, after.runs]).toEqual([false, 0, 1]);
  });

  it('logged no profiler trouble', () => {
    expect(s.logger.lines.filter((l) => l.level !== 'log')).toEqual([]);
  });
});
