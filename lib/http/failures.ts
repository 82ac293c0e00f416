import type { Logger } from '@nestjs/common';

/** A thrown or rejected value (an Error, or anything passed to `next()` or `reject()`) as an Error. */
export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/**
 * Whether a value passed to Express's `next()` is a failure: anything but nothing, and but
 * `'route'` and `'router'`, which only skip the rest of a route or router.
 */
export function isNextFailure(error: unknown): boolean {
  return error !== undefined && error !== 'route' && error !== 'router';
}

/**
 * Logs a failure that came after the response's headers went out, too late for an error
 * response; returns it as the Error to break the response off with, as Express's final
 * handler does, so that the client does not take a partial answer for a complete one.
 */
export function lateFailure(logger: Logger, who: string, error: unknown): Error {
  const err = toError(error);
  logger.error(`${who} failed after sending headers: ${err.message}`, err.stack);
  return err;
}
