import type { Logger } from '@nestjs/common';
import { ServerResponse, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { announcesBody, decideUpgradesEarly } from './early-upgrade-decision.js';
import { passesEveryRequestTo } from './request-shape.js';
import { mountMayUpgrade } from './upgrading-mounts.js';

const UPGRADE = Symbol.for('nest-gateway.upgrade');

/** The connection of a protocol upgrade (WebSocket) request, while Nest decides about it. */
export interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
  /** Takes the connection away from the HTTP response Nest answers on: the app owns it now. */
  claim(): void;
}

export function upgradeOf(req: IncomingMessage): PendingUpgrade | undefined {
  return (req as IncomingMessage & { [UPGRADE]?: PendingUpgrade })[UPGRADE];
}

/**
 * Routes WebSocket (and other) upgrade requests for mount paths through the Nest app like
 * any request, so that middleware and guards decide who may upgrade: a refusal is an
 * ordinary HTTP response on the connection. The mount then hands the connection to its app.
 * Paths that are not mounts are left to other `upgrade` listeners (Nest's own WebSocket
 * gateways). Requests no listener would take (other paths without such listeners, mounts whose
 * app does not upgrade, requests with a body) are parsed as plain requests, as Node does when
 * nobody listens for upgrades.
 */
export function installUpgradeDispatch(
  server: Server,
  handle: (req: IncomingMessage, res: ServerResponse) => void,
  mountOf: (path: string) => string | undefined,
  logger: Logger,
): void {
  const isMountPath = (path: string) => mountOf(path) !== undefined;
  decideUpgradesEarly(server, (req) => {
    const mount = mountOf(pathOf(req));
    if (mount === undefined) return server.listenerCount('upgrade') > 1;
    return !announcesBody(req) && mountMayUpgrade(mount);
  });
  const listener = function nestGatewayUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer) {
    const path = pathOf(req);
    if (!isMountPath(path) && server.listenerCount('upgrade') > 1) return;
    socket.on('error', (error) => logger.debug?.(`Upgrade connection for ${path} failed: ${error.message}`));
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Parameters<ServerResponse['assignSocket']>[0]);
    let claimed = false;
    res.once('finish', () => {
      // Nest answered with plain HTTP (a guard said no, or the app does not upgrade).
      if (!claimed) socket.end();
    });
    const upgrade: PendingUpgrade = {
      socket,
      head,
      claim: () => {
        claimed = true;
        res.detachSocket(socket as Parameters<ServerResponse['detachSocket']>[0]);
      },
    };
    Object.defineProperty(req, UPGRADE, { value: upgrade });
    handle(req, res);
  };
  // It hands every upgrade to the app while it is the only 'upgrade' listener.
  passesEveryRequestTo(listener, handle, 'upgrade');
  server.on('upgrade', listener);
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0];
}

/** Answers an upgrade request on its raw connection with a bodiless error and closes it. */
export function refuseUpgrade(socket: Duplex, status: number): void {
  if (socket.destroyed || !socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
