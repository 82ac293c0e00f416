import type { OutgoingHttpHeader, ServerResponse } from 'node:http';

/** Header changes applied to a response just before its head is written. */
export interface HeaderChanges {
  /**
   * Headers to set, replacing what the handler or app set.
   * @default {}
   */
  set?: Record<string, string | string[]>;
  /**
   * Values to add next to what is there (e.g. one more `Set-Cookie` or `Vary`).
   * @default {}
   */
  append?: Record<string, string | string[]>;
  /**
   * Headers to remove (e.g. `x-powered-by`, `server`).
   * @default []
   */
  remove?: string[];
}

/** Changes the library itself makes, which may need to read what is there first. */
export interface HeadEdit extends HeaderChanges {
  edit?(res: ServerResponse): void;
}

const HOOKED = Symbol('nest-gateway.headerChanges');
type HookedResponse = ServerResponse & { [HOOKED]?: HeadEdit[] };

/**
 * Arranges for `changes` to be applied to `res` when its head is written, whoever writes it: a
 * Nest handler's return value, a GatewayResponse, a mounted app writing to the response
 * directly, or an exception filter. The hook is an own property of this one response.
 */
export function applyOnWriteHead(res: ServerResponse, changes: HeadEdit): void {
  const hooked = res as HookedResponse;
  if (hooked[HOOKED]) {
    hooked[HOOKED].push(changes);
    return;
  }
  const pending = [changes];
  hooked[HOOKED] = pending;
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, status: number, ...rest: unknown[]) {
    // writeHead(status, [reason], [headers]): fold explicit headers in so that changes see them.
    const reason = typeof rest[0] === 'string' ? (rest.shift() as string) : undefined;
    const headers = rest[0] as Record<string, OutgoingHttpHeader> | OutgoingHttpHeader[] | undefined;
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2) this.appendHeader(String(headers[i]), headers[i + 1] as string);
    } else if (headers) {
      for (const [name, value] of Object.entries(headers)) if (value !== undefined) this.setHeader(name, value);
    }
    if (!this.headersSent) for (const change of pending) applyChanges(this, change);
    return reason === undefined ? writeHead.call(this, status) : writeHead.call(this, status, reason as never);
  } as ServerResponse['writeHead'];
}

function applyChanges(res: ServerResponse, changes: HeadEdit): void {
  for (const name of changes.remove ?? []) res.removeHeader(name);
  for (const [name, value] of Object.entries(changes.set ?? {})) res.setHeader(name, value);
  for (const [name, value] of Object.entries(changes.append ?? {})) res.appendHeader(name, value);
  changes.edit?.(res);
}
