import type { Logger } from '@nestjs/common';
import type { Readable } from 'node:stream';

/**
 * Logs a script's error output line by line under a request tag, up to `limit` bytes; the
 * rest is read and dropped so that the script never blocks on a full pipe.
 */
export function logErrorOutput(stream: Readable, logger: Logger, tag: string, limit: number): void {
  let logged = 0;
  let partial = '';
  let truncated = false;
  const emit = (line: string) => {
    if (line.trim()) logger.warn(`${tag} stderr: ${line}`);
  };
  stream.on('data', (chunk: Buffer) => {
    if (truncated) return;
    const room = limit - logged;
    const text = partial + chunk.toString('utf8', 0, Math.min(chunk.length, room));
    logged += Math.min(chunk.length, room);
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    lines.forEach(emit);
    if (chunk.length > room) {
      truncated = true;
      emit(partial);
      partial = '';
      logger.warn(`${tag} stderr: more than ${limit} bytes, the rest is not logged`);
    }
  });
  stream.on('end', () => emit(partial));
  stream.on('error', () => undefined);
}
