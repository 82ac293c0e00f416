/**
 * WebSocket pass-through: upgrade requests reach mounted apps (a Node server with `ws`
 * attached, and an upstream through proxyApp) after Nest's middleware and guards decided.
 */
import { Controller, Get, UseGuards } from '@nestjs/common';
import express from 'express';
import { GatewayModule, MountGateway, nodeApp, proxyApp, RemoteUserGuard } from 'nest-gateway';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect as connectTcp, createServer as createTcpServer, type AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { authenticate, basic } from './fixtures/login.js';
import { startNest, type Started } from './fixtures/start.js';
import { waitFor, within } from './fixtures/waiting.js';

/** An app with its own WebSocket server: echoes messages, greets with what the upgrade request showed. */
function echoServer(): { server: Server; wss: WebSocketServer } {
  const app = express();
  app.get('/', (_req, res) => void res.send('plain http'));
  const server = createServer(app);
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req: IncomingMessage & { baseUrl?: string }) => {
    ws.send(JSON.stringify({ url: req.url, baseUrl: req.baseUrl ?? null, user: req.headers['remote-user'] ?? null }));
    ws.on('message', (data, binary) => ws.send(data, { binary }));
  });
  return { server, wss };
}

function connect(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; hello: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('message', (data) => resolve({ ws, hello: JSON.parse(String(data)) }));
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', reject);
  });
}

async function echo(ws: WebSocket, message: string | Buffer): Promise<string | Buffer> {
  const reply = once(ws, 'message');
  ws.send(message);
  const [data, binary] = (await within(reply, 5000, 'echo')) as [Buffer, boolean];
  return binary ? data : String(data);
}

describe('WebSocket pass-through', () => {
  const inner = echoServer();
  const upstream = echoServer();
  let upstreamUrl: string;
  let s: Started;
  let proxied: ReturnType<typeof proxyApp>;

  beforeAll(async () => {
    upstream.server.listen(0, '127.0.0.1');
    await once(upstream.server, 'listening');
    upstreamUrl = `http://127.0.0.1:${(upstream.server.address() as AddressInfo).port}`;
    proxied = proxyApp(upstreamUrl);

    @MountGateway('node', nodeApp(inner.server), { remoteUser: 'svc' })
    class NodeMount {}

    @MountGateway('private', inner.server)
    @UseGuards(RemoteUserGuard)
    class PrivateMount {}

    @MountGateway('upstream', proxied)
    @UseGuards(RemoteUserGuard)
    class UpstreamMount {}

    @Controller('plain')
    class PlainController {
      @Get()
      get() {
        return 'nest route';
      }
    }

    s = await startNest(
      { imports: [GatewayModule.forRoot()], controllers: [NodeMount, PrivateMount, UpstreamMount, PlainController] },
      (app) => app.use(authenticate),
    );
  });

  afterAll(async () => {
    await s.close();
    await proxied.close();
    upstream.server.close();
    upstream.wss.close();
    inner.wss.close();
  });

  const wsUrl = (path: string) => s.url.replace('http:', 'ws:') + path;

  it('a mounted Node server with ws attached: echo, path under the mount, principal', async () => {
    const { ws, hello } = await connect(wsUrl('/node/chat?room=1'));
    expect(hello).toEqual({ url: '/chat?room=1', baseUrl: '/node', user: 'svc' });
    expect(await echo(ws, 'hello')).toBe('hello');
    expect(await echo(ws, Buffer.from([0, 1, 2, 255]))).toEqual(Buffer.from([0, 1, 2, 255]));
    ws.close();
  });

  it('plain HTTP still reaches the same mounted server', async () => {
    const res = await fetch(`${s.url}/node/`);
    expect(await res.text()).toBe('plain http');
  });

  it('the guard decides who may upgrade: anonymous gets its 401, a signed-in user gets through', async () => {
    await expect(connect(wsUrl('/private/'))).rejects.toMatchObject({ status: 401 });
    const { ws, hello } = await connect(wsUrl('/private/'), { authorization: basic('alice') });
    expect(hello.user).toBe('alice');
    ws.close();
  });

  it('a forged identity header does not pass the upgrade', async () => {
    const { ws, hello } = await connect(wsUrl('/node/'), { 'remote-user': 'admin', 'x-remote-user': 'admin' });
    expect(hello.user).toBe('svc');
    ws.close();
  });

  it('through proxyApp to an upstream: echo, prefix stripped, principal as header', async () => {
    await expect(connect(wsUrl('/upstream/x'))).rejects.toMatchObject({ status: 401 });
    const { ws, hello } = await connect(wsUrl('/upstream/x?y=1'), { authorization: basic('bob') });
    expect(hello).toMatchObject({ url: '/x?y=1', user: 'bob' });
    const big = Buffer.alloc(1024 * 1024, 7);
    // Buffer.equals: jest's deep equality walks a MiB byte by byte for seconds.
    expect(big.equals((await echo(ws, big)) as Buffer)).toBe(true);
    ws.close();
  });

  it('closing the client closes the upstream connection', async () => {
    const { ws } = await connect(wsUrl('/upstream/'), { authorization: basic('bob') });
    await waitFor(() => upstream.wss.clients.size > 0, 2000, 'upstream client');
    ws.terminate();
    await waitFor(() => upstream.wss.clients.size === 0, 5000, 'upstream connection closed');
  });

  it('an upgrade request on an ordinary Nest route is served as a plain request', async () => {
    await expect(connect(wsUrl('/plain'))).rejects.toMatchObject({ status: 200 });
  });

  it('a mounted http.Server without upgrade listeners serves an upgrade request as a plain one', async () => {
    const server = createServer((_req, res) => res.end('plain'));
    @MountGateway('no-upgrades', server)
    class NoUpgradesMount {}
    const other = await startNest({ imports: [GatewayModule.forRoot()], controllers: [NoUpgradesMount] });
    const ws = new WebSocket(other.url.replace('http:', 'ws:') + '/no-upgrades/');
    ws.on('error', () => undefined);
    try {
      const [, res] = (await within(once(ws, 'unexpected-response'), 3000, 'a plain answer')) as [unknown, IncomingMessage];
      expect(res.statusCode).toBe(200);
    } finally {
      ws.terminate();
      await other.close();
    }
  });

  it("an upgrade listener's error with an HTTP status refuses the upgrade with that status", async () => {
    const refusing = nodeApp((_req, res) => res.end('plain'), {
      upgrade: () => {
        throw Object.assign(new Error('no ticket'), { status: 401, expose: true });
      },
    });
    @MountGateway('refusing', refusing)
    class RefusingMount {}
    const other = await startNest({ imports: [GatewayModule.forRoot()], controllers: [RefusingMount] });
    try {
      await expect(connect(other.url.replace('http:', 'ws:') + '/refusing/')).rejects.toMatchObject({ status: 401 });
      expect(other.logger.errors()).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('an upstream that is down gives 502 to the upgrade', async () => {
    const down = proxyApp('http://127.0.0.1:1');
    @MountGateway('down', down)
    class DownMount {}
    const other = await startNest({ imports: [GatewayModule.forRoot()], controllers: [DownMount] });
    try {
      await expect(connect(other.url.replace('http:', 'ws:') + '/down/')).rejects.toMatchObject({ status: 502 });
    } finally {
      await other.close();
      await down.close();
    }
  });
});

describe('proxyApp upgrades an upstream does not answer', () => {
  /** An upstream that takes connections and never answers; counts the ones still open. */
  async function silentUpstream(): Promise<{ url: string; open(): number; close(): void }> {
    const sockets = new Set<import('node:net').Socket>();
    const server = createTcpServer((socket) => {
      sockets.add(socket);
      // Read, so that the gateway closing the connection is seen.
      socket.resume();
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      open: () => sockets.size,
      close: () => {
        for (const socket of sockets) socket.destroy();
        server.close();
      },
    };
  }

  const upgradeRequest = 'GET /silent/ HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

  it('a client that leaves mid-handshake closes the upstream connection and its own, quietly', async () => {
    const upstream = await silentUpstream();
    const app = proxyApp(upstream.url, { headersTimeout: 0 });
    @MountGateway('silent', app)
    class SilentMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [SilentMount] });
    const server = s.app.getHttpServer() as Server;
    const gatewayConnections = () => new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
    try {
      const { port } = new URL(s.url);
      const client = connectTcp(Number(port), '127.0.0.1');
      client.on('error', () => undefined);
      await once(client, 'connect');
      client.write(upgradeRequest);
      await waitFor(() => upstream.open() === 1, 3000, 'the upstream connection');
      client.end();
      await waitFor(() => upstream.open() === 0, 3000, 'the upstream connection closed');
      await waitFor(async () => (await gatewayConnections()) === 0, 3000, "the client's connection closed");
      client.destroy();
      expect(s.logger.errors()).toEqual([]);
    } finally {
      await s.close();
      await app.close();
      upstream.close();
    }
  });

  it('an upgrade the upstream does not answer in time gets 504, logged once', async () => {
    const upstream = await silentUpstream();
    const app = proxyApp(upstream.url, { headersTimeout: 200 });
    @MountGateway('silent', app)
    class SilentMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [SilentMount] });
    try {
      await expect(connect(s.url.replace('http:', 'ws:') + '/silent/')).rejects.toMatchObject({ status: 504 });
      expect(s.logger.lines.filter((line) => line.level !== 'log')).toEqual([
        expect.objectContaining({ level: 'warn', message: expect.stringContaining('did not answer the upgrade within 200 ms') }),
      ]);
    } finally {
      await s.close();
      await app.close();
      upstream.close();
    }
  });
});

describe('WebSocket upgrade heads through proxyApp keep their bytes', () => {
  /** An upstream that answers every upgrade with `status` and a header holding the byte 0xE9. */
  async function rawUpstream(status: string): Promise<{ url: string; close(): void }> {
    const server = createTcpServer((socket) => {
      socket.once('data', () => {
        const extra = status.startsWith('101') ? 'Upgrade: websocket\r\nConnection: Upgrade\r\n' : 'Content-Length: 0\r\n';
        socket.write(Buffer.from(`HTTP/1.1 ${status}\r\n${extra}X-Name: caf\xe9\r\n\r\n`, 'latin1'));
      });
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
  }

  /** The response head bytes a raw client gets for an upgrade request to `url`. */
  async function upgradeHead(url: string): Promise<Buffer> {
    const { hostname, port, pathname } = new URL(url);
    const socket = connectTcp(Number(port), hostname);
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    let received = Buffer.alloc(0);
    await waitFor(() => {
      const chunk = socket.read() as Buffer | null;
      if (chunk) received = Buffer.concat([received, chunk]);
      return received.includes('\r\n\r\n');
    }, 5000, 'the response head');
    socket.destroy();
    return received.subarray(0, received.indexOf('\r\n\r\n'));
  }

  it.each([['101 Switching Protocols'], ['403 Forbidden']])('%s', async (status) => {
    const upstream = await rawUpstream(status);
    const app = proxyApp(upstream.url);
    @MountGateway('raw', app)
    class RawMount {}
    const s = await startNest({ imports: [GatewayModule.forRoot()], controllers: [RawMount] });
    try {
      const head = await upgradeHead(`${s.url}/raw/`);
      expect(head.toString('latin1')).toMatch(new RegExp(`^HTTP/1.1 ${status}`));
      expect(head.includes(Buffer.from('X-Name: caf\xe9', 'latin1'))).toBe(true);
    } finally {
      await s.close();
      await app.close();
      upstream.close();
    }
  });
});
