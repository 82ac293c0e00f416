import { type IncomingMessage, ServerResponse } from 'node:http';
import { CaptureSocket } from './capture-socket.js';
import { GatewayResponse } from './gateway-response.js';

export interface Capture {
  /** A genuine ServerResponse for the app to write to (Express may re-prototype it freely). */
  readonly res: ServerResponse;
  /** Resolves when the app has sent its headers; rejects if it closes the response first. */
  readonly response: Promise<GatewayResponse>;
  /** Tears the response down: the app sees `close`, the body stream errors if unfinished. */
  destroy(error?: Error): void;
}

/**
 * Builds a real `http.ServerResponse` whose bytes land in a GatewayResponse instead of a
 * socket. Nothing is patched on shared prototypes: the only overrides are own properties
 * of this one response object.
 */
export function captureResponse(req: IncomingMessage): Capture {
  let resolve!: (response: GatewayResponse) => void;
  let reject!: (error: Error) => void;
  const response = new Promise<GatewayResponse>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  response.catch(() => undefined);

  const socket = new CaptureSocket(
    (head, body) => resolve(new GatewayResponse({ ...head, body })),
    (error) => reject(error),
  );
  const res = new ServerResponse(req);
  // The outer server adds its own Date and framing; the body reaches us unframed.
  res.sendDate = false;
  res.shouldKeepAlive = false;
  res.useChunkedEncodingByDefault = false;
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
    writeHead.apply(this, args);
    // An app that sets `Transfer-Encoding: chunked` itself would otherwise frame its body.
    this.chunkedEncoding = false;
    return this;
  } as ServerResponse['writeHead'];
  res.assignSocket(socket as never);
  // The HTTP server relays its socket's 'drain' to the response; a captured response needs
  // the same, or an app that respects backpressure stalls after its first full write.
  socket.on('drain', () => {
    if (!res.writableNeedDrain) return;
    clearNeedDrain(res);
    res.emit('drain');
  });
  res.on('error', () => undefined);
  res.once('finish', () => {
    socket.endBody();
    res.detachSocket(socket as never);
    socket.destroy();
    process.nextTick(() => res.emit('close'));
  });

  return {
    res,
    response,
    destroy(error?: Error) {
      socket.destroy(error);
    },
  };
}

/** Node keeps "needs drain" in a private symbol that its server resets before emitting 'drain'. */
function clearNeedDrain(res: ServerResponse): void {
  const holder = res as unknown as Record<symbol, unknown>;
  for (const symbol of Object.getOwnPropertySymbols(res)) {
    if (symbol.description === 'kNeedDrain') holder[symbol] = false;
  }
}
