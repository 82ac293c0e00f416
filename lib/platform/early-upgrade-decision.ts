import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';

/** Node's request parser, as its server drives it (`_http_server.js`). */
interface RequestParser {
  onIncoming?: ((req: IncomingMessage & { upgrade: boolean }, keepAlive: boolean) => unknown) | null;
}

/**
 * Decides, as Node parses a request's head, whether its Upgrade header makes it an upgrade.
 * Node treats a request as one as soon as any 'upgrade' listener exists, and then gives it no
 * body: the bytes after the head go to the listener. A request refused here is parsed as Node
 * parses it when nobody listens for upgrades: body, keep-alive and all. CONNECT is left alone.
 */
export function decideUpgradesEarly(server: Server, takesUpgrade: (req: IncomingMessage) => boolean): void {
  const wrapParser = (socket: Socket) => {
    // Node's own 'connection' listener, added first, gave the socket its parser.
    const parser = (socket as Socket & { parser?: RequestParser }).parser;
    const parse = parser?.onIncoming;
    if (!parser || typeof parse !== 'function') return;
    parser.onIncoming = (req, keepAlive) => {
      if (req.upgrade && req.method !== 'CONNECT' && !takesUpgrade(req)) req.upgrade = false;
      return parse(req, keepAlive);
    };
  };
  server.on('connection', wrapParser);
  // HTTPS: the parser comes with the TLS connection.
  server.on('secureConnection', wrapParser);
}

/** Whether the request announces a body, which an upgrade would leave unread. */
export function announcesBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
