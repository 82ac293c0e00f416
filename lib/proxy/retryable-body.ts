import { PassThrough, type Readable } from 'node:stream';

/**
 * A view of a request body that starts reading its source only when the HTTP client first
 * pulls from it. undici destroys the body it was given when a connect fails; through a view
 * the source survives, and a body nobody has pulled yet can go to another upstream.
 */
export class RetryableBody {
  private pulled = false;

  constructor(private readonly source: Readable) {}

  /** Whether a view has begun reading the source: the body can no longer be sent elsewhere. */
  get started(): boolean {
    return this.pulled;
  }

  view(): Readable {
    const view = new PassThrough();
    const read = view._read.bind(view);
    view._read = (size: number) => {
      if (!this.pulled) {
        this.pulled = true;
        this.source.once('error', (error) => view.destroy(error));
        this.source.pipe(view);
      }
      read(size);
    };
    return view;
  }
}
