import { HttpException } from '@nestjs/common';
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
