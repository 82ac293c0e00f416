import { HttpException } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { defaultStatusText } from './status-text.js';

/**
 * An error that says which HTTP status it means, as Express apps and their middleware pass
 * them to `next(err)` (http-errors, body-parser's 413): an integer `status` or `statusCode`
 * from 400 to 599. `expose` (http-errors sets it for client errors) lets its message go to
 * the client; otherwise the client gets the standard reason phrase, as from Express's
 * final handler.
 */
export function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown };
  // As Express's final handler: `status` when it is an error status, else `statusCode`.
  return isErrorStatus(status) ? status : isErrorStatus(statusCode) ? statusCode : undefined;
}

function isErrorStatus(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 599;
}

/** The HttpException for an error with an HTTP status (see `statusOf`); Error or not. */
export function statusException(error: unknown, status: number): HttpException {
  const { expose, message: own } = error as { expose?: unknown; message?: unknown };
  const exposed = status < 500 && expose === true && typeof own === 'string' && own;
  const message = exposed || defaultStatusText(status) || 'Error';
  return new HttpException({ statusCode: status, message }, status, { cause: error });
}

/**
 * Sets the headers an error with a status carries (http-errors' `headers`: `Allow` on a 405,
 * `WWW-Authenticate` on a 401, `Retry-After`) on a response not yet sent, as Express's final
 * handler does. Values that Node refuses are skipped.
 */
export function applyErrorHeaders(error: unknown, res: ServerResponse | undefined): void {
  const headers = (error as { headers?: unknown } | null)?.headers;
  if (!res || res.headersSent || typeof headers !== 'object' || headers === null) return;
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string' && typeof value !== 'number' && !Array.isArray(value)) continue;
    try {
      res.setHeader(name, Array.isArray(value) ? value.map(String) : String(value));
    } catch {
      // an invalid name or value: the status still goes out
    }
  }
}
