/** RFC 9110 9.2.2: methods whose request may be sent again when nothing came back. */
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

const IDEMPOTENCY_KEY = /^(?:x-)?idempotency-key$/i;

/**
 * Whether a request may reach its app twice: an idempotent method, or one whose client sent an
 * `Idempotency-Key` (or `X-Idempotency-Key`), which its server uses to run it once whatever
 * comes twice (draft-ietf-httpapi-idempotency-key-header; Go's HTTP client resends on it too).
 */
export function maySendAgain(method: string, rawHeaders: readonly string[]): boolean {
  if (IDEMPOTENT_METHODS.has(method)) return true;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (IDEMPOTENCY_KEY.test(rawHeaders[i]) && rawHeaders[i + 1] !== '') return true;
  }
  return false;
}
