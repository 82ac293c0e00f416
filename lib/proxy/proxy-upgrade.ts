import { GatewayTimeoutException } from '@nestjs/common';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { GatewayExchange } from '../apps/gateway-app.js';
import { hopByHopNames } from '../http/hop-by-hop.js';
import { headerValue } from '../http/raw-headers.js';
import type { Upstream } from './upstream-pool.js';

/**
 * Passes an upgrade request (WebSocket) to an upstream on a connection of its own and, once
 * the upstream switches protocols, joins the two connections byte for byte. An upstream that
 * declines answers the client as it answered us. Either side closing closes the other.
 */
export function proxyUpgrade(
  upstream: Upstream,
  exchange: GatewayExchange,
  client: Duplex,
  head: Buffer,
  headers: string[],
  path: string,
  headersTimeout: number,
): Promise<void> {
  const upgradeValue = headerValue(exchange.rawHeaders, 'upgrade') ?? 'websocket';
  const { endpoint } = upstream;
  return new Promise<void>((resolve, reject) => {
    const request = (endpoint.protocol === 'https:' ? httpsRequest : httpRequest)({
      hostname: endpoint.hostname,
      port: endpoint.port,
      socketPath: endpoint.socketPath,
      method: exchange.method,
      path,
      headers: [...headers, 'connection', 'upgrade', 'upgrade', upgradeValue],
      setHost: false,
      agent: false,
    });
    const timer =
      headersTimeout > 0
        ? setTimeout(() => request.destroy(new GatewayTimeoutException(`upstream ${upstream.name} did not answer the upgrade within ${headersTimeout} ms`)), headersTimeout)
        : undefined;
    // Node leaves an upgrade's connection paused, so a client's end (FIN) is only seen once
    // the connection is read; what the client sends early goes to the upstream after the switch.
    const early: Buffer[] = [];
    let earlyBytes = 0;
    const keepEarly = (chunk: Buffer) => {
      early.push(chunk);
      earlyBytes += chunk.length;
      // A client has nothing to say before the switch but the start of its new protocol.
      if (earlyBytes > MAX_EARLY_BYTES) onClientGone();
    };
    const onClientGone = () => {
      client.destroy();
      request.destroy(new ClientLeftError());
    };
    client.on('data', keepEarly);
    client.once('end', onClientGone);
    client.once('close', onClientGone);
    const settle = () => {
      clearTimeout(timer);
      client.pause();
      client.off('data', keepEarly);
      client.off('end', onClientGone);
      client.off('close', onClientGone);
    };

    request.once('upgrade', (response: IncomingMessage, upstreamSocket: Duplex, upstreamHead: Buffer) => {
      settle();
      client.write(head101(response), 'latin1');
      if (upstreamHead.length > 0) client.write(upstreamHead);
      for (const chunk of [head, ...early]) if (chunk.length > 0) upstreamSocket.write(chunk);
      join(client, upstreamSocket);
      resolve();
    });
    request.once('response', (response: IncomingMessage) => {
      settle();
      client.write(statusHead(response), 'latin1');
      response.pipe(client);
      response.once('error', () => client.destroy());
      resolve();
    });
    request.once('error', (error) => {
      settle();
      reject(error);
    });
    request.end();
  });
}

/** What a client may send before the upstream has answered its upgrade, at most. */
const MAX_EARLY_BYTES = 64 * 1024;

/** The client left before the upstream answered the upgrade: nobody is left to answer. */
export class ClientLeftError extends Error {
  constructor() {
    super('client left before the upstream answered the upgrade');
  }
}

function join(a: Duplex, b: Duplex): void {
  const close = () => {
    a.destroy();
    b.destroy();
  };
  for (const side of [a, b]) {
    side.on('error', close);
    side.once('close', close);
    side.once('end', () => (side === a ? b : a).end());
  }
  a.pipe(b);
  b.pipe(a);
}

/** Node reads header bytes as latin1: written back as latin1 they are the upstream's bytes. */
function head101(response: IncomingMessage): string {
  const lines = [`HTTP/1.1 101 ${response.statusMessage || 'Switching Protocols'}`];
  for (let i = 0; i < response.rawHeaders.length; i += 2) lines.push(`${response.rawHeaders[i]}: ${response.rawHeaders[i + 1]}`);
  return lines.join('\r\n') + '\r\n\r\n';
}

/** The upstream's refusal, re-framed for a connection that closes after it. */
function statusHead(response: IncomingMessage): string {
  const dropped = hopByHopNames(headerValue(response.rawHeaders, 'connection'));
  const lines = [`HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? ''}`];
  for (let i = 0; i < response.rawHeaders.length; i += 2) {
    if (!dropped.has(response.rawHeaders[i].toLowerCase())) lines.push(`${response.rawHeaders[i]}: ${response.rawHeaders[i + 1]}`);
  }
  lines.push('Connection: close');
  return lines.join('\r\n') + '\r\n\r\n';
}
