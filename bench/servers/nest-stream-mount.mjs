// Row 7: @MountGateway('s', nodeListener) where the listener streams or consumes big bodies.
import { MountGateway } from '../../dist/index.js';
import { streamListener } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

class Streaming {}
MountGateway('s', streamListener)(Streaming);
await serveNest({ controllers: [Streaming] });
