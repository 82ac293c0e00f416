import { type IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { ignoreError } from './body-source.js';
import { CaptureSocket } from './capture-socket.js';
import { type GatewayResponse, responseOfHead } from './gateway-response.js';
import { constructWithPrototype } from './with-prototype.js';

export interface CapturedResponse {
  /** A genuine ServerResponse for the app to write to (Express may re-prototype it freely). */
  readonly res: ServerResponse;
  /** Tears the response down: the app sees `close`, the body stream errors if unfinished. */
  destroy(error?: Error): void;
}

export interface Capture extends CapturedResponse {
  /** Resolves when the app has sent its headers; rejects if it closes the response first. */
  readonly response: Promise<GatewayResponse>;
}

/**
 * Builds a real `http.ServerResponse` whose bytes land in a GatewayResponse instead of a
 * socket. Nothing is patched on shared prototypes: the only overrides are own properties
 * of this one response object.
 */
export function captureResponse(req: IncomingMessage): Capture {
  let captured!: CapturedResponse;
  const response = new Promise<GatewayResponse>((resolve, reject) => {
    captured = captureResponseInto(req, resolve, reject);
  });
  response.catch(() => undefined);
  return { res: captured.res, destroy: captured.destroy, response };
}

/**
 * `captureResponse` for a caller that settles a promise of its own: `onResponse` gets the
 * GatewayResponse once the app has sent its headers, `onError` the reason it closed first.
 * `prototype` is the one the app gives its responses (Express's `app.response`), when known.
 */
export function captureResponseInto(
  req: IncomingMessage,
  onResponse: (response: GatewayResponse) => void,
  onError: (error: Error) => void,
  prototype?: object,
): CapturedResponse {
  const socket = new CaptureSocket((head, body) => onResponse(responseOfHead(head, body)), onError);
  const res = constructWithPrototype(ServerResponse, prototype, req);
  // The outer server adds its own Date and framing; the body reaches us unframed (writeHead
  // below), though Node picks its framing as for the client, which decides what a head may
  // carry (a `Trailer` needs chunked) and in which encoding it is written.
  res.sendDate = false;
  res.shouldKeepAlive = false;
  res.writeHead = writeUnframedHead;
  res.assignSocket(socket as never);
  // The HTTP server relays its socket's 'drain' to the response; a captured response needs
  // the same, or an app that respects backpressure stalls after its first full write.
  const onDrain = () => {
    if (!res.writableNeedDrain) return;
    clearNeedDrain(res);
    res.emit('drain');
  };
  socket.on('drain', onDrain);
  res.on('error', ignoreError);
  // Every byte is in the body by then; the consumer may take it whole before 'finish', which
  // waits for it to read what the app wrote beyond the body's high-water mark.
  const onPrefinish = () => socket.endBody();
  res.on('prefinish', onPrefinish);
  // Taken off once done: an app that keeps its response (Express's `req.res`) would otherwise
  // keep the socket and the caller's callbacks alive with it (bench/findings.md, seventh round).
  const letGo = () => {
    res.off('prefinish', onPrefinish).off('finish', onFinish);
    socket.off('drain', onDrain).off('close', onClose);
  };
  // Closed before it finished (the app or the client gave up): let go of the socket as well.
  const onClose = () => {
    letGo();
    if (res.socket === (socket as unknown)) res.detachSocket(socket as never);
  };
  socket.once('close', onClose);
  res.on('finish', onFinish);
  function onFinish() {
    letGo();
    socket.endBody();
    // Not destroyed: it is garbage now, and destroying a stream inside its own write
    // callback (where 'finish' fires) makes Node build an error that nobody sees.
    res.detachSocket(socket as never);
    process.nextTick(emitClose, res);
  }
  return { res, destroy: (error) => void socket.destroy(error) };
}

const nodeWriteHead = ServerResponse.prototype.writeHead;

/** Node's writeHead, except that a body Node would send chunked gets no framing. */
const writeUnframedHead = function (this: ServerResponse) {
  // eslint-disable-next-line prefer-rest-params
  nodeWriteHead.apply(this, arguments as unknown as Parameters<ServerResponse['writeHead']>);
  if (this.chunkedEncoding) {
    this.chunkedEncoding = false;
    (this.socket as CaptureSocket | null)?.headBeforeChunks();
  }
  return this;
} as ServerResponse['writeHead'];

function emitClose(res: ServerResponse): void {
  res.emit('close');
}

/** Node keeps "needs drain" in a private symbol that its server resets before emitting 'drain'. */
function clearNeedDrain(res: ServerResponse): void {
  const holder = res as unknown as Record<symbol, unknown>;
  for (const symbol of Object.getOwnPropertySymbols(res)) {
    if (symbol.description === 'kNeedDrain') holder[symbol] = false;
  }
}
