// Reference for row 6: a native Nest controller returning the same text as hello.php.
// With --with-gateway (context only) the app imports GatewayModule, whose request hook speeds up
// every route of the app on Node before 24 (bench/findings.md, sixth and seventh rounds).
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
await serveNest({ controllers: [Native], gateway: process.argv.includes('--with-gateway') });
