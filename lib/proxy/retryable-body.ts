import { PassThrough, Readable } from 'node:stream';

/** A body up to this size is remembered as it is sent, so that it can be sent again. */
const REPLAYABLE = 64 * 1024;

/**
 * A view of a request body that starts reading its source only when the HTTP client first
 * pulls from it. undici destroys the body it was given when a request fails; through a view
 * the source survives. A body nobody has pulled yet can go to another upstream, and a small
 * body that was sent whole can be sent again (a pooled connection the upstream had closed).
 */
export class RetryableBody {
  private pulled = false;
  private recorded: Buffer[] | undefined = [];
  private recordedBytes = 0;
  private ended = false;

  constructor(private readonly source: Readable) {}

  /** Whether a view has begun reading the source. */
  get started(): boolean {
    return this.pulled;
  }

  /** Whether a new view can give the whole body again. */
  get replayable(): boolean {
    return !this.pulled || (this.ended && this.recorded !== undefined);
  }

  view(): Readable {
    if (this.pulled) {
      if (!this.ended || !this.recorded) throw new Error('request body was already sent');
      return Readable.from(this.recorded.length > 0 ? [Buffer.concat(this.recorded)] : []);
    }
    const view = new PassThrough();
    const read = view._read.bind(view);
    view._read = (size: number) => {
      if (!this.pulled) {
        this.pulled = true;
        this.source.on('data', (chunk: Buffer) => this.record(chunk));
        this.source.once('end', () => (this.ended = true));
        this.source.once('error', (error) => view.destroy(error));
        this.source.pipe(view);
      }
      read(size);
    };
    return view;
  }

  private record(chunk: Buffer): void {
    if (!this.recorded) return;
    this.recordedBytes += chunk.length;
    if (this.recordedBytes > REPLAYABLE) this.recorded = undefined;
    else this.recorded.push(Buffer.from(chunk));
  }
}
