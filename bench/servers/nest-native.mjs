// Reference for row 6: a native Nest controller returning the same text as hello.php.
import { Controller, Get, Header } from '@nestjs/common';
import { HELLO } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

class Native {
  hello() {
    return HELLO;
  }
}
Controller()(Native);
const descriptor = () => Object.getOwnPropertyDescriptor(Native.prototype, 'hello');
Header('content-type', 'text/plain')(Native.prototype, 'hello', descriptor());
Get('n/hello.php')(Native.prototype, 'hello', descriptor());
await serveNest({ controllers: [Native], gateway: false });
