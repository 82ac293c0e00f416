import type { Logger } from '@nestjs/common';
import type { Readable } from 'node:stream';

/**
 * A script's or responder's error output, logged line by line under a request tag up to
 * `limit` bytes; the rest is dropped (but still read, so the producer never blocks).
 */
export class ErrorOutputLog {
  private logged = 0;
  private partial = '';
  private truncated = false;

  constructor(
    private readonly logger: Logger,
    private readonly tag: string,
    private readonly limit: number,
  ) {}

  write(chunk: Buffer): void {
    if (this.truncated) return;
    const room = this.limit - this.logged;
    const taken = Math.min(chunk.length, room);
    this.logged += taken;
    const lines = (this.partial + chunk.toString('utf8', 0, taken)).split('\n');
    this.partial = lines.pop() ?? '';
    lines.forEach((line) => this.emit(line));
    if (chunk.length > room) {
      this.truncated = true;
      this.end();
      this.logger.warn(`${this.tag} stderr: more than ${this.limit} bytes, the rest is not logged`);
    }
  }

  end(): void {
    this.emit(this.partial);
    this.partial = '';
  }

  private emit(line: string): void {
    if (line.trim()) this.logger.warn(`${this.tag} stderr: ${line.replace(/\r$/, '')}`);
  }
}

export function logErrorOutput(stream: Readable, logger: Logger, tag: string, limit: number): void {
  const log = new ErrorOutputLog(logger, tag, limit);
  stream.on('data', (chunk: Buffer) => log.write(chunk));
  stream.on('end', () => log.end());
  stream.on('error', () => undefined);
}
