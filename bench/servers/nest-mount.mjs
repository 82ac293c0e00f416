// Row 1 (path under test): @MountGateway('x', expressApp).
import { MountGateway } from '../../dist/index.js';
import { helloExpress } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

class Mounted {}
MountGateway('x', helloExpress())(Mounted);
await serveNest({ controllers: [Mounted] });
